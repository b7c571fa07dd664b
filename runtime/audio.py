"""WAV reading, downmixing and resampling in numpy and the standard library (runs on the device)."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from lstm_edge.runtime.errors import InputError, expected_got


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Samples as float32 in [-1, 1], shape [frames, channels], and the sample rate. PCM 8/16/24/32-bit."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        with wave.open(str(path), "rb") as handle:
            channels = handle.getnchannels()
            width = handle.getsampwidth()
            rate = handle.getframerate()
            raw = handle.readframes(handle.getnframes())
    except (wave.Error, EOFError) as err:
        raise InputError(f"{path}: not a readable PCM WAV file ({err})") from None
    if channels < 1 or rate < 1:
        raise InputError(expected_got(f"{path}: WAV header", "channels >= 1 and a positive sample rate",
                                      f"{channels} channels at {rate} Hz"))
    usable = len(raw) - len(raw) % (width * channels)
    raw = raw[:usable]
    if width == 1:
        data = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        data = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
    elif width == 3:
        bytes3 = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        value = bytes3[:, 0] | (bytes3[:, 1] << 8) | (bytes3[:, 2] << 16)
        value = np.where(value >= 1 << 23, value - (1 << 24), value)
        data = value.astype(np.float32) / float(1 << 23)
    elif width == 4:
        data = np.frombuffer(raw, "<i4").astype(np.float32) / float(1 << 31)
    else:
        raise InputError(expected_got(f"{path}: sample width", "1, 2, 3 or 4 bytes", f"{width} bytes"))
    return data.reshape(-1, channels), rate


def resample(samples: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """Band-limited resampling of a mono signal (FFT method: truncate or zero-pad the spectrum)."""
    if source_rate == target_rate or samples.size == 0:
        return samples.astype(np.float32, copy=False)
    count = int(round(samples.shape[0] * target_rate / source_rate))
    spectrum = np.fft.rfft(samples.astype(np.float64))
    bins = count // 2 + 1
    if bins <= spectrum.shape[0]:
        spectrum = spectrum[:bins]
    else:
        spectrum = np.concatenate([spectrum, np.zeros(bins - spectrum.shape[0], spectrum.dtype)])
    return (np.fft.irfft(spectrum, n=count) * (count / samples.shape[0])).astype(np.float32)


def load_mono(path: str | Path, sample_rate: int) -> tuple[np.ndarray, list[str]]:
    """A WAV file as mono float32 at ``sample_rate``; also the notes on what was converted."""
    data, rate = read_wav(path)
    notes = []
    if data.shape[1] > 1:
        notes.append(f"{path}: downmixed {data.shape[1]} channels to mono")
        data = data.mean(axis=1, keepdims=True)
    mono = data[:, 0]
    if rate != sample_rate:
        notes.append(f"{path}: resampled {rate} Hz to {sample_rate} Hz")
        mono = resample(mono, rate, sample_rate)
    return mono, notes
