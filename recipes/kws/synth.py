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

from lstm_edge.recipes.kws.context import Phrase, render_phrase, sample_phrase
from lstm_edge.recipes.speech import voices
from lstm_edge.recipes.speech.augment import apply_sox, coloured_noise, synthetic_reverb
from lstm_edge.recipes.speech.augment import rms as _rms
from lstm_edge.recipes.speech.sentences import running_sentences
from lstm_edge.recipes.speech.synthesis import (
    SAMPLE_RATE,
    Request,
    SynthError,
    held_out_request,
    synthesize,
    synthesize_with_fallback,
    trim_silence,
)
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
KINDS: tuple[str, ...] = ("silence", "keyword", "context", "word", "sentence")
STREAM_KINDS: tuple[str, ...] = ("negative", "phrase", "apart")
# Training and validation voices of the engines added with the speech-data engine (train / validation only).
PARAMETRIC_VOICES: dict[str, tuple[str, ...]] = {
    "train": ("pico:en-US", "rhvoice:alan", "rhvoice:bdl", "rhvoice:clb"), "validation": ("pico:en-GB",), "test": ()}

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


MAX_KEYWORD_WORDS = 4
MAX_KEYWORD_CHARACTERS = 32


def normalize_keywords(phrases: Sequence[str]) -> tuple[str, ...]:
    """User phrases as the recipe's keywords: lowercased, whitespace collapsed; refused (``KeywordError``, one line
    naming the phrase) when empty, not plain Latin letters, longer than ``MAX_KEYWORD_WORDS`` words or
    ``MAX_KEYWORD_CHARACTERS`` characters, or a duplicate of another."""
    if not phrases:
        raise KeywordError("keywords: expected at least one phrase, got none")
    keywords: list[str] = []
    for number, phrase in enumerate(phrases, start=1):
        keyword = " ".join(str(phrase).lower().split())
        if not keyword:
            raise KeywordError(f"keyword {number} ({phrase!r}): expected a phrase of 1-{MAX_KEYWORD_WORDS} words, "
                               f"got an empty one")
        if not re.fullmatch(r"[a-z']+( [a-z']+)*", keyword) or keyword.strip("' ") != keyword:
            raise KeywordError(f"keyword {number} ({phrase!r}): expected words of the letters a-z (an apostrophe "
                               f"inside a word is fine), got other characters")
        if len(keyword.split()) > MAX_KEYWORD_WORDS or len(keyword) > MAX_KEYWORD_CHARACTERS:
            raise KeywordError(f"keyword {number} ({phrase!r}): expected at most {MAX_KEYWORD_WORDS} words and "
                               f"{MAX_KEYWORD_CHARACTERS} characters, got {len(keyword.split())} words and "
                               f"{len(keyword)} characters")
        if keyword in keywords:
            raise KeywordError(f"keyword {number} ({phrase!r}): expected distinct phrases, got a duplicate of "
                               f"keyword {keywords.index(keyword) + 1}")
        keywords.append(keyword)
    return tuple(keywords)


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
    kokoro_share: float = 0.0  # share of training and validation utterances spoken by Kokoro blends
    kokoro_speakers: int = 200  # training blends (validation: a tenth, at least 8)
    piper_share: float = 0.0  # share of training utterances spoken by Piper
    parametric_share: float = 0.0  # share of training and validation utterances from PARAMETRIC_VOICES
    context_share: float = 0.0  # share of each keyword's clips spoken inside a phrase (``context.py``)
    held_out_streams: bool = False  # test streams spoken by the held-out voices (MBROLA, SLT) instead of test voices
    held_out_voices: tuple[str, ...] = voices.HELD_OUT_TEST_VOICES  # "engine:name", all held out
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
    stream_keywords_per_label: int = 40  # occurrences per keyword in the recall streams, in phrases and apart each
    apart_pause_s: float = 0.4  # pause between the words of an "apart" stream item ("house - yes - window")
    stream_snr_db: tuple[float, ...] = (5.0, 10.0, 20.0, 30.0)  # background noise level of each stream segment
    stream_segment_seconds: float = 60.0
    splits: tuple[str, ...] = field(default=SPLITS)

    def __post_init__(self) -> None:
        if normalize_keywords(self.keywords) != tuple(self.keywords):
            raise KeywordError(f"keywords {self.keywords!r}: expected lowercase words separated by single spaces")


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

    engine: str  # a ``speech.synthesis`` engine
    voice: str
    text: str
    rate: float  # espeak-ng words per minute, or a duration stretch
    pitch: float  # espeak-ng pitch 0-99, or an f0 scale
    effects: tuple[str, ...] = ()  # sox effect arguments
    phrase: Phrase | None = None  # a keyword in a phrase: ``text`` is the phrase, and the keyword is located

    @property
    def voice_name(self) -> str:
        return self.voice if self.engine == "espeak" else f"{self.engine}:{self.voice}"

    @property
    def request(self) -> Request:
        return Request(self.engine, self.voice, self.text, self.rate, self.pitch)


def render(job: Job) -> np.ndarray:
    """Speak one job, apply its sox effects; float32 16 kHz, silence trimmed."""
    return render_located(job)[0]


def render_located(job: Job) -> tuple[np.ndarray, int, int]:
    """(speech, keyword start, keyword end) of a job; the bounds are -1 unless the job speaks a phrase. A phrase's
    effects never change its speed (the located bounds would move), and silence is not trimmed after them."""
    if job.phrase is not None:
        try:
            speech, start, end = render_phrase(job.request, job.phrase)
        except SynthError:  # the prefixes did not align: the keyword alone, in the same voice, stands in
            speech = synthesize_with_fallback(replace(job.request, text=job.phrase.keyword))
            start, end = 0, speech.size
        effects = _without_speed(job.effects)
        if effects and speech.size:
            speech = apply_sox(speech, effects)[:speech.size + SAMPLE_RATE // 2]
        return speech, start, end
    speech = synthesize_with_fallback(job.request)
    if job.effects and speech.size:
        speech = trim_silence(apply_sox(speech, job.effects))
    return speech, -1, -1


def _without_speed(effects: tuple[str, ...]) -> tuple[str, ...]:
    kept: list[str] = []
    i = 0
    while i < len(effects):
        if effects[i] == "speed":
            i += 2
            continue
        kept.append(effects[i])
        i += 1
    return tuple(kept)


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


def _new_engine_job(text: str, split: str, config: SynthConfig, rng: np.random.Generator) -> Job | None:
    """A Kokoro, Piper or parametric-voice job by the shares (a draw only when a share is on), or None."""
    stretch = float(rng.uniform(*config.flite_stretch)) if config.kokoro_share + config.piper_share > 0 else 1.0
    if config.kokoro_share > 0 and split != "test" and rng.random() < config.kokoro_share:
        speakers = voices.kokoro_speakers(split, config.kokoro_speakers, config.seed)
        return Job("kokoro", str(rng.choice(speakers)), text, stretch, 1.0)
    piper = voices.names("piper", split)
    if piper and config.piper_share > 0 and rng.random() < config.piper_share:
        return Job("piper", str(rng.choice(piper)), text, stretch, 1.0)
    parametric = PARAMETRIC_VOICES[split]
    if parametric and config.parametric_share > 0 and rng.random() < config.parametric_share:
        engine, voice = str(rng.choice(parametric)).split(":")
        return Job(engine, voice, text, float(rng.uniform(0.8, 1.25)), float(rng.uniform(0.85, 1.2)))
    return None


def held_out_job(text: str, config: SynthConfig, rng: np.random.Generator) -> Job:
    """A job in a held-out voice (``held_out_voices``, equally often): test streams only."""
    request = held_out_request(text, config.held_out_voices, rng, (130, 201), (25, 76), (0.85, 1.2), (0.85, 1.2))
    job = Job(request.engine, request.voice, text, request.rate, request.pitch)
    return replace(job, effects=sample_effects(config, rng))


def sample_job(text: str, split: str, config: SynthConfig, rng: np.random.Generator) -> Job:
    """A job speaking ``text`` in a random voice of ``split`` with random prosody and effects."""
    festival = FESTIVAL_VOICES[split]
    new_engine = _new_engine_job(text, split, config, rng)
    if new_engine is not None:
        return replace(new_engine, effects=sample_effects(config, rng))
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


def context_window(keyword: tuple[int, int], rng: np.random.Generator) -> int:
    """Where a 1 s window starts in an utterance (negative: the utterance starts inside the window, by at most
    0.3 s) so that it holds the keyword ``(start, end)`` and 0.1-0.4 s after its end; a keyword too long for that
    keeps its end and 0.1 s after it."""
    start, end = keyword
    earliest = end + int(rng.uniform(0.1, 0.4) * SAMPLE_RATE) - CLIP_SAMPLES
    if earliest > start:
        return end + SAMPLE_RATE // 10 - CLIP_SAMPLES
    low = max(earliest, -int(0.3 * SAMPLE_RATE))
    return int(rng.integers(low, max(low, start) + 1))


def compose_clip(
    speech: np.ndarray | None,
    babble_pool: Sequence[np.ndarray],
    config: SynthConfig,
    rng: np.random.Generator,
    keyword: tuple[int, int] | None = None,
) -> tuple[np.ndarray, int, int, int, int]:
    """Place an utterance (or nothing) in a 1 s clip with gain, noise and babble; returns (int16 clip, speech_start,
    speech_end, context_start, context_end). An utterance longer than the clip (a sentence) is cropped at a random
    point. With ``keyword`` (its bounds in a phrase), the window holds the keyword and some speech around it:
    speech_start/end are then the keyword's bounds in the clip, context_start/end those of all the phrase's speech
    in it (-1 otherwise)."""
    clip = np.zeros(CLIP_SAMPLES, dtype=np.float32)
    speech_start, speech_end, context_start, context_end = -1, -1, -1, -1
    peak = 10.0 ** (rng.uniform(*config.peak_dbfs) / 20.0)
    if speech is not None and speech.size and keyword is not None:
        offset = context_window(keyword, rng)  # utterance sample at the clip's first sample
        lo, hi = max(0, offset), min(speech.size, offset + CLIP_SAMPLES)
        scaled = speech * (peak / (np.max(np.abs(speech[lo:hi])) + 1e-9))
        clip[lo - offset:hi - offset] = scaled[lo:hi]
        context_start, context_end = lo - offset, hi - offset
        speech_start = max(0, keyword[0] - offset)
        speech_end = min(CLIP_SAMPLES, keyword[1] - offset)
    elif speech is not None and speech.size:
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
            level = _rms(clip[speech_start:speech_end]) if speech_end > speech_start else _rms(clip)
            noise_level = level / 10.0 ** (rng.uniform(*config.snr_db) / 20.0)
        clip += coloured_noise(CLIP_SAMPLES, float(rng.choice([0.0, 1.0, 1.0, 2.0])), rng) * noise_level
    if babble_pool and rng.random() < config.babble_probability:
        babble_peak = peak * 10.0 ** (rng.uniform(-30.0, -14.0) / 20.0)
        for _ in range(int(rng.integers(1, 4))):
            other = babble_pool[int(rng.integers(len(babble_pool)))][:CLIP_SAMPLES]
            offset = int(rng.integers(-other.size // 2, CLIP_SAMPLES - other.size // 2))
            lo, hi = max(0, offset), min(CLIP_SAMPLES, offset + other.size)
            clip[lo:hi] += other[lo - offset : hi - offset] * (babble_peak / (np.max(np.abs(other)) + 1e-9))
    clip = np.clip(clip, -1.0, 32767.0 / 32768.0)
    return np.round(clip * 32768.0).astype(np.int16), speech_start, speech_end, context_start, context_end


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
    excluded = excluded_words(config.keywords)
    n_context = int(round(counts["keyword"] * config.context_share))
    for index, keyword in enumerate(config.keywords):
        plan += [(index + len(NON_KEYWORD_LABELS), "keyword", sample_job(keyword, split, config, rng))
                 for _ in range(counts["keyword"] - n_context)]
        plan += [(index + len(NON_KEYWORD_LABELS), "context", phrase_job(keyword, split, config, sentences, rng,
                                                                            excluded))
                 for _ in range(n_context)]
    plan += [(unknown, "word", sample_job(str(rng.choice(words)), split, config, rng)) for _ in range(counts["word"])]
    plan += [(unknown, "sentence", sample_job(str(rng.choice(sentences)), split, config, rng))
             for _ in range(counts["sentence"])]
    order = rng.permutation(len(plan))
    return [plan[i] for i in order]


def phrase_job(keyword: str, split: str, config: SynthConfig, sentences: Sequence[str], rng: np.random.Generator,
               excluded: set[str], held_out: bool = False) -> Job:
    """A job speaking ``keyword`` inside a random phrase of the split (``context.sample_phrase``)."""
    phrase = sample_phrase(keyword, split, sentences, rng, excluded)
    job = held_out_job(phrase.text, config, rng) if held_out else sample_job(phrase.text, split, config, rng)
    return replace(job, phrase=phrase)


def _render_or_empty(job: Job | None) -> tuple[np.ndarray, int, int] | None:
    return None if job is None else render_located(job)


def generate_split(split: str, config: SynthConfig, sentences: Sequence[str], pool: Any,
                   seed: int) -> dict[str, np.ndarray]:
    """All clips of one split as arrays (audio int16 [N, 16000], labels, speech bounds, voices, words, kinds)."""
    rng = np.random.default_rng(seed)
    plan = plan_split(split, config, sentences, rng)
    rendered = _render_jobs(pool, [job for _, _, job in plan], f"kws {split}")
    babble_pool = [u[0] for u in rendered if u is not None and u[0].size > 0]
    audio = np.zeros((len(plan), CLIP_SAMPLES), dtype=np.int16)
    bounds = np.full((len(plan), 4), -1, dtype=np.int64)
    for i, item in enumerate(rendered):
        speech, keyword = (None, None) if item is None else (item[0], item[1:] if item[1] >= 0 else None)
        audio[i], *bounds_i = compose_clip(speech, babble_pool, config, rng, keyword)
        bounds[i] = bounds_i
    return {
        "audio": audio,
        "labels": np.array([label for label, _, _ in plan], dtype=np.int64),
        "speech_start": bounds[:, 0],
        "speech_end": bounds[:, 1],
        "context_start": bounds[:, 2],
        "context_end": bounds[:, 3],
        "voices": np.array(["" if job is None else job.voice_name for _, _, job in plan]),
        "words": np.array(["" if job is None else job.text for _, _, job in plan]),
        "kinds": np.array([kind for _, kind, _ in plan]),
    }


def _render_jobs(pool: Any, jobs: Sequence[Job | None], label: str) -> list[tuple[np.ndarray, int, int] | None]:
    """``render_located`` of every job in ``pool``, in order, with a progress bar."""
    from tqdm import tqdm

    return list(tqdm(pool.imap(_render_or_empty, jobs, chunksize=8), total=len(jobs), desc=label, unit="utt",
                     mininterval=30.0))


def _place(stream: np.ndarray, speech: np.ndarray, at: int, peak: float) -> None:
    stream[at:at + speech.size] += speech * (peak / (np.max(np.abs(speech)) + 1e-9))


def generate_streams(split: str, config: SynthConfig, sentences: Sequence[str], pool: Any,
                     seed: int) -> dict[str, np.ndarray]:
    """Long recordings of a held-out split, of three kinds (``STREAM_KINDS``), each cut into
    ``stream_segment_seconds`` segments with their own background-noise SNR:

    * ``negative``: running speech without any keyword; its duration is the false-alarm denominator;
    * ``phrase``: keywords spoken inside phrases (``context.py``), one phrase per utterance, pauses between them;
    * ``apart``: each keyword between two other words, the three said apart (``apart_pause_s`` pauses), in one voice.

    The test split speaks with the held-out voices when ``held_out_streams`` is set. Arrays: ``audio`` int16 (all
    streams concatenated), ``offsets`` [S+1], ``stream_kinds`` [S], ``event_stream``/``event_label``/
    ``event_start``/``event_end`` (samples within the stream) of every keyword, ``utterance_voices``."""
    rng = np.random.default_rng(seed)
    labels = labels_for(config.keywords)
    held_out = split == "test" and config.held_out_streams
    excluded = excluded_words(config.keywords)
    words = negative_words(config.keywords)

    def job_for(text: str) -> Job:
        return held_out_job(text, config, rng) if held_out else sample_job(text, split, config, rng)

    negative_jobs: list[Job] = []
    seconds = 0.0
    while seconds < config.stream_negative_minutes * 60:
        text = str(rng.choice(sentences))
        negative_jobs.append(job_for(text))
        seconds += 0.33 * len(text.split()) + 0.5  # planning estimate only; the real length is measured below
    keyword_labels = [index for index in range(len(NON_KEYWORD_LABELS), len(labels))
                      for _ in range(config.stream_keywords_per_label)]
    phrase_jobs = [(label, phrase_job(labels[label], split, config, sentences, rng, excluded, held_out))
                   for label in keyword_labels]
    apart_jobs = []
    for label in keyword_labels:
        keyword_job = job_for(labels[label])
        apart_jobs.append((label, [replace(keyword_job, text=str(rng.choice(words))), keyword_job,
                                   replace(keyword_job, text=str(rng.choice(words)))]))
    phrase_jobs = [phrase_jobs[i] for i in rng.permutation(len(phrase_jobs))]
    apart_jobs = [apart_jobs[i] for i in rng.permutation(len(apart_jobs))]
    jobs = negative_jobs + [job for _, job in phrase_jobs] + [job for _, three in apart_jobs for job in three]
    rendered = [item for item in _render_jobs(pool, jobs, f"kws {split} streams") if item is not None]
    if len(rendered) != len(jobs):
        raise SynthError(f"{split} streams: expected {len(jobs)} utterances, got {len(rendered)}")
    negative_speech = [speech for speech, _, _ in rendered[:len(negative_jobs)]]
    phrase_speech = rendered[len(negative_jobs):len(negative_jobs) + len(phrase_jobs)]
    apart_speech = rendered[len(negative_jobs) + len(phrase_jobs):]

    # a piece: (speech, [(label, start, end) of its keywords])
    Piece = tuple[np.ndarray, list[tuple[int, int, int]]]
    streams: list[np.ndarray] = []
    kinds: list[str] = []
    events: list[tuple[int, int, int, int]] = []
    gap = (int(0.15 * SAMPLE_RATE), int(0.8 * SAMPLE_RATE))

    def close(pieces: list[Piece], kind: str) -> None:
        """Lay pieces out with pauses, add the segment's noise, append the stream (and its keyword events)."""
        pauses = rng.integers(gap[0], gap[1], len(pieces) + 1)
        length = int(pauses.sum()) + sum(speech.size for speech, _ in pieces)
        stream = np.zeros(length, dtype=np.float32)
        position = int(pauses[0])
        peak = 10.0 ** (rng.uniform(-20.0, -3.0) / 20.0)
        for number, (speech, piece_events) in enumerate(pieces):
            _place(stream, speech, position, peak * 10.0 ** (rng.uniform(-3.0, 3.0) / 20.0))
            events.extend((len(streams), label, position + start, position + end)
                          for label, start, end in piece_events)
            position += speech.size + int(pauses[number + 1])
        speech_rms = _rms(stream[stream != 0]) if np.any(stream) else 1e-3
        noise_level = speech_rms / 10.0 ** (float(rng.choice(config.stream_snr_db)) / 20.0)
        stream += coloured_noise(length, float(rng.choice([0.0, 1.0, 2.0])), rng) * noise_level
        streams.append(np.round(np.clip(stream, -1.0, 32767.0 / 32768.0) * 32768.0).astype(np.int16))
        kinds.append(kind)

    def lay_out(pieces: Sequence[Piece], kind: str) -> None:
        segment = int(config.stream_segment_seconds * SAMPLE_RATE)
        current: list[Piece] = []
        for piece in pieces:
            current.append(piece)
            if sum(p.size for p, _ in current) >= segment:
                close(current, kind)
                current = []
        if current:
            close(current, kind)

    pause = np.zeros(int(config.apart_pause_s * SAMPLE_RATE), dtype=np.float32)
    apart_pieces: list[Piece] = []
    for (label, _), k in zip(apart_jobs, range(0, len(apart_speech), 3)):
        first, keyword, last = (speech for speech, _, _ in apart_speech[k:k + 3])
        levels = [x / (np.max(np.abs(x)) + 1e-9) for x in (first, keyword, last)]
        start = first.size + pause.size
        apart_pieces.append((np.concatenate([levels[0], pause, levels[1], pause, levels[2]]),
                             [(label, start, start + keyword.size)]))
    lay_out([(speech, []) for speech in negative_speech], "negative")
    lay_out([(speech, [(label, start, end)]) for (label, _), (speech, start, end) in zip(phrase_jobs, phrase_speech)],
            "phrase")
    lay_out(apart_pieces, "apart")
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


def installed_held_out_voices() -> tuple[str, ...]:
    """The held-out voices whose engine speaks on this machine (each tried on one word)."""
    working = []
    for voice_id in voices.HELD_OUT_TEST_VOICES:
        engine, name = voice_id.split(":")
        rate = 160.0 if engine == "mbrola" else 1.0
        try:
            if synthesize(Request(engine, name, "yes", rate, 50.0 if engine == "mbrola" else 1.0)).size:
                working.append(voice_id)
        except (SynthError, OSError):
            continue
    return tuple(working)


def generate_dataset(out_dir: Path, config: SynthConfig, streams: bool = True) -> dict[str, Any]:
    """Generate the clip splits (and, with ``streams``, the held-out detection streams) into ``out_dir`` and write
    ``index.json``; returns the index. Splits can be generated by separate runs into one directory (each split's
    seed depends on its name only); an existing ``index.json`` of the same labels keeps the splits not regenerated,
    and its ``config`` is the last run's (earlier runs' configs stay under ``configs``)."""
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
    previous_path = out_dir / "index.json"
    if previous_path.exists():
        previous = json.loads(previous_path.read_text())
        if previous.get("labels") == list(labels):
            index["splits"] = {k: v for k, v in previous["splits"].items() if k not in config.splits}
            index["streams"] = {k: v for k, v in previous["streams"].items() if k not in config.splits or not streams}
            index["configs"] = previous.get("configs", []) + [previous["config"]]
    # spawn, not fork: the calling process may already run threads (a test process with JAX or torch loaded)
    with multiprocessing.get_context("spawn").Pool(config.workers) as pool:
        for split in config.splits:
            split_number = SPLITS.index(split)
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
        for split in (s for s in config.splits if s != "train" and streams):
            split_number = SPLITS.index(split) - 1
            arrays = generate_streams(split, config, sentences[split], pool,
                                      seed=config.seed * 1000 + 50 + split_number)
            name = f"streams-{split}.npz"
            np.savez_compressed(out_dir / name, allow_pickle=False, **arrays)
            kinds = arrays["stream_kinds"]
            durations = np.diff(arrays["offsets"]) / SAMPLE_RATE
            index["streams"][split] = {
                "file": name,
                "negative_hours": round(float(durations[kinds == "negative"].sum()) / 3600, 4),
                "hours_by_kind": {kind: round(float(durations[kinds == kind].sum()) / 3600, 4)
                                  for kind in STREAM_KINDS},
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
    parser.add_argument("--context-share", type=float, default=SynthConfig.context_share,
                        help="share of each keyword's clips spoken inside a phrase")
    parser.add_argument("--kokoro-share", type=float, default=SynthConfig.kokoro_share,
                        help="share of training and validation utterances spoken by Kokoro blends")
    parser.add_argument("--piper-share", type=float, default=SynthConfig.piper_share,
                        help="share of training utterances spoken by Piper")
    parser.add_argument("--parametric-share", type=float, default=SynthConfig.parametric_share,
                        help="share of training and validation utterances spoken by Pico and RHVoice voices")
    parser.add_argument("--held-out-streams", action="store_true",
                        help="test streams spoken by the held-out voices (MBROLA, CMU SLT)")
    parser.add_argument("--no-streams", action="store_true", help="clips only, no detection streams")
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
                         workers=args.workers, context_share=args.context_share, kokoro_share=args.kokoro_share,
                         piper_share=args.piper_share, parametric_share=args.parametric_share,
                         held_out_streams=args.held_out_streams)
    index = generate_dataset(args.out, config, streams=not args.no_streams)
    splits: dict[str, Any] = index["splits"]
    print(json.dumps({split: info["n_clips"] for split, info in splits.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
