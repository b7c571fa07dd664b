"""Augmentation for voices, rooms and microphones.

Room acoustics come from ``pyroomacoustics`` (image-source simulation of shoebox rooms: random size, wall
absorption from a target RT60 by Sabine's formula, random source and microphone positions); a bank of room impulse
responses is simulated once per dataset seed and drawn from per utterance, because one simulation at RT60 0.8 s
takes seconds. Noise is coloured (1/f^a); the vocal-tract warp resamples, so formants, pitch and tempo move together.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

import numpy as np
from scipy.signal import butter, fftconvolve, resample_poly, sosfilt

from lstm_edge.recipes.speech.synthesis import SAMPLE_RATE, SynthError


def coloured_noise(n_samples: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Noise with power spectrum ~ 1/f**exponent (0 white, 1 pink, 2 brown), unit RMS."""
    spectrum = rng.normal(size=n_samples // 2 + 1) + 1j * rng.normal(size=n_samples // 2 + 1)
    freqs = np.fft.rfftfreq(n_samples)
    freqs[0] = freqs[1]
    spectrum *= freqs ** (-exponent / 2.0)
    noise = np.fft.irfft(spectrum, n=n_samples)
    return (noise / (np.sqrt(np.mean(noise**2)) + 1e-12)).astype(np.float32)


def synthetic_reverb(pcm: np.ndarray, rt60_seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Convolve with an exponentially decaying noise impulse response (direct path kept at unit gain)."""
    ir_length = int(rt60_seconds * SAMPLE_RATE)
    t = np.arange(ir_length) / SAMPLE_RATE
    impulse = rng.normal(size=ir_length) * np.exp(-6.9 * t / rt60_seconds) * 0.3
    impulse[0] = 1.0
    wet = fftconvolve(pcm, impulse)[: pcm.size]
    return (wet / (np.max(np.abs(wet)) + 1e-9) * np.max(np.abs(pcm))).astype(np.float32)


def simulate_room(rng: np.random.Generator, rt60_seconds: tuple[float, float] = (0.1, 0.7),
                  max_length_seconds: float = 0.6) -> np.ndarray:
    """One room impulse response (pyroomacoustics shoebox, image sources), peak-normalised, at most
    ``max_length_seconds`` long. Rooms are 3x2.5 to 9x7 m, 2.4-3.5 m high; source and microphone at least 0.5 m
    apart and from the walls."""
    import pyroomacoustics as pra

    dims = np.array([rng.uniform(3.0, 9.0), rng.uniform(2.5, 7.0), rng.uniform(2.4, 3.5)])
    rt60 = float(rng.uniform(*rt60_seconds))
    try:
        absorption, max_order = pra.inverse_sabine(rt60, dims)
    except ValueError:  # too reverberant for so small a room: the most reverberant the room allows
        absorption, max_order = 0.05, 40
    room = pra.ShoeBox(dims, fs=SAMPLE_RATE, materials=pra.Material(absorption), max_order=min(max_order, 60))
    while True:
        source = rng.uniform(0.5, dims - 0.5)
        microphone = rng.uniform(0.5, dims - 0.5)
        if np.linalg.norm(source - microphone) >= 0.5:
            break
    room.add_source(source)
    room.add_microphone(microphone)
    room.compute_rir()
    rir = np.asarray(room.rir[0][0], dtype=np.float64)[: int(max_length_seconds * SAMPLE_RATE)]
    first = int(np.argmax(np.abs(rir) > 0.1 * np.max(np.abs(rir))))
    rir = rir[max(0, first - 16):]  # drop the propagation delay: labels keep their timing
    return (rir / np.max(np.abs(rir))).astype(np.float32)


def room_bank(n_rooms: int, seed: int, rt60_seconds: tuple[float, float] = (0.1, 0.7)) -> list[np.ndarray]:
    """``n_rooms`` simulated room impulse responses, deterministic for ``seed``."""
    rng = np.random.default_rng(seed)
    return [simulate_room(rng, rt60_seconds) for _ in range(n_rooms)]


def apply_room(speech: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Speech as heard in a room (same length and peak as the dry speech)."""
    wet = fftconvolve(speech, rir)[: speech.size]
    return (wet / (np.max(np.abs(wet)) + 1e-9) * np.max(np.abs(speech))).astype(np.float32)


def warp(speech: np.ndarray, factor: float) -> np.ndarray:
    """Resample so that playback at 16 kHz is ``factor`` times faster (formants and pitch scale by ``factor``)."""
    down = int(round(100 * factor))
    divisor = np.gcd(100, down)
    return resample_poly(speech, 100 // divisor, down // divisor).astype(np.float32)


def band_limit(speech: np.ndarray, rng: np.random.Generator, lowpass_probability: float,
               lowpass_hz: tuple[float, float], highpass_probability: float,
               highpass_hz: tuple[float, float]) -> np.ndarray:
    """Random low-pass and high-pass (4th-order Butterworth), each with its probability."""
    if rng.random() < lowpass_probability:
        sos = butter(4, rng.uniform(*lowpass_hz), btype="lowpass", fs=SAMPLE_RATE, output="sos")
        speech = sosfilt(sos, speech).astype(np.float32)
    if rng.random() < highpass_probability:
        sos = butter(4, rng.uniform(*highpass_hz), btype="highpass", fs=SAMPLE_RATE, output="sos")
        speech = sosfilt(sos, speech).astype(np.float32)
    return speech


def apply_sox(pcm: np.ndarray, effects: Sequence[str]) -> np.ndarray:
    """Run float32 16 kHz samples through ``sox`` with the given effect chain (output resampled to 16 kHz)."""
    raw = ["-t", "raw", "-r", str(SAMPLE_RATE), "-e", "floating-point", "-b", "32", "-c", "1"]
    command = ["sox", "-q", *raw, "-", *raw, "-", *effects, "rate", str(SAMPLE_RATE)]
    result = subprocess.run(command, input=pcm.astype(np.float32).tobytes(), capture_output=True, check=False)
    if result.returncode != 0:
        raise SynthError(f"sox {' '.join(effects)}: rc={result.returncode}, stderr={result.stderr[:200]!r}")
    return np.frombuffer(result.stdout, dtype=np.float32).copy()


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) + 1e-12
