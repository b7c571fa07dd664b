"""Pure CTC decoders over per-frame log-probabilities ``[T, V]`` (numpy only).

* ``greedy_decode`` / ``GreedyState``: best token per frame, repeats collapsed, blanks dropped; streams exactly (the
  result over chunks equals the result over the whole array).
* ``prefix_beam_search`` / ``BeamState``: CTC prefix beam search constrained by a lexicon (character trie: a word
  may only be spelled as a lexicon word, words are separated by the space token) and optionally by a word grammar
  (which word may follow which, or a deterministic word automaton: exactly the sentences of a grammar). Settings
  are data (``BeamSettings``, from the manifest).
* ``disagreement`` / ``RejectionRule``: how far a decoded text is from the unconstrained best path (greedy text)
  over the same frames; a final result beyond the rule's limit is taken for out-of-grammar speech and rejected
  (manifest ``decoder.rejection``).

Every hypothesis carries the frame of each emitted token, from which word timestamps are derived (``words_of``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lstm_edge.runtime.errors import InputError, ManifestError, expected_got

NEG_INF = -np.inf


@dataclass(frozen=True)
class Hypothesis:
    """Decoded tokens with the frame where each was emitted, and the log score (greedy: sum of frame maxima)."""

    tokens: tuple[int, ...] = ()
    frames: tuple[int, ...] = ()
    score: float = 0.0


@dataclass(frozen=True)
class Word:
    """One recognised word with start/end times in seconds."""

    word: str
    start: float
    end: float

    def to_dict(self) -> dict[str, Any]:
        return {"word": self.word, "start": round(self.start, 3), "end": round(self.end, 3)}


def _check_log_probs(log_probs: Any) -> np.ndarray:
    array = np.asarray(log_probs)
    if array.ndim != 2 or array.shape[1] < 2 or not np.issubdtype(array.dtype, np.floating):
        raise InputError(expected_got("CTC log-probabilities", "a float array [T, V] with V >= 2",
                                      f"{array.dtype} {array.shape}"))
    return array


@dataclass(frozen=True)
class GreedyState:
    """Streaming greedy decoding: the hypothesis so far, the previous frame's best token, frames consumed."""

    hypothesis: Hypothesis = field(default_factory=Hypothesis)
    previous: int = -1
    frame: int = 0


def greedy_step(state: GreedyState, log_probs: Any, blank: int = 0) -> GreedyState:
    """Advance greedy decoding over a chunk of frames."""
    array = _check_log_probs(log_probs)
    best = np.argmax(array, axis=1)
    tokens, frames = list(state.hypothesis.tokens), list(state.hypothesis.frames)
    previous = state.previous
    for offset, token in enumerate(best.tolist()):
        if token != blank and token != previous:
            tokens.append(token)
            frames.append(state.frame + offset)
        previous = token
    score = state.hypothesis.score + float(np.sum(np.max(array, axis=1))) if len(array) else state.hypothesis.score
    return GreedyState(Hypothesis(tuple(tokens), tuple(frames), score), previous, state.frame + len(array))


def greedy_decode(log_probs: Any, blank: int = 0) -> Hypothesis:
    """Greedy CTC decoding of a whole array."""
    return greedy_step(GreedyState(), log_probs, blank).hypothesis


@dataclass(frozen=True)
class BeamSettings:
    """Prefix beam search settings (manifest ``extra.asr.decoder``)."""

    beam_size: int = 8
    token_top_k: int = 6  # per frame, only the k most probable tokens extend a prefix ...
    token_min_log_prob: float = -12.0  # ... and only those above this log-probability
    keep_complete: bool = True  # with a grammar, always keep the best complete sentence, beyond beam_size if need be
    incomplete_margin: float | None = None  # see best_text; None: a final result is always a complete sentence
    rejection: RejectionRule | None = None  # None: every final result is kept

    def __post_init__(self) -> None:
        if not (isinstance(self.beam_size, int) and self.beam_size >= 1):
            raise ManifestError(expected_got("decoder.beam_size", "an int >= 1", repr(self.beam_size)))
        if not (isinstance(self.token_top_k, int) and self.token_top_k >= 1):
            raise ManifestError(expected_got("decoder.token_top_k", "an int >= 1", repr(self.token_top_k)))
        margin = self.incomplete_margin
        if margin is not None and (isinstance(margin, bool) or not isinstance(margin, int | float) or margin < 0):
            raise ManifestError(expected_got("decoder.incomplete_margin", "null or a number >= 0", repr(margin)))
        if not isinstance(self.keep_complete, bool):
            raise ManifestError(expected_got("decoder.keep_complete", "true or false", repr(self.keep_complete)))
        if self.rejection is not None and not isinstance(self.rejection, RejectionRule):
            raise ManifestError(expected_got("decoder.rejection", "a RejectionRule or None", repr(self.rejection)))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BeamSettings:
        known = {"beam_size", "token_top_k", "token_min_log_prob", "keep_complete", "incomplete_margin"}
        allowed = known | {"method", "rejection"}
        unknown = set(data) - allowed
        if unknown:
            raise ManifestError(expected_got("decoder settings", f"keys among {sorted(allowed)}", sorted(unknown)))
        rejection = RejectionRule.from_dict(data.get("rejection"))
        return cls(**{k: data[k] for k in known if k in data}, rejection=rejection)


REJECTION_METHOD = "best_path_disagreement"


@dataclass(frozen=True)
class RejectionRule:
    """Reject a final result whose ``disagreement`` with its utterance's best-path text exceeds
    ``max_disagreement`` (manifest ``decoder.rejection``: ``{"method": "best_path_disagreement", "max_disagreement":
    X}`` with 0 <= X <= 1; absent or null: off). ``max_disagreement`` 1 rejects nothing and only measures."""

    # The measure, chosen on the validation voices with the shipped model (300 grammar utterances; 200 long and 50
    # short English sentences outside the grammar), by the share of out-of-grammar utterances still giving text at
    # the threshold that keeps the WER within 0.3 points of no rejection: this disagreement 81% (long 80%, short
    # 82%); the best-path log-probability gap per speech frame (the text's best CTC alignment against the free best
    # path, Viterbi) 99%; the same gap unnormalised 71% (long 64%, short 98%: it rejects by length). Trained on
    # grammar speech only, the model is about as sure of itself on other speech, so scores hardly differ; what it
    # spells freely there is far from the grammar's closest sentence.
    max_disagreement: float
    method: str = REJECTION_METHOD

    def __post_init__(self) -> None:
        limit = self.max_disagreement
        if isinstance(limit, bool) or not isinstance(limit, int | float) or not 0 <= limit <= 1:
            raise ManifestError(expected_got("decoder.rejection.max_disagreement", "a number in [0, 1]",
                                             repr(limit)))
        if self.method != REJECTION_METHOD:
            raise ManifestError(expected_got("decoder.rejection.method", repr(REJECTION_METHOD), repr(self.method)))

    @classmethod
    def from_dict(cls, data: Any) -> RejectionRule | None:
        """``{method, max_disagreement}`` checked, or None (no rejection) for None."""
        if data is None:
            return None
        if not isinstance(data, Mapping) or set(data) != {"method", "max_disagreement"}:
            raise ManifestError(expected_got("decoder.rejection", "{method, max_disagreement} or null", repr(data)))
        return cls(data["max_disagreement"], data["method"])

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "max_disagreement": self.max_disagreement}

    def rejects(self, disagreement: float) -> bool:
        """True if a final result with this ``disagreement`` is rejected."""
        return disagreement > self.max_disagreement


Context = Any  # what the words spelled so far allow next: None at the start, else a word or an automaton state


class Vocabulary:
    """What the beam search may spell: tokens (characters, one of them the word separator), lexicon words, and an
    optional word grammar, in one of two forms:

    * word successors ``{"start": [words], "next": {word: [words]}, "final": [words]}`` (which word may follow
      which: remembers only the previous word);
    * a deterministic word automaton ``{"states": N, "start": s, "final": [states], "arcs": [[from, word, to],
      ...]}`` (at most one arc per state and word): exactly the word sequences that reach a final state.
    """

    def __init__(self, tokens: Sequence[str], lexicon: Iterable[str], grammar: Mapping[str, Any] | None = None,
                 blank: int = 0, separator: str = " ") -> None:
        self.tokens = tuple(tokens)
        if separator not in self.tokens:
            raise ManifestError(expected_got("tokens", f"a list containing the word separator {separator!r}",
                                             list(self.tokens)))
        self.blank = blank
        self.separator = self.tokens.index(separator)
        self.token_index: dict[str, int] = {}
        for i, token in enumerate(self.tokens):
            self.token_index.setdefault(token, i)
        self.words = frozenset(lexicon)
        spellable = set(self.tokens) - {self.tokens[blank], separator}
        for word in self.words:
            if not word or any(ch not in spellable for ch in word):
                raise ManifestError(expected_got("lexicon word", "a non-empty word spelled with the tokens",
                                                 repr(word)))
        self.grammar = grammar
        self._prefixes: dict[Context, frozenset[str]] = {}
        self._followers: dict[Context, frozenset[str]] = {}
        self._arcs: dict[tuple[Context, str], Context] = {}  # (context, word) -> the context after it
        self._final: frozenset[Context] = frozenset()
        self._contexts: dict[str, Context] = {"": None}  # the complete words spelled so far -> their context
        if grammar is None:
            return
        if not isinstance(grammar, Mapping):
            raise ManifestError(expected_got("grammar", "a mapping (word successors or a word automaton)",
                                             type(grammar).__name__))
        words = self._load_automaton(grammar) if "arcs" in grammar else self._load_successors(grammar)
        unknown = words - self.words
        if unknown:
            raise ManifestError(expected_got("grammar words", "lexicon words", sorted(unknown)))

    def _load_successors(self, grammar: Mapping[str, Any]) -> set[str]:
        missing = {"start", "next", "final"} - set(grammar)
        if missing:
            raise ManifestError(expected_got("grammar keys", "start, next, final (or states, start, final, arcs)",
                                             f"missing {sorted(missing)}"))
        def words(value: Any, where: str) -> frozenset[str]:
            if not isinstance(value, list) or not all(isinstance(w, str) for w in value):
                raise ManifestError(expected_got(where, "a list of words", repr(value)[:80]))
            return frozenset(value)

        self._followers[None] = words(grammar["start"], "grammar.start")
        if not isinstance(grammar["next"], Mapping):
            raise ManifestError(expected_got("grammar.next", "a mapping word -> [words]", repr(grammar["next"])[:80]))
        for word, nexts in grammar["next"].items():
            self._followers[word] = words(nexts, f"grammar.next[{word!r}]")
        for previous, nexts in self._followers.items():
            for word in nexts:
                self._arcs[(previous, word)] = word
        self._final = words(grammar["final"], "grammar.final")
        return (set(grammar["start"]) | set(grammar["next"]) | set(self._final)
                | {w for ws in grammar["next"].values() for w in ws})

    def _load_automaton(self, grammar: Mapping[str, Any]) -> set[str]:
        n = grammar.get("states")
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ManifestError(expected_got("grammar.states", "an int >= 1", repr(n)))

        def state(value: Any, where: str) -> int:
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < n:
                raise ManifestError(expected_got(where, f"a state in 0..{n - 1}", repr(value)))
            return value

        start = state(grammar.get("start"), "grammar.start")
        finals = grammar.get("final")
        if not isinstance(finals, list):
            raise ManifestError(expected_got("grammar.final", "a list of states", repr(finals)))
        self._final = frozenset(state(f, "grammar.final") for f in finals)
        arcs = grammar.get("arcs")
        if not isinstance(arcs, list):
            raise ManifestError(expected_got("grammar.arcs", "a list of [from, word, to]", repr(arcs)))
        followers: dict[int, set[str]] = {}
        for arc in arcs:
            if not (isinstance(arc, list | tuple) and len(arc) == 3 and isinstance(arc[1], str)):
                raise ManifestError(expected_got("grammar arc", "[from, word, to]", repr(arc)))
            source, word, target = state(arc[0], "grammar arc source"), arc[1], state(arc[2], "grammar arc target")
            if (source, word) in self._arcs:
                raise ManifestError(expected_got("grammar arcs", "one arc per state and word (deterministic)",
                                                 f"two arcs for {word!r} from state {source}"))
            self._arcs[(source, word)] = target
            followers.setdefault(source, set()).add(word)
        self._followers = {s: frozenset(ws) for s, ws in followers.items()}
        self._contexts[""] = start
        return {word for _, word in self._arcs}

    def context(self, text: str) -> tuple[Context, str]:
        """(what the complete words of ``text`` allow next, the word being spelled). After a word the grammar
        does not allow there, nothing is allowed."""
        cut = text.rfind(" ")
        done, partial = text[: cut + 1], text[cut + 1:]
        context = self._contexts.get(done, _DEAD)
        if context is _DEAD:
            before, word = self.context(done[:-1])
            context = None if self.grammar is None else self._arcs.get((before, word), _DEAD)
            if len(self._contexts) >= _CONTEXT_CACHE:  # a long-running recognizer: keep the cache bounded
                self._contexts = {"": self._contexts[""]}
            self._contexts[done] = context
        return context, partial

    def followers(self, context: Context) -> frozenset[str]:
        """Words allowed in ``context`` (any lexicon word without a grammar)."""
        if self.grammar is None:
            return self.words
        return self._followers.get(context, frozenset())

    def prefixes(self, context: Context) -> frozenset[str]:
        """Every prefix (including the whole word) of the words allowed in ``context``."""
        key = None if self.grammar is None else context
        if key not in self._prefixes:
            self._prefixes[key] = frozenset(w[:i] for w in self.followers(context) for i in range(1, len(w) + 1))
        return self._prefixes[key]

    def can_end(self, context: Context, word: str) -> bool:
        """True if an utterance may end with ``word`` in ``context``."""
        if word not in self.followers(context):
            return False
        return self.grammar is None or self._arcs.get((context, word), _DEAD) in self._final


_DEAD = object()  # the context after a word the grammar does not allow there: nothing may follow
_CONTEXT_CACHE = 65536


class _Beam:
    """One prefix: log-probabilities of it ending in blank and in its last token, their sum (``total``, brought up
    to date at the end of every frame), and the frame of each of its tokens."""

    __slots__ = ("blank", "token", "total", "frames")

    def __init__(self, blank: float, token: float, frames: tuple[int, ...]) -> None:
        self.blank, self.token, self.frames = blank, token, frames
        self.total = _logaddexp(blank, token)


def _logaddexp(a: float, b: float) -> float:
    """log(exp(a) + exp(b)) of two Python floats (numpy's ufunc costs more than the sum on scalars)."""
    if a < b:
        a, b = b, a
    if b == NEG_INF:
        return a
    return a + math.log1p(math.exp(b - a))


@dataclass
class BeamState:
    """Streaming prefix beam search: prefixes (text) -> scores, most probable first, and frames consumed."""

    beams: dict[str, _Beam] = field(default_factory=lambda: {"": _Beam(0.0, NEG_INF, ())})
    frame: int = 0


def _add(beams: dict[str, _Beam], text: str, blank_score: float, token_score: float, frames: tuple[int, ...]) -> None:
    beam = beams.get(text)
    if beam is None:
        beams[text] = _Beam(blank_score, token_score, frames)
    else:
        beam.blank = _logaddexp(beam.blank, blank_score)
        beam.token = _logaddexp(beam.token, token_score)


def _total(item: tuple[str, _Beam]) -> float:
    return item[1].total


def beam_step(state: BeamState, log_probs: Any, vocabulary: Vocabulary, settings: BeamSettings) -> BeamState:
    """Advance the constrained prefix beam search over a chunk of frames (returns a new state)."""
    array = _check_log_probs(log_probs).astype(np.float64)
    if array.shape[1] != len(vocabulary.tokens):
        raise InputError(expected_got("CTC log-probabilities vocabulary size", len(vocabulary.tokens),
                                      array.shape[1]))
    beams, frame = state.beams, state.frame
    tokens, blank, separator = vocabulary.tokens, vocabulary.blank, vocabulary.separator
    index_of = vocabulary.token_index
    k = min(settings.token_top_k, array.shape[1])
    constrained = settings.keep_complete and vocabulary.grammar is not None
    for values, top in zip(array.tolist(), np.argpartition(-array, k - 1, axis=1)[:, :k].tolist()):
        candidates = [c for c in top if c != blank and values[c] >= settings.token_min_log_prob]
        blank_score = values[blank]
        new: dict[str, _Beam] = {}
        for text, beam in beams.items():
            total = beam.total
            _add(new, text, total + blank_score, NEG_INF, beam.frames)
            last = text[-1] if text else None
            if last is not None:
                _add(new, text, NEG_INF, beam.token + values[index_of[last]], beam.frames)
            context, partial = vocabulary.context(text)
            spellable = vocabulary.prefixes(context)
            for c in candidates:
                if c == separator:
                    if not partial or partial not in vocabulary.followers(context):
                        continue
                    extended = text + " "
                else:
                    if partial + tokens[c] not in spellable:
                        continue
                    extended = text + tokens[c]
                score = beam.blank + values[c] if tokens[c] == last else total + values[c]
                _add(new, extended, NEG_INF, score, beam.frames + (frame,))
        for beam in new.values():
            beam.total = _logaddexp(beam.blank, beam.token)
        if len(new) > settings.beam_size:
            ranked = sorted(new.items(), key=_total, reverse=True)
            beams = dict(ranked[: settings.beam_size])
            if constrained:
                _keep_best_complete(beams, ranked[settings.beam_size:], vocabulary)
        else:
            beams = dict(sorted(new.items(), key=_total, reverse=True))
        frame += 1
    return BeamState(beams, frame)


def _is_complete(text: str, vocabulary: Vocabulary) -> bool:
    stripped = text.rstrip(" ")
    if not stripped:
        return False
    context, last = vocabulary.context(stripped)
    return vocabulary.can_end(context, last)


def _keep_best_complete(beams: dict[str, _Beam], pruned: list[tuple[str, _Beam]], vocabulary: Vocabulary) -> None:
    """If no kept prefix is a complete sentence, keep the most probable complete one that pruning dropped: a strict
    grammar otherwise loses every complete sentence while the beam fills with longer, still-open prefixes, and the
    utterance ends with no result."""
    if any(_is_complete(text, vocabulary) for text in beams):
        return
    for text, beam in pruned:
        if _is_complete(text, vocabulary):
            beams[text] = beam
            return


def best_text(state: BeamState, vocabulary: Vocabulary, final: bool = False,
              incomplete_margin: float | None = None) -> tuple[str, tuple[int, ...]]:
    """Best (text, token frames) of a beam state. ``final``: only prefixes that are a complete, grammatical
    utterance count, and so does the empty one ("nothing was said"): an empty result when it is more probable than
    every complete one, or when no complete one exists. ``incomplete_margin`` (log-probability): when the most
    probable prefix is not a complete sentence and beats every complete one by more than this, the result is its
    complete words (a sentence the speaker did not finish, or whose end the model missed) rather than a complete
    sentence the audio hardly supports."""
    best_open: tuple[str, _Beam] | None = None
    for text, beam in state.beams.items():  # most probable first (beam_step keeps them so)
        stripped = text.rstrip(" ")
        if not final:
            return stripped, beam.frames[: len(stripped)]
        if not stripped:
            break
        context, partial = vocabulary.context(stripped)
        if vocabulary.can_end(context, partial):
            if (best_open is not None and incomplete_margin is not None
                    and best_open[1].total - beam.total > incomplete_margin):
                break
            return stripped, beam.frames[: len(stripped)]
        if best_open is None:
            best_open = (text, beam)
    if best_open is not None and incomplete_margin is not None:
        text, beam = best_open
        done = text[: text.rfind(" ") + 1].rstrip(" ")  # whole words: the word being spelled is dropped
        return done, beam.frames[: len(done)]
    return "", ()


def prefix_beam_search(log_probs: Any, vocabulary: Vocabulary, settings: BeamSettings | None = None) -> str:
    """Constrained beam search over a whole array; the best complete utterance (may be empty)."""
    settings = settings or BeamSettings()
    state = beam_step(BeamState(), log_probs, vocabulary, settings)
    return best_text(state, vocabulary, final=True, incomplete_margin=settings.incomplete_margin)[0]


def best_path_text(hypothesis: Hypothesis, tokens: Sequence[str]) -> str:
    """The text of a greedy hypothesis with its words separated by single spaces (no space at either end)."""
    return " ".join("".join(tokens[t] for t in hypothesis.tokens).split())


def edit_distance(a: Sequence[Any], b: Sequence[Any]) -> int:
    """Levenshtein distance: the fewest insertions, deletions and substitutions that turn ``a`` into ``b``."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def disagreement(text: str, best_path: str) -> float:
    """Share of characters on which ``text`` and the best-path text differ: their character edit distance over the
    longer one's length, in [0, 1] (0 when both are empty)."""
    longest = max(len(text), len(best_path))
    return edit_distance(text, best_path) / longest if longest else 0.0


def words_of(text: str, frames: Sequence[int], frame_seconds: float, offset_seconds: float = 0.0) -> list[Word]:
    """Word timestamps from the frame of each character: a word spans its first character's frame to one frame
    past its last character's."""
    if len(frames) != len(text):
        raise InputError(expected_got("token frames", f"one per character ({len(text)})", len(frames)))
    words, start = [], None
    for i, ch in enumerate(text + " "):
        if ch != " " and start is None:
            start = i
        elif ch == " " and start is not None:
            words.append(Word(text[start:i], offset_seconds + frames[start] * frame_seconds,
                              offset_seconds + (frames[i - 1] + 1) * frame_seconds))
            start = None
    return words
