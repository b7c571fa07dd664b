"""Synthesise grammar sentences for the speech-recognition recipe, on the shared speech-data engine
(``recipes/speech``: voice catalogue, synthesisers, augmentation, cache).

Voices are split by speaker (``recipes/speech/voices.py``):
- training: espeak-ng training accents x training variants, flite kal/kal16/awb; with ``festival_share`` > 0
  Festival's recorded-speaker voices; with ``parametric_share`` > 0 Pico en-US and RHVoice alan/bdl/clb (plus
  ``extra_train_voices``); with ``kokoro_share`` > 0 Kokoro-82M blends (hundreds of new speakers from weighted sums of
  its voices, ``kokoro_speakers`` of them, never containing the validation voice); with ``piper_share`` > 0 Piper's
  joe;
- validation: espeak-ng en-gb-scotland x validation variants, flite rms; Pico en-GB with ``parametric_share``;
  Kokoro blends dominated by its held-back voice with ``kokoro_share``;
- test: only the held-out voices: MBROLA us1/us2/us3/en1 (through espeak-ng) and the CMU SLT speaker in flite,
  Festival and RHVoice, each equally often. No setting changes the test split but its size and seed.

Validation and test also hold ``out_of_grammar_share`` of English sentences outside the grammar (Debian fortunes,
split by source file: the text recipe's split), kind ``out_of_grammar``: a recognizer should give no text for them.

Each utterance gets a random speed and pitch, in training a vocal-tract-length change (resampling by a factor that
moves formants, pitch and tempo together), optional band-limiting (a cheap microphone or an 8 kHz line), gain, room
acoustics (pyroomacoustics image-source rooms, or with ``reverb="synthetic"`` the older decaying-noise reverb),
coloured noise and random leading/trailing silence. Dry speech is cached per request (``--cache``), so a stopped
generation resumes and sets that share requests synthesise them once.

Output: ``DIR/{train,validation,test}.npz`` (``audio`` int16 concatenated, ``offsets`` [N+1], ``texts``, ``kinds``,
``voices``, ``speech_start``/``speech_end`` samples within each utterance) and ``DIR/index.json`` (with the voice
catalogue and each voice's licence).

Run: ``python -m lstm_edge.recipes.asr.synth --out DIR [--train 3600] [--eval 300]``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lstm_edge.recipes.asr.grammar import sample_sentence
from lstm_edge.recipes.speech import voices
from lstm_edge.recipes.speech.augment import apply_room, coloured_noise, room_bank, synthetic_reverb, warp
from lstm_edge.recipes.speech.augment import band_limit as _band_limit
from lstm_edge.recipes.speech.cache import DEFAULT_CACHE, render_all
from lstm_edge.recipes.speech.sentences import running_sentences
from lstm_edge.recipes.speech.synthesis import (
    PARAMETRIC_ENGINES,
    SAMPLE_RATE,
    Request,
    SynthError,
    held_out_request,
    synthesize,
    synthesize_with_fallback,
)
from lstm_edge.recipes.speech.voices import ESPEAK_LANGUAGES, split_variants

__all__ = ["ESPEAK_LANGUAGES", "PARAMETRIC_ENGINES", "SAMPLE_RATE", "Request", "SynthError", "split_variants",
           "synthesize", "warp"]

SPLITS: tuple[str, ...] = voices.SPLITS
FLITE_VOICES: dict[str, tuple[str, ...]] = {s: voices.names("flite", s) for s in SPLITS}
FLITE_SHARE = 0.4
# Statistical-parametric voices built from recorded speakers (Debian non-free: libttspico-utils, rhvoice-english).
# RHVoice's slt is the held-out SLT speaker: test only, through the held-out plan.
PARAMETRIC_VOICES: dict[str, tuple[str, ...]] = {
    "train": ("pico:en-US", "rhvoice:alan", "rhvoice:bdl", "rhvoice:clb"),
    "validation": ("pico:en-GB",),
    "test": (),
}
FESTIVAL_VOICES: dict[str, tuple[str, ...]] = {s: voices.names("festival", s) if s != "test" else ()
                                               for s in SPLITS}
# The test split: every held-out voice, equally often.
HELD_OUT_VOICES: tuple[str, ...] = voices.HELD_OUT_TEST_VOICES


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
    kokoro_share: float = 0.0  # share of training and validation utterances from Kokoro blends
    kokoro_speakers: int = 300  # training blends (validation: a tenth of it, at least 8)
    piper_share: float = 0.0  # share of training utterances from Piper voices
    out_of_grammar_share: float = 0.0  # share of validation and test utterances outside the grammar
    reverb: str = "synthetic"  # "room" (pyroomacoustics) or "synthetic" (decaying noise)
    rooms: int = 48  # simulated rooms per split
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


def band_limit(speech: np.ndarray, config: SynthConfig, rng: np.random.Generator) -> np.ndarray:
    """Random low-pass and high-pass (4th-order Butterworth), each with its probability."""
    return _band_limit(speech, rng, config.lowpass_probability, config.lowpass_hz, config.highpass_probability,
                       config.highpass_hz)


def compose(speech: np.ndarray, config: SynthConfig, rng: np.random.Generator, warp_voice: bool = True,
            rooms: Sequence[np.ndarray] = ()) -> tuple[np.ndarray, int, int]:
    """Vocal-tract warp (training voices only: ``warp_voice``), band-limiting, reverb (a room of ``rooms`` when
    given, else the synthetic reverb), gain, silence padding and noise; returns (int16 audio, speech_start,
    speech_end)."""
    if warp_voice and rng.random() < config.warp_probability:
        speech = warp(speech, float(rng.uniform(*config.warp_factor)))
    speech = band_limit(speech, config, rng)
    if rng.random() < config.reverb_probability:
        if rooms:
            speech = apply_room(speech, rooms[int(rng.integers(len(rooms)))])
        else:
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
    "engine:voice" with a parametric engine, and not a validation, test or held-out voice), sorted."""
    if split != "train" or not config.extra_train_voices:
        return PARAMETRIC_VOICES[split]
    held_out = {*PARAMETRIC_VOICES["validation"], *PARAMETRIC_VOICES["test"]}
    held_out_speakers = {*FLITE_VOICES["validation"], *FLITE_VOICES["test"]}
    for voice in config.extra_train_voices:
        engine, _, name = voice.partition(":")
        if engine not in PARAMETRIC_ENGINES or not name:
            raise ValueError(f"extra training voice {voice!r}: expected 'engine:voice' with engine one of "
                             f"{', '.join(PARAMETRIC_ENGINES)}")
        if voice in held_out or name in held_out_speakers or voices.is_held_out(voice):
            raise ValueError(f"extra training voice {voice!r}: expected a voice outside validation and test, got "
                             f"one of their voices or recorded speakers")
    return tuple(sorted({*PARAMETRIC_VOICES["train"], *config.extra_train_voices}))  # sorted: the order draws use


def kokoro_speakers(split: str, config: SynthConfig) -> tuple[str, ...]:
    """The split's Kokoro blend names (``voices.kokoro_speakers`` for the config's count and seed)."""
    return voices.kokoro_speakers(split, config.kokoro_speakers, config.seed)


def _neural_request(split: str, text: str, config: SynthConfig, rng: np.random.Generator,
                    speakers: tuple[str, ...]) -> Request | None:
    """A Kokoro or Piper request by the shares (one draw each, only when its share is on), or None."""
    if speakers and config.kokoro_share > 0 and rng.random() < config.kokoro_share:
        return Request("kokoro", str(rng.choice(speakers)), text, float(rng.uniform(*config.flite_stretch)), 1.0)
    piper = voices.names("piper", split)
    if piper and config.piper_share > 0 and rng.random() < config.piper_share:
        return Request("piper", str(rng.choice(piper)), text, float(rng.uniform(*config.flite_stretch)), 1.0)
    return None


def _held_out_request(text: str, config: SynthConfig, rng: np.random.Generator) -> Request:
    return held_out_request(text, HELD_OUT_VOICES, rng, config.espeak_wpm, config.espeak_pitch, config.flite_stretch,
                            config.flite_f0_scale)


def out_of_grammar_sentences(split: str) -> list[str]:
    """English sentences of 3-10 words from the split's fortunes files (never the training files)."""
    return running_sentences(min_words=3, max_words=10)[split]


def plan_split(split: str, n: int, config: SynthConfig, rng: np.random.Generator) -> list[tuple[str, Request]]:
    """(kind, request) for every utterance of a split."""
    variants = split_variants()[split]
    festival = FESTIVAL_VOICES[split]
    parametric = parametric_voices(split, config)
    neural = split != "test" and (config.kokoro_share > 0 or config.piper_share > 0)
    speakers = kokoro_speakers(split, config) if neural and config.kokoro_share > 0 else ()
    out_of_grammar = (out_of_grammar_sentences(split)
                      if split != "train" and config.out_of_grammar_share > 0 else [])
    plan = []
    for _ in range(n):
        kind, text = sample_sentence(rng)
        # (each extra draw happens only when its option is on: without them, every split is drawn as before)
        if out_of_grammar and rng.random() < config.out_of_grammar_share:
            kind, text = "out_of_grammar", str(rng.choice(out_of_grammar))
        neural_request = _neural_request(split, text, config, rng, speakers) if neural else None
        if split == "test":
            request = _held_out_request(text, config, rng)
        elif neural_request is not None:
            request = neural_request
        elif parametric and config.parametric_share > 0 and rng.random() < config.parametric_share:
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
        voices.check_trainable(request.voice_id, split)
        plan.append((kind, request))
    return plan


def generate_split(split: str, n: int, config: SynthConfig, pool: Any, seed: int,
                   cache: Path | None = None) -> dict[str, np.ndarray]:
    """All utterances of one split as arrays."""
    rng = np.random.default_rng(seed)
    plan = plan_split(split, n, config, rng)
    speech = render_all([request for _, request in plan], pool, cache, label=split,
                        render=synthesize_with_fallback)
    rooms = room_bank(config.rooms, seed) if config.reverb == "room" else []
    pieces, bounds = [], []
    for item in speech:
        audio, start, end = compose(item, config, rng, warp_voice=split == "train", rooms=rooms)
        pieces.append(audio)
        bounds.append((start, end))
    offsets = np.concatenate([[0], np.cumsum([p.size for p in pieces])]).astype(np.int64)
    return {
        "audio": np.concatenate(pieces), "offsets": offsets,
        "texts": np.array([r.text for _, r in plan]), "kinds": np.array([k for k, _ in plan]),
        "voices": np.array([r.voice_id for _, r in plan]),
        "speech_start": np.array([b[0] for b in bounds], dtype=np.int64),
        "speech_end": np.array([b[1] for b in bounds], dtype=np.int64),
    }


def generate_dataset(out_dir: Path, config: SynthConfig, cache: Path | None = DEFAULT_CACHE,
                     splits: Sequence[str] = SPLITS) -> dict[str, Any]:
    """Generate the splits into ``out_dir`` and write ``index.json``."""
    if config.reverb not in ("room", "synthetic"):
        raise ValueError(f"reverb: expected 'room' or 'synthetic', got {config.reverb!r}")
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    index: dict[str, Any] = {"sample_rate": SAMPLE_RATE, "config": asdict(config), "splits": {},
                             "catalogue": voices.describe()}
    earlier = out_dir / "index.json"
    if set(splits) != set(SPLITS) and earlier.exists():  # generating some splits: keep the others' entries
        index["splits"] = {k: v for k, v in json.loads(earlier.read_text()).get("splits", {}).items()
                           if k not in splits}
    with multiprocessing.get_context("spawn").Pool(config.workers) as pool:
        for split in splits:
            number = SPLITS.index(split)
            n = config.train if split == "train" else config.eval
            arrays = generate_split(split, n, config, pool, seed=config.seed * 1000 + number, cache=cache)
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
    parser.add_argument("--kokoro-share", type=float, default=SynthConfig.kokoro_share,
                        help="share of training and validation utterances spoken by Kokoro-82M voice blends "
                             "(needs the speech extra)")
    parser.add_argument("--kokoro-speakers", type=int, default=SynthConfig.kokoro_speakers)
    parser.add_argument("--piper-share", type=float, default=SynthConfig.piper_share,
                        help="share of training utterances spoken by Piper voices (needs the speech extra)")
    parser.add_argument("--out-of-grammar-share", type=float, default=SynthConfig.out_of_grammar_share,
                        help="share of validation and test utterances that are sentences outside the grammar")
    parser.add_argument("--reverb", choices=("room", "synthetic"), default=SynthConfig.reverb)
    parser.add_argument("--splits", default=",".join(SPLITS), help="comma-separated splits to generate")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="dry-speech cache directory")
    parser.add_argument("--no-cache", action="store_true")
    parser.add_argument("--seed", type=int, default=SynthConfig.seed)
    parser.add_argument("--workers", type=int, default=SynthConfig.workers)
    args = parser.parse_args(argv)
    config = SynthConfig(train=args.train, eval=args.eval, seed=args.seed, workers=args.workers,
                         festival_share=args.festival_share, parametric_share=args.parametric_share,
                         extra_train_voices=tuple(v for v in args.extra_train_voices.split(",") if v),
                         kokoro_share=args.kokoro_share, kokoro_speakers=args.kokoro_speakers,
                         piper_share=args.piper_share, out_of_grammar_share=args.out_of_grammar_share,
                         reverb=args.reverb)
    splits = [s for s in args.splits.split(",") if s]
    try:
        parametric_voices("train", config)
        if not splits or set(splits) - set(SPLITS):
            raise ValueError(f"--splits: expected some of {', '.join(SPLITS)}, got {args.splits!r}")
    except ValueError as error:
        parser.error(str(error))
    index = generate_dataset(args.out, config, cache=None if args.no_cache else args.cache, splits=splits)
    print(json.dumps(index["splits"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
