"""Synthesise a keyword set with espeak-ng and flite (no download, no committed audio).

Labels (``labels_for(keywords)``): ``_silence_``, ``_unknown_`` and the keywords (default ``KEYWORDS``, the ten
Speech-Commands words; ``kws-train`` passes its own phrases). Each clip is 1 s of 16 kHz mono int16 with one
utterance (or only background for ``_silence_``) at a random time offset. ``_unknown_`` holds two kinds of
negatives: single words (other words and near misses of the keywords) and 1 s crops of running sentences (Debian
``fortunes`` text, split by source file; sentences containing a keyword or its homophone are dropped).

Voices come from two synthesiser families: espeak-ng (formant synthesis; a *voice* is a ``language+variant`` pair)
and flite (voices built from recorded human speakers); with ``festival_share`` > 0, training also gets Festival's
recorded-speaker voices (``FESTIVAL_VOICES``, training only: more speakers, women and a child among them). Splits
are by voice: espeak-ng languages and variants are each partitioned, so a test voice shares neither accent nor
timbre with a training voice, and whole flite voices are held out (``FLITE_VOICES``: kal/kal16/awb train, rms
validation, slt test).

Augmentation that mimics a cheap board microphone (``sox``, per utterance): speed and pitch changes, room reverb,
band-limiting (high- and low-pass); then random gain, time offset, coloured noise over a wide SNR range and babble.

Besides the clips, validation and test get long *streams* for detection metrics (``streams-{split}.npz``): running
speech without any keyword (false alarms per hour) and keywords embedded in running speech (recall), by that
split's voices with noise (see ``recipes/kws/detection.py``).

Output: ``DIR/{train,validation,test}-NNN.npz`` shards (``audio`` int16 [N, 16000], ``labels`` int64 [N],
``speech_start``/``speech_end`` sample indices (-1 for silence), ``voices``, ``words``, ``kinds``), the stream files
and ``DIR/index.json`` describing labels, voices per split, shard files and the settings used.

Run: ``python -m lstm_edge.recipes.kws.synth --out DIR [--train-per-class 1500] [--eval-per-class 150]``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from lstm_edge.recipes.speech import voices
from lstm_edge.recipes.speech.augment import apply_sox, coloured_noise, synthetic_reverb
from lstm_edge.recipes.speech.augment import rms as _rms
from lstm_edge.recipes.speech.sentences import running_sentences
from lstm_edge.recipes.speech.synthesis import SAMPLE_RATE, Request, SynthError, synthesize_with_fallback, trim_silence
from lstm_edge.recipes.speech.voices import ESPEAK_LANGUAGES as ENGLISH_LANGUAGES
from lstm_edge.recipes.speech.voices import (
    OTHER_LANGUAGES,
    VARIANT_SPLIT_FRACTIONS,
    VARIANT_SPLIT_SEED,
    VARIANTS,
    split_variants,
)

__all__ = ["ENGLISH_LANGUAGES", "OTHER_LANGUAGES", "SAMPLE_RATE", "VARIANTS", "VARIANT_SPLIT_FRACTIONS",
           "VARIANT_SPLIT_SEED", "SynthError", "apply_sox", "coloured_noise", "split_variants", "synthetic_reverb",
           "trim_silence"]
CLIP_SAMPLES = SAMPLE_RATE
KEYWORDS: tuple[str, ...] = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
SILENCE_LABEL = "_silence_"
UNKNOWN_LABEL = "_unknown_"
NON_KEYWORD_LABELS: tuple[str, ...] = (SILENCE_LABEL, UNKNOWN_LABEL)
LABELS: tuple[str, ...] = NON_KEYWORD_LABELS + KEYWORDS
SPLITS: tuple[str, ...] = ("train", "validation", "test")
KINDS: tuple[str, ...] = ("silence", "keyword", "word", "sentence")

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
    "let", "less", "lend", "dawn", "done", "though", "goat", "got", "good", "yep", "nose", "stuff", "shop", "cough",
    "ups", "upper", "rice", "rise", "wrote", "don", "gone", "stomp", "bye", "okay", "knock", "loft", "soft",
)
# Words spoken like a keyword: kept out of the sentence negatives (and out of UNKNOWN_WORDS).
HOMOPHONES: dict[str, tuple[str, ...]] = {"no": ("know",), "right": ("write", "rite", "wright")}
# Generic words used as negatives for any keyword set (custom keywords add their own near misses).
GENERIC_WORDS: tuple[str, ...] = UNKNOWN_WORDS[:24] + UNKNOWN_WORDS[56:104]

ENGLISH_LANGUAGE_SHARE = 0.7

FLITE_VOICES: dict[str, tuple[str, ...]] = {s: voices.names("flite", s) for s in SPLITS}
# Festival voices (Debian festvox packages; diphone and HTS voices built from recorded speakers, mostly of other
# languages, reading the English text with their own letter-to-sound rules): more recorded speakers than flite has,
# four of them women and one a child. Training only: validation and test keep their espeak-ng and flite voices, so
# a held-out voice is never of a speaker or a synthesiser family seen in training. (The catalogue's two British
# diphone voices, added with the speech recognizer's wider data, are left out: the shipped keyword model's set.)
FESTIVAL_VOICES: dict[str, tuple[str, ...]] = {
    s: tuple(v for v in voices.names("festival", s) if v not in ("rab_diphone", "don_diphone")) if s == "train"
    else () for s in SPLITS}


class KeywordError(ValueError):
    """Keyword phrases that the recipe cannot use."""


@dataclass(frozen=True)
class SynthConfig:
    """Keywords, sizes and augmentation ranges of a generated set."""

    keywords: tuple[str, ...] = KEYWORDS
    train_per_class: int = 1500
    eval_per_class: int = 150
    train_unknown_factor: float = 2.0  # single-word negatives in train, times train_per_class
    train_sentence_factor: float = 2.0  # sentence-crop negatives in train, times train_per_class
    seed: int = 0
    workers: int = 2
    shard_size: int = 2000
    flite_share: float = 0.4  # share of utterances spoken by flite (the rest by espeak-ng)
    festival_share: float = 0.0  # share of training utterances spoken by Festival voices (before the flite share)
    english_share: float = 0.7  # share of espeak-ng utterances in an English voice
    speed_wpm: tuple[int, int] = (110, 230)
    pitch: tuple[int, int] = (15, 85)
    flite_stretch: tuple[float, float] = (0.75, 1.35)
    flite_f0_scale: tuple[float, float] = (0.7, 1.4)
    sox_speed_probability: float = 0.5
    sox_speed: tuple[float, float] = (0.88, 1.12)
    sox_pitch_probability: float = 0.5
    sox_pitch_cents: tuple[float, float] = (-300.0, 300.0)
    room_reverb_probability: float = 0.5
    reverberance: tuple[float, float] = (10.0, 90.0)
    room_scale: tuple[float, float] = (10.0, 100.0)
    band_limit_probability: float = 0.6
    highpass_hz: tuple[float, float] = (60.0, 400.0)
    lowpass_hz: tuple[float, float] = (3000.0, 7600.0)
    peak_dbfs: tuple[float, float] = (-32.0, -1.0)
    noise_probability: float = 0.9
    snr_db: tuple[float, float] = (0.0, 30.0)
    babble_probability: float = 0.35
    stream_negative_minutes: float = 60.0  # running speech without keywords per held-out split
    stream_keywords_per_label: int = 40  # keyword occurrences per keyword in the held-out recall streams
    stream_snr_db: tuple[float, ...] = (5.0, 10.0, 20.0, 30.0)  # background noise level of each stream segment
    stream_segment_seconds: float = 60.0
    splits: tuple[str, ...] = field(default=SPLITS)

    def __post_init__(self) -> None:
        if not self.keywords or len(set(self.keywords)) != len(self.keywords):
            raise KeywordError(f"keywords: expected distinct non-empty phrases, got {self.keywords!r}")
        for keyword in self.keywords:
            if not re.fullmatch(r"[a-z']+( [a-z']+)*", keyword):
                raise KeywordError(f"keyword {keyword!r}: expected lowercase words separated by single spaces")


def labels_for(keywords: Sequence[str]) -> tuple[str, ...]:
    """The label list of a keyword set: ``_silence_``, ``_unknown_``, then the keywords in order."""
    return NON_KEYWORD_LABELS + tuple(keywords)


def excluded_words(keywords: Sequence[str]) -> set[str]:
    """Words that may not appear in a negative (sentence or word): the single-word keywords and their homophones."""
    words = set()
    for keyword in keywords:
        if " " not in keyword:
            words.add(keyword)
            words.update(HOMOPHONES.get(keyword, ()))
    return words


def negative_words(keywords: Sequence[str]) -> list[str]:
    """Single-word and short-phrase negatives of a keyword set: near misses plus generic words.

    The default set uses ``UNKNOWN_WORDS``. For other keywords, near misses are built from the phrase itself: each
    of its words alone, the phrase with one word replaced, the words reversed, and generic words sharing a
    keyword's first or last two letters."""
    if tuple(keywords) == KEYWORDS:
        return list(UNKNOWN_WORDS)
    banned = excluded_words(keywords) | set(keywords)
    near: list[str] = []
    for keyword in keywords:
        words = keyword.split()
        near.extend(words)
        if len(words) > 1:
            near.append(" ".join(reversed(words)))
            for position in range(len(words)):
                for substitute in ("the", "my", "off", "up", "pie", "guy", "lies", "nights", "hay", "play"):
                    candidate = words[:position] + [substitute] + words[position + 1:]
                    near.append(" ".join(candidate))
        else:
            near.extend(w for w in UNKNOWN_WORDS if w[:2] == keyword[:2] or w[-2:] == keyword[-2:])
    near.extend(GENERIC_WORDS)
    unique = list(dict.fromkeys(w for w in near if w not in banned))
    return unique


def sentences_by_split(keywords: Sequence[str], min_words: int = 4, max_words: int = 16) -> dict[str, list[str]]:
    """Running-speech sentences per split (``speech.sentences``); sentences with a keyword (or its homophone) are
    dropped."""
    return running_sentences(excluded_words(keywords), [k for k in keywords if " " in k], min_words, max_words)


@dataclass(frozen=True)
class Job:
    """One utterance: a synthesiser call and the sox effects applied to its output."""

    engine: str  # "espeak" or "flite"
    voice: str
    text: str
    rate: float  # espeak-ng words per minute, or flite duration stretch
    pitch: float  # espeak-ng pitch 0-99, or flite f0 scale
    effects: tuple[str, ...] = ()  # sox effect arguments

    @property
    def voice_name(self) -> str:
        return self.voice if self.engine == "espeak" else f"{self.engine}:{self.voice}"


def render(job: Job) -> np.ndarray:
    """Speak one job (espeak-ng or flite), apply its sox effects; float32 16 kHz, silence trimmed."""
    speech = synthesize_with_fallback(Request(job.engine, job.voice, job.text, job.rate, job.pitch))
    if job.effects and speech.size:
        speech = trim_silence(apply_sox(speech, job.effects))
    return speech


def sample_effects(config: SynthConfig, rng: np.random.Generator) -> tuple[str, ...]:
    """A random sox chain: speed, pitch, room reverb, band-limiting (each with its probability)."""
    effects: list[str] = []
    if rng.random() < config.sox_speed_probability:
        effects += ["speed", f"{rng.uniform(*config.sox_speed):.3f}"]
    if rng.random() < config.sox_pitch_probability:
        effects += ["pitch", f"{rng.uniform(*config.sox_pitch_cents):.0f}"]
    if effects:
        effects += ["rate", str(SAMPLE_RATE)]  # speed and pitch leave another internal rate behind them
    if rng.random() < config.room_reverb_probability:
        effects += ["reverb", f"{rng.uniform(*config.reverberance):.0f}", f"{rng.uniform(20, 80):.0f}",
                    f"{rng.uniform(*config.room_scale):.0f}"]
    if rng.random() < config.band_limit_probability:
        effects += ["highpass", f"{rng.uniform(*config.highpass_hz):.0f}",
                    "lowpass", f"{rng.uniform(*config.lowpass_hz):.0f}"]
    return tuple(effects)


def sample_job(text: str, split: str, config: SynthConfig, rng: np.random.Generator) -> Job:
    """A job speaking ``text`` in a random voice of ``split`` with random prosody and effects."""
    festival = FESTIVAL_VOICES[split]
    # (no draw for a split without Festival voices: validation and test stay the same with or without them)
    if festival and config.festival_share > 0 and rng.random() < config.festival_share:
        job = Job("festival", str(rng.choice(festival)), text, float(rng.uniform(*config.flite_stretch)), 1.0)
    elif rng.random() < config.flite_share:
        job = Job("flite", str(rng.choice(FLITE_VOICES[split])), text, float(rng.uniform(*config.flite_stretch)),
                  float(rng.uniform(*config.flite_f0_scale)))
    else:
        english, other, variants = voices_for_split(split)
        language = str(rng.choice(english if rng.random() < config.english_share else other))
        job = Job("espeak", f"{language}+{rng.choice(variants)}", text,
                  float(rng.integers(config.speed_wpm[0], config.speed_wpm[1] + 1)),
                  float(rng.integers(config.pitch[0], config.pitch[1] + 1)))
    return replace(job, effects=sample_effects(config, rng))


def voices_for_split(split: str) -> tuple[list[str], list[str], list[str]]:
    """(English languages, other languages, variants) of one split."""
    return list(ENGLISH_LANGUAGES[split]), list(OTHER_LANGUAGES[split]), split_variants()[split]


def compose_clip(
    speech: np.ndarray | None,
    babble_pool: Sequence[np.ndarray],
    config: SynthConfig,
    rng: np.random.Generator,
) -> tuple[np.ndarray, int, int]:
    """Place an utterance (or nothing) in a 1 s clip with gain, noise and babble; returns (int16 clip, speech_start,
    speech_end). An utterance longer than the clip (a sentence) is cropped at a random point."""
    clip = np.zeros(CLIP_SAMPLES, dtype=np.float32)
    speech_start, speech_end = -1, -1
    peak = 10.0 ** (rng.uniform(*config.peak_dbfs) / 20.0)
    if speech is not None and speech.size:
        if speech.size > CLIP_SAMPLES:
            crop = int(rng.integers(0, speech.size - CLIP_SAMPLES + 1))
            speech = speech[crop:crop + CLIP_SAMPLES]
        speech = speech * (peak / (np.max(np.abs(speech)) + 1e-9))
        speech_start = int(rng.integers(0, CLIP_SAMPLES - speech.size + 1))
        speech_end = speech_start + speech.size
        clip[speech_start:speech_end] = speech
    add_noise = speech is None or rng.random() < config.noise_probability
    if add_noise:
        if speech is None:
            noise_level = 10.0 ** (rng.uniform(-75.0, -20.0) / 20.0)
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


def clips_per_kind(split: str, config: SynthConfig) -> dict[str, int]:
    """Clips of each kind in a split: per keyword, silence, single-word and sentence negatives. Validation and test
    are balanced over labels (their ``_unknown_`` is half words, half sentence crops); train has more negatives."""
    if split == "train":
        per_class = config.train_per_class
        return {"keyword": per_class, "silence": per_class,
                "word": int(round(per_class * config.train_unknown_factor)),
                "sentence": int(round(per_class * config.train_sentence_factor))}
    per_class = config.eval_per_class
    return {"keyword": per_class, "silence": per_class, "word": per_class - per_class // 2,
            "sentence": per_class // 2}


def plan_split(split: str, config: SynthConfig, sentences: Sequence[str],
               rng: np.random.Generator) -> list[tuple[int, str, Job | None]]:
    """(label index, kind, job or None for silence) for every clip of a split, shuffled."""
    labels = labels_for(config.keywords)
    counts = clips_per_kind(split, config)
    words = negative_words(config.keywords)
    unknown = labels.index(UNKNOWN_LABEL)
    plan: list[tuple[int, str, Job | None]] = [(labels.index(SILENCE_LABEL), "silence", None)] * counts["silence"]
    for index, keyword in enumerate(config.keywords):
        plan += [(index + len(NON_KEYWORD_LABELS), "keyword", sample_job(keyword, split, config, rng))
                 for _ in range(counts["keyword"])]
    plan += [(unknown, "word", sample_job(str(rng.choice(words)), split, config, rng)) for _ in range(counts["word"])]
    plan += [(unknown, "sentence", sample_job(str(rng.choice(sentences)), split, config, rng))
             for _ in range(counts["sentence"])]
    order = rng.permutation(len(plan))
    return [plan[i] for i in order]


def _render_or_empty(job: Job | None) -> np.ndarray | None:
    return None if job is None else render(job)


def generate_split(split: str, config: SynthConfig, sentences: Sequence[str], pool: Any,
                   seed: int) -> dict[str, np.ndarray]:
    """All clips of one split as arrays (audio int16 [N, 16000], labels, speech bounds, voices, words, kinds)."""
    rng = np.random.default_rng(seed)
    plan = plan_split(split, config, sentences, rng)
    utterances = list(pool.imap(_render_or_empty, [job for _, _, job in plan], chunksize=16))
    babble_pool = [u for u in utterances if u is not None and u.size > 0]
    audio = np.zeros((len(plan), CLIP_SAMPLES), dtype=np.int16)
    speech_bounds = np.full((len(plan), 2), -1, dtype=np.int64)
    for i, speech in enumerate(utterances):
        audio[i], speech_bounds[i, 0], speech_bounds[i, 1] = compose_clip(speech, babble_pool, config, rng)
    return {
        "audio": audio,
        "labels": np.array([label for label, _, _ in plan], dtype=np.int64),
        "speech_start": speech_bounds[:, 0],
        "speech_end": speech_bounds[:, 1],
        "voices": np.array(["" if job is None else job.voice_name for _, _, job in plan]),
        "words": np.array(["" if job is None else job.text for _, _, job in plan]),
        "kinds": np.array([kind for _, kind, _ in plan]),
    }


def _place(stream: np.ndarray, speech: np.ndarray, at: int, peak: float) -> None:
    stream[at:at + speech.size] += speech * (peak / (np.max(np.abs(speech)) + 1e-9))


def generate_streams(split: str, config: SynthConfig, sentences: Sequence[str], pool: Any,
                     seed: int) -> dict[str, np.ndarray]:
    """Long held-out recordings of one split: ``negative`` running speech with no keyword (its duration is the
    false-alarm denominator) and ``positive`` keywords each between two sentences. Each ``stream_segment_seconds``
    segment has its own background-noise SNR; utterances get the clips' prosody and sox effects.

    Arrays: ``audio`` int16 (all streams concatenated), ``offsets`` [S+1], ``stream_kinds`` [S] ("negative" or
    "positive"), ``event_stream``/``event_label``/``event_start``/``event_end`` (samples within the stream) of every
    keyword, ``utterance_voices`` (every voice used)."""
    rng = np.random.default_rng(seed)
    labels = labels_for(config.keywords)
    gap = (int(0.15 * SAMPLE_RATE), int(0.8 * SAMPLE_RATE))
    negative_jobs: list[Job] = []
    seconds = 0.0
    while seconds < config.stream_negative_minutes * 60:
        text = str(rng.choice(sentences))
        negative_jobs.append(sample_job(text, split, config, rng))
        seconds += 0.33 * len(text.split()) + 0.5  # planning estimate only; the real length is measured below
    positive_plan = [(index, sample_job(keyword, split, config, rng), sample_job(str(rng.choice(sentences)), split,
                                                                                 config, rng))
                     for index, keyword in enumerate(config.keywords, start=len(NON_KEYWORD_LABELS))
                     for _ in range(config.stream_keywords_per_label)]
    positive_plan = [positive_plan[i] for i in rng.permutation(len(positive_plan))]
    jobs = negative_jobs + [job for _, keyword, sentence in positive_plan for job in (keyword, sentence)]
    rendered = list(pool.imap(render, jobs, chunksize=8))
    negative_speech, positive_speech = rendered[:len(negative_jobs)], rendered[len(negative_jobs):]

    streams: list[np.ndarray] = []
    kinds: list[str] = []
    events: list[tuple[int, int, int, int]] = []

    def close(pieces: list[tuple[np.ndarray, int | None]], kind: str) -> None:
        """Lay utterances out with pauses, add the segment's noise, append the stream (and its keyword events)."""
        pauses = rng.integers(gap[0], gap[1], len(pieces) + 1)
        length = int(pauses.sum()) + sum(speech.size for speech, _ in pieces)
        stream = np.zeros(length, dtype=np.float32)
        position = int(pauses[0])
        peak = 10.0 ** (rng.uniform(-20.0, -3.0) / 20.0)
        for number, (speech, label) in enumerate(pieces):
            _place(stream, speech, position, peak * 10.0 ** (rng.uniform(-3.0, 3.0) / 20.0))
            if label is not None:
                events.append((len(streams), label, position, position + speech.size))
            position += speech.size + int(pauses[number + 1])
        speech_rms = _rms(stream[stream != 0]) if np.any(stream) else 1e-3
        noise_level = speech_rms / 10.0 ** (float(rng.choice(config.stream_snr_db)) / 20.0)
        stream += coloured_noise(length, float(rng.choice([0.0, 1.0, 2.0])), rng) * noise_level
        streams.append(np.round(np.clip(stream, -1.0, 32767.0 / 32768.0) * 32768.0).astype(np.int16))
        kinds.append(kind)

    segment = int(config.stream_segment_seconds * SAMPLE_RATE)
    pieces: list[tuple[np.ndarray, int | None]] = []
    for speech in negative_speech:
        pieces.append((speech, None))
        if sum(p.size for p, _ in pieces) >= segment:
            close(pieces, "negative")
            pieces = []
    if pieces:
        close(pieces, "negative")
    pieces = []
    for k, (label, _, _) in enumerate(positive_plan):
        pieces += [(positive_speech[2 * k], label), (positive_speech[2 * k + 1], None)]
        if sum(p.size for p, _ in pieces) >= segment:
            close(pieces, "positive")
            pieces = []
    if pieces:
        close(pieces, "positive")
    offsets = np.concatenate([[0], np.cumsum([s.size for s in streams])]).astype(np.int64)
    event_array = np.array(events, dtype=np.int64).reshape(-1, 4)
    return {"audio": np.concatenate(streams), "offsets": offsets, "stream_kinds": np.array(kinds),
            "event_stream": event_array[:, 0], "event_label": event_array[:, 1],
            "event_start": event_array[:, 2], "event_end": event_array[:, 3],
            "labels": np.array(labels), "utterance_voices": np.array(sorted({j.voice_name for j in jobs}))}


def _write_shards(out_dir: Path, split: str, arrays: dict[str, np.ndarray], shard_size: int) -> list[str]:
    names = []
    for shard_index, start in enumerate(range(0, arrays["labels"].shape[0], shard_size)):
        name = f"{split}-{shard_index:03d}.npz"
        shard = {key: value[start : start + shard_size] for key, value in arrays.items()}
        np.savez_compressed(out_dir / name, allow_pickle=False, **shard)
        names.append(name)
    return names


def generate_dataset(out_dir: Path, config: SynthConfig, streams: bool = True) -> dict[str, Any]:
    """Generate the clip splits (and, with ``streams``, the held-out detection streams) into ``out_dir`` and write
    ``index.json``; returns the index."""
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    labels = labels_for(config.keywords)
    sentences = sentences_by_split(config.keywords)
    index: dict[str, Any] = {
        "labels": list(labels),
        "sample_rate": SAMPLE_RATE,
        "clip_samples": CLIP_SAMPLES,
        "config": asdict(config),
        "splits": {},
        "streams": {},
    }
    # spawn, not fork: the calling process may already run threads (a test process with JAX or torch loaded)
    with multiprocessing.get_context("spawn").Pool(config.workers) as pool:
        for split_number, split in enumerate(config.splits):
            arrays = generate_split(split, config, sentences[split], pool, seed=config.seed * 1000 + split_number)
            shards = _write_shards(out_dir, split, arrays, config.shard_size)
            english, other, variants = voices_for_split(split)
            index["splits"][split] = {
                "shards": shards,
                "n_clips": int(arrays["labels"].shape[0]),
                "per_label": {label: int(np.sum(arrays["labels"] == i)) for i, label in enumerate(labels)},
                "per_kind": {kind: int(np.sum(arrays["kinds"] == kind)) for kind in KINDS},
                "languages": english + other,
                "variants": variants,
                "flite_voices": list(FLITE_VOICES[split]),
                "festival_voices": list(FESTIVAL_VOICES[split]) if config.festival_share > 0 else [],
                "n_sentences_available": len(sentences[split]),
                "voices_used": sorted(set(str(v) for v in arrays["voices"] if v)),
            }
            (out_dir / "index.json").write_text(json.dumps(index, indent=1))  # rewritten as each part completes
            print(f"[synth] {split}: {arrays['labels'].shape[0]} clips, {time.time() - started:.0f}s", flush=True)
        for split_number, split in enumerate(s for s in config.splits if s != "train" and streams):
            arrays = generate_streams(split, config, sentences[split], pool,
                                      seed=config.seed * 1000 + 50 + split_number)
            name = f"streams-{split}.npz"
            np.savez_compressed(out_dir / name, allow_pickle=False, **arrays)
            kinds = arrays["stream_kinds"]
            durations = np.diff(arrays["offsets"]) / SAMPLE_RATE
            index["streams"][split] = {
                "file": name,
                "negative_hours": round(float(durations[kinds == "negative"].sum()) / 3600, 4),
                "positive_hours": round(float(durations[kinds == "positive"].sum()) / 3600, 4),
                "keyword_events": int(arrays["event_label"].size),
                "voices_used": [str(v) for v in arrays["utterance_voices"]],
            }
            (out_dir / "index.json").write_text(json.dumps(index, indent=1))
            print(f"[synth] {split} streams: {index['streams'][split]['negative_hours']:.2f} h negative, "
                  f"{arrays['event_label'].size} keywords, {time.time() - started:.0f}s", flush=True)
    index["wall_seconds"] = round(time.time() - started, 1)
    (out_dir / "index.json").write_text(json.dumps(index, indent=1))
    return index


def dataset_labels(data_dir: Path) -> tuple[str, ...]:
    """The label list recorded in a generated set's ``index.json``."""
    return tuple(json.loads((Path(data_dir) / "index.json").read_text())["labels"])


def load_split(data_dir: Path, split: str, labels: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Concatenate the shards of one split written by ``generate_dataset`` (``labels``, when given, must match the
    set's labels)."""
    index = json.loads((Path(data_dir) / "index.json").read_text())
    if labels is not None and list(index["labels"]) != list(labels):
        raise SynthError(f"{data_dir}/index.json labels: expected {list(labels)}, got {index['labels']}")
    parts: dict[str, list[np.ndarray]] = {}
    for shard in index["splits"][split]["shards"]:
        with np.load(Path(data_dir) / shard) as data:
            for key in data.files:
                parts.setdefault(key, []).append(data[key])
    return {key: np.concatenate(values) for key, values in parts.items()}


def load_streams(data_dir: Path, split: str) -> dict[str, np.ndarray]:
    """The detection streams of a held-out split (``streams-{split}.npz``)."""
    path = Path(data_dir) / f"streams-{split}.npz"
    if not path.exists():
        raise SynthError(f"{path}: expected the {split} detection streams written by the synth recipe")
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def iter_label_names(labels: np.ndarray, names: Sequence[str] = LABELS) -> Iterator[str]:
    """Label names of label indices."""
    for label in labels:
        yield names[int(label)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--keywords", nargs="+", default=list(KEYWORDS), help="keyword phrases (default: the ten)")
    parser.add_argument("--train-per-class", type=int, default=SynthConfig.train_per_class)
    parser.add_argument("--eval-per-class", type=int, default=SynthConfig.eval_per_class,
                        help="clips per class in validation and in test")
    parser.add_argument("--train-unknown-factor", type=float, default=SynthConfig.train_unknown_factor,
                        help="training single-word negatives per training clip of each keyword")
    parser.add_argument("--train-sentence-factor", type=float, default=SynthConfig.train_sentence_factor,
                        help="training sentence-crop negatives per training clip of each keyword")
    parser.add_argument("--stream-minutes", type=float, default=SynthConfig.stream_negative_minutes,
                        help="minutes of keyword-free running speech per held-out split")
    parser.add_argument("--stream-keywords", type=int, default=SynthConfig.stream_keywords_per_label,
                        help="occurrences of each keyword in the held-out recall streams")
    parser.add_argument("--festival-share", type=float, default=SynthConfig.festival_share,
                        help="share of training utterances spoken by Festival voices (needs the festvox packages)")
    parser.add_argument("--splits", nargs="+", choices=SPLITS, default=list(SPLITS), help="splits to generate")
    parser.add_argument("--seed", type=int, default=SynthConfig.seed)
    parser.add_argument("--workers", type=int, default=SynthConfig.workers)
    args = parser.parse_args(argv)
    config = SynthConfig(keywords=tuple(k.lower().strip() for k in args.keywords),
                         train_per_class=args.train_per_class, eval_per_class=args.eval_per_class,
                         train_unknown_factor=args.train_unknown_factor,
                         train_sentence_factor=args.train_sentence_factor,
                         stream_negative_minutes=args.stream_minutes, stream_keywords_per_label=args.stream_keywords,
                         festival_share=args.festival_share, splits=tuple(args.splits), seed=args.seed,
                         workers=args.workers)
    index = generate_dataset(args.out, config)
    splits: dict[str, Any] = index["splits"]
    print(json.dumps({split: info["n_clips"] for split, info in splits.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
