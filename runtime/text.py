"""Text on top of a stream: a character language model (``TextModel``) and an as-you-type classifier.

    model = StreamingModel.load("models/text/export", backend="onnx")   # shared by every text box
    text = TextModel(model)          # one per text box: owns the carried state
    text.feed("the quick bro")       # keystrokes as they arrive; state carried across calls
    text.suggest(3)                  # [Suggestion("brown", 0.41), ...]: completions of the current word
    text.generate(50)                # greedy continuation (the stream moves on with it)
    text.score("some text")          # bits per character, from the start state, chunked (flat memory)

The tokenizer comes from the manifest (``tokenizer``); characters outside its vocabulary map to its unknown id.
Text settings live in the manifest's ``extra.text``: ``start_text`` (fed at reset, e.g. the document separator the
model was trained with) and ``task`` ("language_model" or "classifier"). Everything here is numpy only.
"""

from __future__ import annotations

import codecs
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from lstm_edge.runtime.adaptive import AdaptiveMixer, AdaptiveSettings
from lstm_edge.runtime.errors import InputError, ManifestError, expected_got
from lstm_edge.runtime.model import StreamingModel
from lstm_edge.runtime.state import State
from lstm_edge.runtime.tokenizer import Tokenizer

SCORE_CHUNK = 2048  # token ids per model call when scoring
READ_BYTES = 1 << 16


def is_word_char(char: str) -> bool:
    """Letters, digits and the apostrophe make words; anything else ends one."""
    return char.isalnum() or char == "'"


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def text_settings(model: StreamingModel) -> dict[str, Any]:
    return dict(model.manifest.extra.get("text") or {})


def model_tokenizer(model: StreamingModel) -> Tokenizer:
    """The tokenizer stated in the model's manifest (a token model without one is refused)."""
    if model.manifest.input.dtype != "int64":
        raise ManifestError(expected_got("text model input", "int64 token ids", model.manifest.input.dtype))
    if model.manifest.tokenizer is None:
        raise ManifestError("this model directory has no tokenizer in its manifest; export it with "
                            "export(..., tokenizer={'type': 'bytes'} or a character vocabulary)")
    return Tokenizer.from_dict(model.manifest.tokenizer)


@dataclass(frozen=True)
class Suggestion:
    """A completion of the current word: the whole word and its probability given the text so far."""

    word: str
    probability: float


@dataclass
class _Beam:
    chars: str
    logprob: float
    state: Any
    logits: np.ndarray
    ids: tuple[int, ...]


class TextModel:
    """One text stream over a shared ``StreamingModel`` of next-character logits."""

    def __init__(self, model: StreamingModel, adaptive: bool | None = None) -> None:
        """``adaptive``: mix in a context model learned from the text read so far (``lstm_edge.runtime.adaptive``);
        None: as the manifest says (``extra.text.adaptive``), False: off, True: on (the manifest's settings, else
        the defaults)."""
        self.model = model
        self.tokenizer = model_tokenizer(model)
        settings = text_settings(model)
        self.start_text: str = str(settings.get("start_text", ""))
        described = settings.get("adaptive")
        use = described is not None if adaptive is None else bool(adaptive)
        self.adaptive: AdaptiveSettings | None = None
        if use:
            self.adaptive = AdaptiveSettings.from_manifest(described) if described is not None else AdaptiveSettings()
        vocab_size = self.tokenizer.vocab_size
        if model.manifest.output.shape[-1] != vocab_size:
            raise ManifestError(expected_got("language model output size", f"{vocab_size} (the vocabulary)",
                                             model.manifest.output.shape[-1]))
        token_texts = [self.tokenizer.token_text(i) for i in range(vocab_size)]
        self._word_ids = np.array([i for i, t in enumerate(token_texts) if is_word_char(t)
                                   and i != self.tokenizer.unknown_id], dtype=np.int64)
        self._boundary_ids = np.array([i for i, t in enumerate(token_texts) if not is_word_char(t)
                                       and i != self.tokenizer.unknown_id], dtype=np.int64)
        self._start = self._primed_start()
        self._mixer = AdaptiveMixer(self.tokenizer.vocab_size, self.adaptive) if self.adaptive else None
        self.reset()

    @classmethod
    def load(cls, model_dir: str | Path, backend: str | None = None, precision: str = "float") -> TextModel:
        return cls(StreamingModel.load(model_dir, backend=backend, precision=precision))

    # ------------------------------------------------------------ state
    def _primed_start(self) -> tuple[Any, np.ndarray]:
        """State and next-character logits after ``start_text`` (uniform logits when there is none)."""
        state = self.model.initial_state()
        if not self.start_text:
            return state, np.zeros(self.tokenizer.vocab_size, dtype=np.float32)
        y, state = self.model.step(self.tokenizer.encode(self.start_text), state)
        return state, y[-1]

    def reset(self) -> None:
        """Forget everything fed: back to the start state (after ``start_text``)."""
        self._state, self._logits = self._start
        self._word = ""  # characters of the current (unfinished) word
        if self._mixer is not None:
            self._mixer.reset()

    @property
    def current_word(self) -> str:
        return self._word

    def snapshot(self) -> dict[str, Any]:
        """Everything this text stream carries (model state, next-token logits, current word, the adaptive part's
        counts and weights), as copies: ``restore`` it later, here or in another ``TextModel`` of the same model."""
        return {"state": self._state.copy(), "logits": self._logits.copy(), "word": self._word,
                "adaptive": self._mixer.get_state() if self._mixer is not None else None}

    def restore(self, snapshot: Mapping[str, Any]) -> None:
        """Carry on from a ``snapshot`` (checked: state names, shapes and values; the adaptive part's arrays)."""
        state = self.model.check_state(snapshot["state"])
        logits = np.asarray(snapshot["logits"], np.float32)
        if logits.shape != (self.tokenizer.vocab_size,) or not np.isfinite(logits).all():
            raise InputError(expected_got("snapshot logits", f"{self.tokenizer.vocab_size} finite values",
                                          f"shape {logits.shape}"))
        if (snapshot.get("adaptive") is None) != (self._mixer is None):
            raise InputError(expected_got("snapshot", "one taken with the adaptive part "
                                          + ("on" if self._mixer is not None else "off"), "the other kind"))
        if self._mixer is not None:
            self._mixer.set_state(snapshot["adaptive"])
        self._state = State(self.model.state_names, state, self.model)
        self._logits, self._word = logits.copy(), str(snapshot["word"])

    def feed(self, text: str) -> None:
        """Advance the stream over ``text`` (any length; '' does nothing). The state is carried to the next call."""
        if not isinstance(text, str):
            raise InputError(expected_got("text", "a str", type(text).__name__))
        if not text:
            return
        ids = self.tokenizer.encode(text)
        for start in range(0, len(ids), SCORE_CHUNK):
            chunk = ids[start:start + SCORE_CHUNK]
            y, self._state = self.model.step(chunk, self._state)
            if self._mixer is not None:  # the adaptive part learns each token from the model's prediction of it
                rows = log_softmax(np.concatenate([self._logits[None], y[:-1]]))
                for row, token in zip(rows, chunk):
                    self._mixer.read(row, int(token))
            self._logits = y[-1]
        tail = len(text)
        while tail > 0 and is_word_char(text[tail - 1]):
            tail -= 1
        self._word = (self._word + text) if tail == 0 else text[tail:]

    def next_distribution(self) -> np.ndarray:
        """Probabilities of the next token ``[vocab]`` (float64, sums to 1) given everything fed."""
        return np.exp(self._next_log_probs(self._logits))

    def _next_log_probs(self, logits: np.ndarray, ahead: Sequence[int] = ()) -> np.ndarray:
        """Log-probabilities of the next token from the model's ``logits``, mixed with the adaptive model's
        prediction after the tokens read and then ``ahead`` (hypothesised tokens, not learned from)."""
        log_probs = log_softmax(logits)
        if self._mixer is None:
            return log_probs
        history = self._mixer.history + list(ahead) if ahead else None
        return self._mixer.mix(log_probs, history)

    # ------------------------------------------------------------ generation
    def generate(self, n: int, temperature: float = 0.0, seed: int | None = None) -> str:
        """Continue the text by ``n`` characters and feed them (the stream moves on).

        ``temperature`` 0 is greedy (argmax); > 0 samples from softmax(logits / temperature) with ``seed``.
        ``n`` = 0 returns ''. Negative ``n`` or ``temperature`` is an error.
        """
        return "".join(self.generate_iter(n, temperature, seed))

    def generate_iter(self, n: int, temperature: float = 0.0, seed: int | None = None) -> Iterator[str]:
        """``generate``, one character at a time as each is chosen (the arguments are checked at the call)."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise InputError(expected_got("n (characters to generate)", "an integer >= 0", repr(n)))
        if not isinstance(temperature, (int, float)) or not math.isfinite(temperature) or temperature < 0:
            raise InputError(expected_got("temperature", "a finite number >= 0 (0 = greedy)", repr(temperature)))
        return self._generated(int(n), float(temperature), np.random.default_rng(seed))

    def _generated(self, n: int, temperature: float, rng: np.random.Generator) -> Iterator[str]:
        for _ in range(n):
            log_probs = self._next_log_probs(self._logits)
            if temperature == 0:
                token = int(np.argmax(log_probs))
            else:
                probs = np.exp(log_softmax(log_probs / temperature))
                token = int(rng.choice(len(probs), p=probs))
            text = self.tokenizer.token_text(token)
            if self._mixer is not None:
                self._mixer.read(log_softmax(self._logits), token)
            y, self._state = self.model.step(np.array([token], dtype=np.int64), self._state)
            self._logits = y[-1]
            self._word = self._word + text if is_word_char(text) else ""
            yield text

    # ------------------------------------------------------------ suggestions
    def suggest(self, k: int = 3, beam_width: int | None = None, max_chars: int = 24) -> list[Suggestion]:
        """The ``k`` most probable completions of the current word, most probable first.

        Beam search over characters from the carried state (the text is not re-read; each beam steps its own copy
        of the state through the model's pure ``step``). A hypothesis ends when the next character is a word
        boundary; its probability is P(its characters) x P(some boundary next), so distinct words are disjoint
        events and the probabilities sum to at most 1. Completions equal to the current word (nothing added) count
        too (the word may already be complete). Stops when no live beam can beat the k-th completion.
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise InputError(expected_got("k (suggestions)", "an integer >= 1", repr(k)))
        width = int(beam_width or max(k, 3))
        done: dict[str, float] = {}
        beams = [_Beam("", 0.0, self._state, self._logits, ())]
        boundary, word_ids = self._boundary_ids, self._word_ids
        for depth in range(max_chars + 1):
            candidates: list[tuple[float, _Beam, int]] = []
            for beam in beams:
                logp = self._next_log_probs(beam.logits, beam.ids)
                word = self._word + beam.chars
                if word:
                    end = beam.logprob + float(np.log(np.exp(logp[boundary]).sum()))
                    done[word] = end
                if depth == max_chars:
                    continue
                top = word_ids[np.argsort(logp[word_ids])[::-1][:width]]
                candidates.extend((beam.logprob + float(logp[t]), beam, int(t)) for t in top)
            if not candidates:
                break
            candidates.sort(key=lambda c: -c[0])
            kth = sorted(done.values(), reverse=True)[k - 1] if len(done) >= k else -math.inf
            candidates = [c for c in candidates[:width] if c[0] > kth]
            if not candidates:
                break
            beams = []
            for logprob, beam, token in candidates:
                y, state = self.model.step(np.array([token], dtype=np.int64), beam.state)
                beams.append(_Beam(beam.chars + self.tokenizer.token_text(token), logprob, state, y[-1],
                                   (*beam.ids, token)))
        best = sorted(done.items(), key=lambda item: -item[1])[:k]
        return [Suggestion(word, math.exp(logprob)) for word, logprob in best]

    # ------------------------------------------------------------ scoring
    def score(self, text: str) -> float:
        """Bits per character of ``text`` from the start state (the fed state is untouched)."""
        bits, chars, _ = self.score_pieces([text])
        if chars == 0:
            raise InputError(expected_got("text to score", "at least one character", "an empty text"))
        return bits / chars

    def score_pieces(self, pieces: Iterator[str] | Sequence[str]) -> tuple[float, int, int]:
        """Total bits, characters and unknown characters of the concatenated ``pieces``, streamed in chunks, from
        the start state (an adaptive part starts empty and learns the text as it is scored)."""
        state, logits = self._start
        mixer = AdaptiveMixer(self.tokenizer.vocab_size, self.adaptive) if self.adaptive else None
        bits, chars, unknown = 0.0, 0, 0
        for piece in pieces:
            ids = self.tokenizer.encode(piece)
            if self.tokenizer.unknown_id is not None:
                unknown += int((ids == self.tokenizer.unknown_id).sum())
            for start in range(0, len(ids), SCORE_CHUNK):
                chunk = ids[start:start + SCORE_CHUNK]
                y, state = self.model.step(chunk, state)
                logp = log_softmax(np.concatenate([logits[None], y[:-1]]))
                if mixer is None:
                    bits -= float(logp[np.arange(len(chunk)), chunk].sum()) / math.log(2)
                else:
                    bits -= sum(mixer.read(row, int(token)) for row, token in zip(logp, chunk)) / math.log(2)
                logits = y[-1]
                chars += len(chunk)
        return bits, chars, unknown

    def score_file(self, path: str | Path, errors: str = "strict",
                   progress: Callable[[int], None] | None = None) -> dict[str, Any]:
        """Bits per character of a UTF-8 file, read in 64 KB pieces (memory stays flat for any size).

        Invalid UTF-8 raises ``InputError`` naming the byte offset (``errors="replace"``: such bytes become U+FFFD,
        an unknown character). An empty file is an error. ``progress`` is called with the bytes read so far.
        """
        with open(text_file(path), "rb") as handle:
            return self.score_stream(handle, str(path), errors, progress)

    def score_stream(self, handle: BinaryIO, name: str = "standard input", errors: str = "strict",
                     progress: Callable[[int], None] | None = None) -> dict[str, Any]:
        """``score_file`` over an open binary stream (a pipe, standard input); ``name`` is used in errors."""
        bits, chars, unknown = self.score_pieces(_decoded_pieces(handle, _errors(errors), name, progress))
        if chars == 0:
            raise InputError(expected_got(name, "at least one character", "an empty text"))
        return {"bits_per_char": bits / chars, "chars": chars, "unknown_chars": unknown}

    def feed_stream(self, handle: BinaryIO, name: str = "standard input", errors: str = "strict") -> None:
        """``feed`` the UTF-8 text of an open binary stream, 64 KB at a time (a long prompt from a file)."""
        for piece in _decoded_pieces(handle, _errors(errors), name):
            self.feed(piece)


def _errors(errors: str) -> str:
    if errors not in ("strict", "replace"):
        raise InputError(expected_got("errors", "'strict' or 'replace'", repr(errors)))
    return errors


def text_file(path: str | Path) -> Path:
    path = Path(path)
    if path.is_dir():
        raise InputError(expected_got(str(path), "a text file", "a directory"))
    if not path.is_file():
        raise InputError(expected_got("text file", "an existing file", str(path)))
    return path


def _decoded_pieces(handle: BinaryIO, errors: str, name: str,
                    progress: Callable[[int], None] | None = None) -> Iterator[str]:
    decoder = codecs.getincrementaldecoder("utf-8")(errors=errors)
    offset = 0
    while True:
        block = handle.read(READ_BYTES)
        if progress is not None:
            progress(offset + len(block))
        try:
            text = decoder.decode(block, final=not block)
        except UnicodeDecodeError as err:
            raise InputError(expected_got(f"{name}", "UTF-8 text",
                                          f"invalid byte 0x{block[err.start]:02x} at byte offset {offset + err.start}"
                                          " (pass errors='replace' / --errors replace to score it anyway)")) from None
        if text:
            yield text
        if not block:
            return
        offset += len(block)


class TextClassifier:
    """As-you-type classification over a shared model whose row t is the answer for the first t+1 characters."""

    def __init__(self, model: StreamingModel) -> None:
        self.model = model
        self.tokenizer = model_tokenizer(model)
        labels = model.labels
        if not labels:
            raise ManifestError("a text classifier needs labels in its manifest")
        self.labels: tuple[str, ...] = tuple(labels)
        self.reset()

    @classmethod
    def load(cls, model_dir: str | Path, backend: str | None = None, precision: str = "float") -> TextClassifier:
        return cls(StreamingModel.load(model_dir, backend=backend, precision=precision))

    def reset(self) -> None:
        self._state = self.model.initial_state()
        self._logits: np.ndarray | None = None

    def feed(self, text: str) -> np.ndarray:
        """Feed characters; returns the label probabilities after each of them ``[len(text), labels]``."""
        if not isinstance(text, str):
            raise InputError(expected_got("text", "a str", type(text).__name__))
        if not text:
            return np.zeros((0, len(self.labels)))
        ids = self.tokenizer.encode(text)
        rows = []
        if self.model.manifest.kind == "step":  # one character per call; y is that character's answer
            for start in range(len(ids)):
                y, self._state = self.model.step(ids[start:start + 1], self._state)
                rows.append(y.reshape(1, -1))
        else:
            for start in range(0, len(ids), SCORE_CHUNK):
                y, self._state = self.model.step(ids[start:start + SCORE_CHUNK], self._state)
                rows.append(y)
        logits = np.concatenate(rows)
        self._logits = logits[-1]
        return np.exp(log_softmax(logits))

    def probabilities(self) -> np.ndarray:
        """Label probabilities for everything fed so far (an error before the first character)."""
        if self._logits is None:
            raise InputError(expected_got("text fed before classifying", "at least one character", "nothing"))
        return np.exp(log_softmax(self._logits))

    def label(self) -> str:
        return self.labels[int(np.argmax(self.probabilities()))]
