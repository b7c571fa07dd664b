"""Synthesise a Speech-Commands-style keyword set with espeak-ng (no download, no committed audio).

Twelve labels (``LABELS``): ``_silence_``, ``_unknown_`` and ten keywords. Each clip is 1 s of 16 kHz mono int16
with one word (or only background for ``_silence_``) at a random time offset, random speed/pitch/amplitude, optional
synthetic reverb, and coloured noise or babble from other words of the same split.

A *voice* is an espeak-ng ``language+variant`` pair. The train/validation/test split is by voice, and stricter:
the languages and the variants are each partitioned, so a test voice shares neither its language (accent) nor its
variant (timbre) with any training voice.

Output: ``DIR/{train,validation,test}-NNN.npz`` shards (``audio`` int16 [N, 16000], ``labels`` int64 [N],
``speech_start``/``speech_end`` sample indices (-1 for silence), ``voice_ids`` int64 into ``voices``) and
``DIR/index.json`` describing labels, voices per split, shard files and the settings used.

Run: ``python -m lstm_edge.recipes.kws.synth --out DIR [--train-per-class 1500] [--eval-per-class 150]``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import struct
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.signal import fftconvolve, resample_poly

SAMPLE_RATE = 16000
CLIP_SAMPLES = SAMPLE_RATE
KEYWORDS: tuple[str, ...] = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
SILENCE_LABEL = "_silence_"
UNKNOWN_LABEL = "_unknown_"
LABELS: tuple[str, ...] = (SILENCE_LABEL, UNKNOWN_LABEL) + KEYWORDS
SPLITS: tuple[str, ...] = ("train", "validation", "test")

# Non-keyword words: Speech Commands' auxiliary words, near-misses of the keywords, and common English words.
# No homophone of a keyword ("know", "write"): espeak-ng speaks those with the keyword's phonemes, so a clip of one
# could only be labelled by guessing (a test checks the phonemes).
UNKNOWN_WORDS: tuple[str, ...] = (
    "bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila", "tree", "wow", "zero", "one", "two", "three",
    "four", "five", "six", "seven", "eight", "nine", "learn", "follow", "forward", "backward", "visual",
    "yet", "yeah", "yell", "note", "nope", "snow", "cup", "pup", "town", "clown", "gown", "lift", "lefty",
    "light", "bright", "ride", "own", "in", "of", "often", "top", "stock", "step", "goal", "dough", "gold",
    "ago", "sir", "apple", "water", "table", "paper", "music", "window", "garden", "orange", "purple", "green",
    "yellow", "monday", "friday", "morning", "evening", "coffee", "doctor", "river", "mountain", "silver", "button",
    "hello", "thanks", "maybe", "never", "always", "people", "little", "better", "under", "over", "after", "before",
    "nothing", "something", "open", "close", "start", "pause", "play", "next", "back", "home", "phone", "camera",
)

ENGLISH_LANGUAGES: dict[str, tuple[str, ...]] = {
    "train": ("en-us", "en-gb", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029"),
    "validation": ("en-gb-scotland",),
    "test": ("en-gb-x-rp", "en-us-nyc"),
}
OTHER_LANGUAGES: dict[str, tuple[str, ...]] = {
    "train": ("de", "fr-fr", "es", "it", "nl", "sv", "pl", "pt-br", "fi", "hu", "cs", "id"),
    "validation": ("da", "sk"),
    "test": ("ro", "hr", "nb"),
}
ENGLISH_LANGUAGE_SHARE = 0.7

# espeak-ng voice variants (files in espeak-ng-data/voices/!v) with single-word names.
VARIANTS: tuple[str, ...] = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5", "croak", "whisper", "whisperf",
    "klatt", "klatt2", "klatt3", "klatt4", "klatt5", "klatt6", "Alex", "Alicia", "Andrea", "Andy", "Annie",
    "AnxiousAndy", "Denis", "Diogo", "Gene", "Gene2", "Henrique", "Hugo", "Jacky", "Lee", "Marco", "Mario",
    "Michael", "Mike", "Nguyen", "RicishayMax", "RicishayMax2", "RicishayMax3", "Storm", "Tweaky", "UniRobot",
    "adam", "anika", "anikaRobot", "announcer", "antonio", "aunty", "belinda", "benjamin", "boris", "caleb",
    "david", "ed", "edward", "edward2", "gustave", "grandma", "grandpa", "iven", "iven2", "iven3", "iven4", "john",
    "kaukovalta", "linda", "marcelo", "max", "michel", "miguel", "norbert", "pablo", "paul", "pedro", "quincy",
    "rob", "robert", "robosoft", "robosoft2", "robosoft3", "robosoft4", "robosoft5", "robosoft6", "robosoft7",
    "robosoft8", "sandro", "shelby", "steph", "steph2", "steph3", "travis", "victor", "zac", "Demonic",
)
VARIANT_SPLIT_FRACTIONS = {"train": 0.7, "validation": 0.12, "test": 0.18}
VARIANT_SPLIT_SEED = 20261125


class SynthError(RuntimeError):
    """espeak-ng failed or produced unusable audio."""


@dataclass(frozen=True)
class SynthConfig:
    """Sizes and augmentation ranges of a generated set."""

    train_per_class: int = 1500
    eval_per_class: int = 150
    train_unknown_factor: float = 2.0  # _unknown_ spans ~100 words: train on this many times train_per_class of it
    seed: int = 0
    workers: int = 2
    shard_size: int = 2000
    speed_wpm: tuple[int, int] = (110, 230)
    pitch: tuple[int, int] = (15, 85)
    amplitude: tuple[int, int] = (60, 180)
    peak_dbfs: tuple[float, float] = (-28.0, -1.0)
    reverb_probability: float = 0.35
    rt60_seconds: tuple[float, float] = (0.08, 0.6)
    noise_probability: float = 0.85
    snr_db: tuple[float, float] = (3.0, 35.0)
    babble_probability: float = 0.3


def split_variants(seed: int = VARIANT_SPLIT_SEED) -> dict[str, list[str]]:
    """Deterministic disjoint partition of the voice variants over the three splits."""
    order = np.random.default_rng(seed).permutation(len(VARIANTS))
    n_train = int(round(VARIANT_SPLIT_FRACTIONS["train"] * len(VARIANTS)))
    n_validation = int(round(VARIANT_SPLIT_FRACTIONS["validation"] * len(VARIANTS)))
    shuffled = [VARIANTS[i] for i in order]
    return {
        "train": sorted(shuffled[:n_train]),
        "validation": sorted(shuffled[n_train : n_train + n_validation]),
        "test": sorted(shuffled[n_train + n_validation :]),
    }


def voices_for_split(split: str) -> tuple[list[str], list[str], list[str]]:
    """(English languages, other languages, variants) of one split."""
    return list(ENGLISH_LANGUAGES[split]), list(OTHER_LANGUAGES[split]), split_variants()[split]


@dataclass(frozen=True)
class UtteranceRequest:
    """One espeak-ng call."""

    word: str
    voice: str
    speed_wpm: int
    pitch: int
    amplitude: int


def synthesize(request: UtteranceRequest) -> np.ndarray:
    """Speak one word with espeak-ng; returns float32 samples at 16 kHz with leading/trailing silence trimmed."""
    command = [
        "espeak-ng", "-v", request.voice, "-s", str(request.speed_wpm), "-p", str(request.pitch),
        "-a", str(request.amplitude), "--stdout", request.word,
    ]
    result = subprocess.run(command, capture_output=True, check=False)
    wav_bytes = result.stdout
    if result.returncode != 0 or len(wav_bytes) < 44 or wav_bytes[:4] != b"RIFF":
        raise SynthError(f"espeak-ng {request}: expected a WAV on stdout, got rc={result.returncode} "
                         f"{len(wav_bytes)} bytes, stderr={result.stderr[:200]!r}")
    source_rate = struct.unpack("<I", wav_bytes[24:28])[0]
    pcm = np.frombuffer(wav_bytes[44 : 44 + (len(wav_bytes) - 44) // 2 * 2], dtype=np.int16).astype(np.float32)
    pcm /= 32768.0
    if source_rate != SAMPLE_RATE:
        divisor = np.gcd(SAMPLE_RATE, source_rate)
        pcm = resample_poly(pcm, SAMPLE_RATE // divisor, source_rate // divisor).astype(np.float32)
    return trim_silence(pcm)


def trim_silence(pcm: np.ndarray, threshold_ratio: float = 0.02, margin: int = 160) -> np.ndarray:
    """Cut leading/trailing samples whose 10 ms envelope stays below ``threshold_ratio`` of the peak."""
    if pcm.size == 0:
        return pcm
    envelope = np.convolve(np.abs(pcm), np.ones(160) / 160.0, mode="same")
    active = np.flatnonzero(envelope > threshold_ratio * envelope.max())
    if active.size == 0:
        return pcm[:0]
    start = max(0, int(active[0]) - margin)
    end = min(pcm.size, int(active[-1]) + margin)
    return pcm[start:end]


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


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) + 1e-12


def compose_clip(
    speech: np.ndarray | None,
    babble_pool: Sequence[np.ndarray],
    config: SynthConfig,
    rng: np.random.Generator,
) -> tuple[np.ndarray, int, int]:
    """Place a word (or nothing) in a 1 s clip with reverb/noise; returns (int16 clip, speech_start, speech_end)."""
    clip = np.zeros(CLIP_SAMPLES, dtype=np.float32)
    speech_start, speech_end = -1, -1
    peak = 10.0 ** (rng.uniform(*config.peak_dbfs) / 20.0)
    if speech is not None and speech.size:
        if rng.random() < config.reverb_probability:
            speech = synthetic_reverb(speech, rng.uniform(*config.rt60_seconds), rng)
        speech = speech[:CLIP_SAMPLES]
        speech = speech * (peak / (np.max(np.abs(speech)) + 1e-9))
        speech_start = int(rng.integers(0, CLIP_SAMPLES - speech.size + 1))
        speech_end = speech_start + speech.size
        clip[speech_start:speech_end] = speech
    add_noise = speech is None or rng.random() < config.noise_probability
    if add_noise:
        if speech is None:
            noise_level = 10.0 ** (rng.uniform(-75.0, -25.0) / 20.0)
        else:
            noise_level = _rms(clip[speech_start:speech_end]) / 10.0 ** (rng.uniform(*config.snr_db) / 20.0)
        clip += coloured_noise(CLIP_SAMPLES, float(rng.choice([0.0, 1.0, 1.0, 2.0])), rng) * noise_level
    if babble_pool and rng.random() < config.babble_probability:
        babble_peak = peak * 10.0 ** (rng.uniform(-30.0, -14.0) / 20.0)
        for _ in range(int(rng.integers(1, 4))):
            other = babble_pool[int(rng.integers(len(babble_pool)))][:CLIP_SAMPLES]
            offset = int(rng.integers(-other.size // 2, CLIP_SAMPLES - other.size // 2))
            lo, hi = max(0, offset), min(CLIP_SAMPLES, offset + other.size)
            clip[lo:hi] += other[lo - offset : hi - offset] * (babble_peak / (np.max(np.abs(other)) + 1e-9))
    clip = np.clip(clip, -1.0, 32767.0 / 32768.0)
    return np.round(clip * 32768.0).astype(np.int16), speech_start, speech_end


def clips_per_label(split: str, config: SynthConfig) -> dict[str, int]:
    """How many clips of each label a split gets (validation and test are balanced; train has more _unknown_)."""
    per_class = config.train_per_class if split == "train" else config.eval_per_class
    counts = {label: per_class for label in LABELS}
    if split == "train":
        counts[UNKNOWN_LABEL] = int(round(per_class * config.train_unknown_factor))
    return counts


def plan_split(split: str, config: SynthConfig, rng: np.random.Generator) -> list[tuple[int, UtteranceRequest | None]]:
    """(label index, espeak request or None for silence) for every clip of a split."""
    english, other, variants = voices_for_split(split)
    counts = clips_per_label(split, config)
    plan: list[tuple[int, UtteranceRequest | None]] = []
    for label_index, label in enumerate(LABELS):
        for _ in range(counts[label]):
            if label == SILENCE_LABEL:
                plan.append((label_index, None))
                continue
            word = str(rng.choice(UNKNOWN_WORDS)) if label == UNKNOWN_LABEL else label
            language = str(rng.choice(english if rng.random() < ENGLISH_LANGUAGE_SHARE else other))
            voice = f"{language}+{rng.choice(variants)}"
            request = UtteranceRequest(
                word=word,
                voice=voice,
                speed_wpm=int(rng.integers(config.speed_wpm[0], config.speed_wpm[1] + 1)),
                pitch=int(rng.integers(config.pitch[0], config.pitch[1] + 1)),
                amplitude=int(rng.integers(config.amplitude[0], config.amplitude[1] + 1)),
            )
            plan.append((label_index, request))
    order = rng.permutation(len(plan))
    return [plan[i] for i in order]


def _synthesize_or_empty(request: UtteranceRequest | None) -> np.ndarray | None:
    return None if request is None else synthesize(request)


def generate_split(
    split: str, config: SynthConfig, pool: multiprocessing.pool.Pool, seed: int
) -> dict[str, np.ndarray]:
    """All clips of one split as arrays (audio int16 [N, 16000], labels, speech bounds, voice names)."""
    rng = np.random.default_rng(seed)
    plan = plan_split(split, config, rng)
    utterances = list(pool.imap(_synthesize_or_empty, [request for _, request in plan], chunksize=16))
    babble_pool = [u for u in utterances if u is not None and u.size > 0]
    audio = np.zeros((len(plan), CLIP_SAMPLES), dtype=np.int16)
    speech_bounds = np.full((len(plan), 2), -1, dtype=np.int64)
    voices: list[str] = []
    for i, ((_, request), speech) in enumerate(zip(plan, utterances)):
        audio[i], speech_bounds[i, 0], speech_bounds[i, 1] = compose_clip(speech, babble_pool, config, rng)
        voices.append("" if request is None else request.voice)
    return {
        "audio": audio,
        "labels": np.array([label for label, _ in plan], dtype=np.int64),
        "speech_start": speech_bounds[:, 0],
        "speech_end": speech_bounds[:, 1],
        "voices": np.array(voices),
        "words": np.array(["" if r is None else r.word for _, r in plan]),
    }


def _write_shards(out_dir: Path, split: str, arrays: dict[str, np.ndarray], shard_size: int) -> list[str]:
    names = []
    for shard_index, start in enumerate(range(0, arrays["labels"].shape[0], shard_size)):
        name = f"{split}-{shard_index:03d}.npz"
        shard = {key: value[start : start + shard_size] for key, value in arrays.items()}
        np.savez_compressed(out_dir / name, allow_pickle=False, **shard)
        names.append(name)
    return names


def generate_dataset(out_dir: Path, config: SynthConfig) -> dict[str, Any]:
    """Generate all splits into ``out_dir`` and write ``index.json``; returns the index."""
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    index: dict[str, object] = {
        "labels": list(LABELS),
        "sample_rate": SAMPLE_RATE,
        "clip_samples": CLIP_SAMPLES,
        "config": asdict(config),
        "splits": {},
    }
    # spawn, not fork: the calling process may already run threads (a test process with JAX or torch loaded)
    with multiprocessing.get_context("spawn").Pool(config.workers) as pool:
        for split_number, split in enumerate(SPLITS):
            arrays = generate_split(split, config, pool, seed=config.seed * 1000 + split_number)
            shards = _write_shards(out_dir, split, arrays, config.shard_size)
            english, other, variants = voices_for_split(split)
            index["splits"][split] = {  # type: ignore[index]
                "shards": shards,
                "n_clips": int(arrays["labels"].shape[0]),
                "per_label": {label: int(np.sum(arrays["labels"] == i)) for i, label in enumerate(LABELS)},
                "languages": english + other,
                "variants": variants,
                "voices_used": sorted(set(str(v) for v in arrays["voices"] if v)),
            }
            print(f"[synth] {split}: {arrays['labels'].shape[0]} clips, {time.time() - started:.0f}s", flush=True)
    index["wall_seconds"] = round(time.time() - started, 1)
    (out_dir / "index.json").write_text(json.dumps(index, indent=1))
    return index


def load_split(data_dir: Path, split: str) -> dict[str, np.ndarray]:
    """Concatenate the shards of one split written by ``generate_dataset``."""
    index = json.loads((Path(data_dir) / "index.json").read_text())
    if list(index["labels"]) != list(LABELS):
        raise SynthError(f"{data_dir}/index.json labels: expected {list(LABELS)}, got {index['labels']}")
    parts: dict[str, list[np.ndarray]] = {}
    for shard in index["splits"][split]["shards"]:
        with np.load(Path(data_dir) / shard) as data:
            for key in data.files:
                parts.setdefault(key, []).append(data[key])
    return {key: np.concatenate(values) for key, values in parts.items()}


def iter_label_names(labels: np.ndarray) -> Iterator[str]:
    """Label names of label indices."""
    for label in labels:
        yield LABELS[int(label)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--train-per-class", type=int, default=SynthConfig.train_per_class)
    parser.add_argument("--eval-per-class", type=int, default=SynthConfig.eval_per_class,
                        help="clips per class in validation and in test")
    parser.add_argument("--train-unknown-factor", type=float, default=SynthConfig.train_unknown_factor,
                        help="training clips of _unknown_ per training clip of each other label")
    parser.add_argument("--seed", type=int, default=SynthConfig.seed)
    parser.add_argument("--workers", type=int, default=SynthConfig.workers)
    args = parser.parse_args(argv)
    config = SynthConfig(train_per_class=args.train_per_class, eval_per_class=args.eval_per_class,
                         train_unknown_factor=args.train_unknown_factor, seed=args.seed, workers=args.workers)
    index = generate_dataset(args.out, config)
    splits: dict[str, Any] = index["splits"]
    print(json.dumps({split: info["n_clips"] for split, info in splits.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
