"""Synthesise grammar sentences with espeak-ng, flite and more (no download; only the demo recording is committed).

Voices are split by speaker: espeak-ng English languages and voice variants are partitioned as in the keyword
recipe (a test voice shares neither accent nor variant with training), and whole flite voices are held out
(``FLITE_VOICES``); with ``festival_share`` > 0 training also gets Festival's recorded-speaker voices (training
only, as in the keyword recipe), and with ``parametric_share`` > 0 training and validation get SVOX Pico's and
RHVoice's voices (``PARAMETRIC_VOICES``: statistical-parametric voices built from recorded speakers, among them the
female recorded speakers the flite and Festival training voices lack). Each utterance gets a random speed and pitch,
in training a vocal-tract-length change (resampling by a factor that moves formants, pitch and tempo together, as
speed perturbation does: the male flite training voices then also sound like shorter vocal tracts), optional
band-limiting (a cheap microphone or an 8 kHz line), gain, optional reverb and coloured noise, and random
leading/trailing silence.

Output: ``DIR/{train,validation,test}.npz`` (``audio`` int16 concatenated, ``offsets`` [N+1], ``texts``, ``kinds``,
``voices``, ``speech_start``/``speech_end`` samples within each utterance) and ``DIR/index.json``.

Run: ``python -m lstm_edge.recipes.asr.synth --out DIR [--train 3600] [--eval 300]``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import struct
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.signal import butter, resample_poly, sosfilt

from lstm_edge.recipes.asr.grammar import sample_sentence
from lstm_edge.recipes.kws.synth import (
    FESTIVAL_VOICES,
    SAMPLE_RATE,
    SynthError,
    coloured_noise,
    split_variants,
    synthetic_reverb,
    trim_silence,
)

SPLITS: tuple[str, ...] = ("train", "validation", "test")
ESPEAK_LANGUAGES: dict[str, tuple[str, ...]] = {
    "train": ("en-us", "en-gb", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029"),
    "validation": ("en-gb-scotland",),
    "test": ("en-gb-x-rp", "en-us-nyc"),
}
FLITE_VOICES: dict[str, tuple[str, ...]] = {"train": ("kal", "kal16", "awb"), "validation": ("rms",), "test": ("slt",)}
FLITE_SHARE = 0.4
# Statistical-parametric voices built from recorded speakers (Debian non-free: libttspico-utils, rhvoice-english):
# SVOX Pico's two English voices and RHVoice's LGPL English voices (its CMU ARCTIC slt is the held-out flite test
# speaker and stays out; its NC-licensed voices stay out too). With ``parametric_share`` > 0 they give training and
# validation female recorded-speaker voices; test never draws them, so it stays the same with or without them.
PARAMETRIC_VOICES: dict[str, tuple[str, ...]] = {
    "train": ("pico:en-US", "rhvoice:alan", "rhvoice:bdl", "rhvoice:clb"),
    "validation": ("pico:en-GB",),
    "test": (),
}
PARAMETRIC_ENGINES: tuple[str, ...] = ("pico", "rhvoice")


@dataclass(frozen=True)
class SynthConfig:
    """Sizes and augmentation ranges."""

    train: int = 3600
    eval: int = 300
    seed: int = 0
    workers: int = 2
    festival_share: float = 0.0  # share of training utterances spoken by Festival voices (FESTIVAL_VOICES)
    parametric_share: float = 0.0  # share of training and validation utterances from PARAMETRIC_VOICES
    extra_train_voices: tuple[str, ...] = ()  # more "pico:..."/"rhvoice:..." voices for PARAMETRIC_VOICES["train"]
    espeak_wpm: tuple[int, int] = (120, 210)
    espeak_pitch: tuple[int, int] = (20, 80)
    flite_stretch: tuple[float, float] = (0.8, 1.25)
    flite_f0_scale: tuple[float, float] = (0.8, 1.25)
    peak_dbfs: tuple[float, float] = (-26.0, -1.0)
    reverb_probability: float = 0.5
    rt60_seconds: tuple[float, float] = (0.08, 0.5)
    noise_probability: float = 0.8
    snr_db: tuple[float, float] = (5.0, 40.0)
    lead_seconds: tuple[float, float] = (0.05, 0.5)
    trail_seconds: tuple[float, float] = (0.1, 0.6)
    warp_probability: float = 0.8
    warp_factor: tuple[float, float] = (0.85, 1.25)  # > 1: higher formants and pitch, faster
    lowpass_probability: float = 0.3
    lowpass_hz: tuple[float, float] = (3400.0, 7000.0)
    highpass_probability: float = 0.3
    highpass_hz: tuple[float, float] = (80.0, 400.0)


@dataclass(frozen=True)
class Request:
    """One synthesiser call."""

    engine: str  # "espeak", "flite", "festival", "pico" or "rhvoice"
    voice: str
    text: str
    rate: float  # espeak words per minute, or the others' duration stretch
    pitch: float  # espeak pitch 0-99, or the others' f0 scale (festival: unused; the training warp varies it)


def _read_wav_bytes(data: bytes) -> np.ndarray:
    """Samples of a 16-bit mono WAV with a 44-byte header (espeak-ng's streamed header has no valid sizes)."""
    rate = struct.unpack("<I", data[24:28])[0]
    samples = np.frombuffer(data[44:44 + (len(data) - 44) // 2 * 2], dtype=np.int16).astype(np.float32) / 32768.0
    if rate != SAMPLE_RATE:
        divisor = np.gcd(SAMPLE_RATE, rate)
        samples = resample_poly(samples, SAMPLE_RATE // divisor, rate // divisor).astype(np.float32)
    return samples


def synthesize(request: Request) -> np.ndarray:
    """Speak one sentence; float32 16 kHz samples, silence trimmed."""
    if request.engine == "espeak":
        command = ["espeak-ng", "-v", request.voice, "-s", str(int(request.rate)), "-p", str(int(request.pitch)),
                   "--stdout", request.text]
        result = subprocess.run(command, capture_output=True, check=False)
        data = result.stdout
    elif request.engine == "festival":
        with tempfile.NamedTemporaryFile(suffix=".wav") as out:
            # Some diphone voices crash on some words at some duration stretches: then once more at the voice's own
            # durations (a repeatable fallback, so a generated set stays deterministic)
            for stretch in dict.fromkeys((round(request.rate, 3), 1.0)):
                command = ["text2wave", "-eval", f"(voice_{request.voice})",
                           "-eval", f"(Parameter.set 'Duration_Stretch {stretch})", "-o", out.name]
                result = subprocess.run(command, input=request.text.encode(), capture_output=True, check=False)
                if result.returncode == 0:
                    break
            data = Path(out.name).read_bytes()
    elif request.engine == "flite":
        with tempfile.NamedTemporaryFile(suffix=".wav") as out:
            f0 = 110.0 if request.voice in ("kal", "kal16", "awb", "rms") else 170.0
            command = ["flite", "-voice", request.voice, "-t", request.text, "-o", out.name,
                       "--setf", f"duration_stretch={request.rate:.3f}",
                       "--setf", f"int_f0_target_mean={f0 * request.pitch:.1f}"]
            result = subprocess.run(command, capture_output=True, check=False)
            data = Path(out.name).read_bytes()
    elif request.engine in PARAMETRIC_ENGINES:
        speed, pitch = round(100.0 / request.rate), round(100.0 * request.pitch)
        with tempfile.NamedTemporaryFile(suffix=".wav") as out:
            if request.engine == "pico":
                markup = f"<speed level='{speed}'><pitch level='{pitch}'>{request.text}</pitch></speed>"
                result = subprocess.run(["pico2wave", "-l", request.voice, "-w", out.name, markup],
                                        capture_output=True, check=False)
            else:
                markup = f'<speak><prosody rate="{speed}%" pitch="{pitch - 100:+d}%">{request.text}</prosody></speak>'
                result = subprocess.run(["RHVoice-test", "-s", "-p", request.voice, "-o", out.name],
                                        input=markup.encode(), capture_output=True, check=False)
            data = Path(out.name).read_bytes()
    else:
        raise SynthError(f"{request}: expected engine 'espeak', 'flite', 'festival', 'pico' or 'rhvoice'")
    if result.returncode != 0 or len(data) < 44 or data[:4] != b"RIFF":
        raise SynthError(f"{request}: expected a WAV, got rc={result.returncode}, stderr={result.stderr[:200]!r}")
    return trim_silence(_read_wav_bytes(data))


def warp(speech: np.ndarray, factor: float) -> np.ndarray:
    """Resample so that playback at 16 kHz is ``factor`` times faster (formants and pitch scale by ``factor``)."""
    down = int(round(100 * factor))
    divisor = np.gcd(100, down)
    return resample_poly(speech, 100 // divisor, down // divisor).astype(np.float32)


def band_limit(speech: np.ndarray, config: SynthConfig, rng: np.random.Generator) -> np.ndarray:
    """Random low-pass and high-pass (4th-order Butterworth), each with its probability."""
    if rng.random() < config.lowpass_probability:
        sos = butter(4, rng.uniform(*config.lowpass_hz), btype="lowpass", fs=SAMPLE_RATE, output="sos")
        speech = sosfilt(sos, speech).astype(np.float32)
    if rng.random() < config.highpass_probability:
        sos = butter(4, rng.uniform(*config.highpass_hz), btype="highpass", fs=SAMPLE_RATE, output="sos")
        speech = sosfilt(sos, speech).astype(np.float32)
    return speech


def compose(speech: np.ndarray, config: SynthConfig, rng: np.random.Generator,
            warp_voice: bool = True) -> tuple[np.ndarray, int, int]:
    """Vocal-tract warp (training voices only: ``warp_voice``), band-limiting, gain, reverb, silence padding and
    noise; returns (int16 audio, speech_start, speech_end)."""
    if warp_voice and rng.random() < config.warp_probability:
        speech = warp(speech, float(rng.uniform(*config.warp_factor)))
    speech = band_limit(speech, config, rng)
    if rng.random() < config.reverb_probability:
        speech = synthetic_reverb(speech, rng.uniform(*config.rt60_seconds), rng)
    peak = 10.0 ** (rng.uniform(*config.peak_dbfs) / 20.0)
    speech = speech * (peak / (np.max(np.abs(speech)) + 1e-9))
    lead = int(rng.uniform(*config.lead_seconds) * SAMPLE_RATE)
    trail = int(rng.uniform(*config.trail_seconds) * SAMPLE_RATE)
    audio = np.zeros(lead + speech.size + trail, dtype=np.float32)
    audio[lead:lead + speech.size] = speech
    if rng.random() < config.noise_probability:
        rms = float(np.sqrt(np.mean(np.square(speech, dtype=np.float64)))) + 1e-12
        level = rms / 10.0 ** (rng.uniform(*config.snr_db) / 20.0)
        audio += coloured_noise(audio.size, float(rng.choice([0.0, 1.0, 2.0])), rng) * level
    audio = np.clip(audio, -1.0, 32767.0 / 32768.0)
    return np.round(audio * 32768.0).astype(np.int16), lead, lead + speech.size


def parametric_voices(split: str, config: SynthConfig) -> tuple[str, ...]:
    """The split's parametric voices: ``PARAMETRIC_VOICES``, and in training ``config.extra_train_voices`` too (each
    "engine:voice" with a parametric engine, and not a validation or test voice or speaker), sorted."""
    if split != "train" or not config.extra_train_voices:
        return PARAMETRIC_VOICES[split]
    held_out = {*PARAMETRIC_VOICES["validation"], *PARAMETRIC_VOICES["test"]}
    held_out_speakers = {*FLITE_VOICES["validation"], *FLITE_VOICES["test"]}
    for voice in config.extra_train_voices:
        engine, _, name = voice.partition(":")
        if engine not in PARAMETRIC_ENGINES or not name:
            raise ValueError(f"extra training voice {voice!r}: expected 'engine:voice' with engine one of "
                             f"{', '.join(PARAMETRIC_ENGINES)}")
        if voice in held_out or name in held_out_speakers:
            raise ValueError(f"extra training voice {voice!r}: expected a voice outside validation and test, got "
                             f"one of their voices or recorded speakers")
    return tuple(sorted({*PARAMETRIC_VOICES["train"], *config.extra_train_voices}))  # sorted: the order draws use


def plan_split(split: str, n: int, config: SynthConfig, rng: np.random.Generator) -> list[tuple[str, Request]]:
    """(kind, request) for every utterance of a split."""
    variants = split_variants()[split]
    festival = FESTIVAL_VOICES[split]
    parametric = parametric_voices(split, config)
    plan = []
    for _ in range(n):
        kind, text = sample_sentence(rng)
        # (no draw without Festival or parametric voices: test, and without them validation, stay the same)
        if parametric and config.parametric_share > 0 and rng.random() < config.parametric_share:
            engine, voice = str(rng.choice(parametric)).split(":")
            request = Request(engine, voice, text, float(rng.uniform(*config.flite_stretch)),
                              float(rng.uniform(*config.flite_f0_scale)))
        elif festival and config.festival_share > 0 and rng.random() < config.festival_share:
            request = Request("festival", str(rng.choice(festival)), text, float(rng.uniform(*config.flite_stretch)),
                              1.0)
        elif rng.random() < FLITE_SHARE:
            request = Request("flite", str(rng.choice(FLITE_VOICES[split])), text,
                              float(rng.uniform(*config.flite_stretch)), float(rng.uniform(*config.flite_f0_scale)))
        else:
            voice = f"{rng.choice(ESPEAK_LANGUAGES[split])}+{rng.choice(variants)}"
            request = Request("espeak", voice, text, float(rng.integers(*config.espeak_wpm)),
                              float(rng.integers(*config.espeak_pitch)))
        plan.append((kind, request))
    return plan


def generate_split(split: str, n: int, config: SynthConfig, pool: Any, seed: int) -> dict[str, np.ndarray]:
    """All utterances of one split as arrays."""
    rng = np.random.default_rng(seed)
    plan = plan_split(split, n, config, rng)
    speech = pool.map(synthesize, [request for _, request in plan], chunksize=8)
    pieces, bounds = [], []
    for item in speech:
        audio, start, end = compose(item, config, rng, warp_voice=split == "train")
        pieces.append(audio)
        bounds.append((start, end))
    offsets = np.concatenate([[0], np.cumsum([p.size for p in pieces])]).astype(np.int64)
    return {
        "audio": np.concatenate(pieces), "offsets": offsets,
        "texts": np.array([r.text for _, r in plan]), "kinds": np.array([k for k, _ in plan]),
        "voices": np.array([f"{r.engine}:{r.voice}" for _, r in plan]),
        "speech_start": np.array([b[0] for b in bounds], dtype=np.int64),
        "speech_end": np.array([b[1] for b in bounds], dtype=np.int64),
    }


def generate_dataset(out_dir: Path, config: SynthConfig) -> dict[str, Any]:
    """Generate all splits into ``out_dir`` and write ``index.json``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    index: dict[str, Any] = {"sample_rate": SAMPLE_RATE, "config": asdict(config), "splits": {}}
    with multiprocessing.get_context("spawn").Pool(config.workers) as pool:
        for number, split in enumerate(SPLITS):
            n = config.train if split == "train" else config.eval
            arrays = generate_split(split, n, config, pool, seed=config.seed * 1000 + number)
            np.savez_compressed(out_dir / f"{split}.npz", allow_pickle=False, **arrays)
            index["splits"][split] = {"n": n, "voices": sorted(set(str(v) for v in arrays["voices"])),
                                      "hours": round(arrays["audio"].size / SAMPLE_RATE / 3600, 3)}
            print(f"[synth] {split}: {n} utterances, {time.time() - started:.0f}s", flush=True)
    index["wall_seconds"] = round(time.time() - started, 1)
    (out_dir / "index.json").write_text(json.dumps(index, indent=1))
    return index


def load_split(data_dir: Path, split: str) -> dict[str, np.ndarray]:
    """The arrays of one split."""
    with np.load(Path(data_dir) / f"{split}.npz") as data:
        return {key: data[key] for key in data.files}


def utterances(arrays: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The int16 audio of each utterance."""
    offsets = arrays["offsets"]
    return [arrays["audio"][offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--train", type=int, default=SynthConfig.train)
    parser.add_argument("--eval", type=int, default=SynthConfig.eval, help="utterances in validation and in test")
    parser.add_argument("--festival-share", type=float, default=SynthConfig.festival_share,
                        help="share of training utterances spoken by Festival voices (needs the festvox packages)")
    parser.add_argument("--parametric-share", type=float, default=SynthConfig.parametric_share,
                        help="share of training and validation utterances spoken by Pico and RHVoice voices "
                             "(needs libttspico-utils and rhvoice-english, Debian non-free)")
    parser.add_argument("--extra-train-voices", default="",
                        help="comma-separated parametric voices added to the training ones, e.g. "
                             "pico:es-ES,pico:it-IT (other languages' speakers reading the English sentences)")
    parser.add_argument("--seed", type=int, default=SynthConfig.seed)
    parser.add_argument("--workers", type=int, default=SynthConfig.workers)
    args = parser.parse_args(argv)
    config = SynthConfig(train=args.train, eval=args.eval, seed=args.seed, workers=args.workers,
                         festival_share=args.festival_share, parametric_share=args.parametric_share,
                         extra_train_voices=tuple(v for v in args.extra_train_voices.split(",") if v))
    try:
        parametric_voices("train", config)
    except ValueError as error:
        parser.error(str(error))
    print(json.dumps(generate_dataset(args.out, config)["splits"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
