"""Streaming speech recognition over a StreamingModel: frontend -> frame stacking -> CTC model -> decoder.

The model directory's manifest holds the settings under ``extra.asr`` (tokens, blank, lexicon, grammar, decoder,
endpoint rules, frame stacking). ``SpeechRecognizer(model).create_stream()`` gives a ``RecognizerStream``:
``push(pcm)`` returns the results completed by that audio (partial hypotheses as they change, and a final result
when an endpoint rule fires); ``flush()`` finishes the utterance at the end of the input. Silence gives nothing.

With a rejection rule (``decoder.rejection``, see ``ctc.RejectionRule``), a final result whose text differs too
much from the unconstrained best path over the utterance's frames (out-of-grammar speech: the model spells something
else than the grammar's closest sentence) is dropped when the endpoint fires: the utterance gives no final result.
Partials are not checked (they are provisional); when a rejected utterance had shown one, ``push`` returns an empty
partial in place of the final, so a display clears it (``flush`` returns finals only). Rejection changes nothing
else: the stream goes on exactly as if the result had been kept.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from lstm_edge.runtime.ctc import (
    BeamSettings,
    BeamState,
    GreedyState,
    Vocabulary,
    Word,
    beam_step,
    best_path_text,
    best_text,
    disagreement,
    greedy_step,
    words_of,
)
from lstm_edge.runtime.errors import InputError, ManifestError, expected_got
from lstm_edge.runtime.model import StreamingModel

if TYPE_CHECKING:
    from lstm_edge.runtime.batch import SlotStream

CHUNK_SECONDS = 0.1


def stack_frames(features: np.ndarray, stack: int) -> np.ndarray:
    """Concatenate each run of ``stack`` consecutive frames into one: ``[T, F]`` -> ``[T // stack, F * stack]``
    (a trailing partial group is dropped; a stream keeps it for the next chunk)."""
    if stack < 1:
        raise InputError(expected_got("frame stack", ">= 1", stack))
    n = features.shape[0] // stack
    return np.ascontiguousarray(features[: n * stack].reshape(n, features.shape[1] * stack))


@dataclass(frozen=True)
class EndpointRule:
    """An utterance ends when its trailing silence reaches ``min_trailing_silence`` seconds and it is at least
    ``min_utterance_length`` seconds long; with ``must_contain_speech`` only once something was recognised."""

    name: str
    must_contain_speech: bool
    min_trailing_silence: float
    min_utterance_length: float = 0.0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EndpointRule:
        try:
            return cls(str(data["name"]), bool(data["must_contain_speech"]), float(data["min_trailing_silence"]),
                       float(data.get("min_utterance_length", 0.0)))
        except (KeyError, TypeError, ValueError) as error:
            raise ManifestError(expected_got("endpoint rule", "{name, must_contain_speech, min_trailing_silence"
                                             "[, min_utterance_length]}", dict(data))) from error


DEFAULT_ENDPOINT_RULES: tuple[EndpointRule, ...] = (
    EndpointRule("silence", must_contain_speech=False, min_trailing_silence=2.0),
    EndpointRule("after_speech", must_contain_speech=True, min_trailing_silence=0.5),
    EndpointRule("max_length", must_contain_speech=False, min_trailing_silence=0.0, min_utterance_length=15.0),
)


def fired_rule(rules: Sequence[EndpointRule], utterance_seconds: float, trailing_silence_seconds: float,
               has_speech: bool) -> EndpointRule | None:
    """The first rule that ends the utterance now, or None."""
    for rule in rules:
        if rule.must_contain_speech and not has_speech:
            continue
        if trailing_silence_seconds >= rule.min_trailing_silence and utterance_seconds >= rule.min_utterance_length:
            return rule
    return None


@dataclass(frozen=True)
class Result:
    """A partial (``final=False``) or final recognition result; times in seconds from the stream's start."""

    text: str
    final: bool
    start: float = 0.0
    end: float = 0.0
    words: tuple[Word, ...] = ()
    endpoint: str = ""  # the endpoint rule that ended a final result ("end_of_input" on flush)
    disagreement: float | None = None  # a final result's disagreement, with a rejection rule (not in to_dict)

    def to_dict(self) -> dict[str, Any]:
        if not self.final:
            return {"partial": self.text}
        return {"text": self.text, "start": round(self.start, 3), "end": round(self.end, 3),
                "words": [w.to_dict() for w in self.words]}


@dataclass(frozen=True)
class IdleReset:
    """Before any speech, restart the model from its initial state every ``after_seconds`` and run the last
    ``lookback_seconds`` of frames again, so speech meets a state like the one after the short lead-in of training
    utterances (an LSTM left running over a long silence drifts to states it never saw there)."""

    # Chosen on the validation voices (float WER of isolated utterances / of the continuous stream of evaluate.py).
    # For the previous shipped model: none 11.8% / 15.2%; 0.5, 0.2: 12.3% / 13.0%; 0.75, 0.25: 11.9% / 12.7%;
    # 1.0, 0.3: 11.8% / 13.1%; 1.5, 0.5: 11.8% / 13.3%. Rechecked for the current one (decoded at beam 32) on the
    # second synthesised set's validation (stream): none 17.6%; 0.5, 0.2: 15.7%; 0.75, 0.25: 15.1%; 1.0, 0.3:
    # 14.8%, but 11.2% on the first set's against 10.6% for 0.75, 0.25, which stays.
    after_seconds: float = 0.75
    lookback_seconds: float = 0.25

    @classmethod
    def from_dict(cls, data: Any) -> IdleReset | None:
        """``{after_seconds, lookback_seconds}`` checked, or None (no idle reset) for None."""
        if data is None:
            return None
        what = "extra.asr.idle_reset"
        if not isinstance(data, Mapping) or set(data) != {"after_seconds", "lookback_seconds"}:
            raise ManifestError(expected_got(what, "{after_seconds, lookback_seconds} or null", repr(data)))
        values = data["after_seconds"], data["lookback_seconds"]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise ManifestError(expected_got(what, "numbers of seconds", repr(data)))
        after, lookback = float(values[0]), float(values[1])
        if not 0.0 <= lookback < after:
            raise ManifestError(expected_got(what, "0 <= lookback_seconds < after_seconds", repr(data)))
        return cls(after, lookback)


@dataclass(frozen=True)
class RecognizerSettings:
    """The manifest's ``extra.asr`` block, checked."""

    tokens: tuple[str, ...]
    blank: int
    lexicon: tuple[str, ...]
    grammar: Mapping[str, Any] | None
    decoder: BeamSettings
    endpoint: tuple[EndpointRule, ...]
    frame_stack: int
    output: str = "log_probabilities"
    idle_reset: IdleReset | None = IdleReset()

    @classmethod
    def from_manifest(cls, extra: Mapping[str, Any]) -> RecognizerSettings:
        asr = extra.get("asr")
        if not isinstance(asr, Mapping):
            raise ManifestError("a speech recognizer needs a manifest with an 'extra.asr' block (tokens, lexicon, ...)")
        missing = {"tokens", "blank", "lexicon"} - set(asr)
        if missing:
            raise ManifestError(expected_got("extra.asr keys", "tokens, blank, lexicon", f"missing {sorted(missing)}"))
        if asr.get("output", "log_probabilities") != "log_probabilities":
            raise ManifestError(expected_got("extra.asr.output", "'log_probabilities'", repr(asr.get("output"))))
        endpoint = asr.get("endpoint", {}).get("rules")
        rules = tuple(EndpointRule.from_dict(r) for r in endpoint) if endpoint else DEFAULT_ENDPOINT_RULES
        decoder = dict(asr.get("decoder", {}))
        if decoder.get("method", "beam_search") != "beam_search":
            raise ManifestError(expected_got("extra.asr.decoder.method", "'beam_search'", repr(decoder["method"])))
        idle = IdleReset.from_dict(asr["idle_reset"]) if "idle_reset" in asr else IdleReset()  # null: none
        return cls(tuple(asr["tokens"]), int(asr["blank"]), tuple(asr["lexicon"]), asr.get("grammar"),
                   BeamSettings.from_dict(decoder), rules, int(asr.get("frame_stack", 1)), idle_reset=idle)


class SpeechRecognizer:
    """A loaded CTC model plus decoding settings; stateless, shareable across threads (one stream per thread)."""

    def __init__(self, model: StreamingModel, settings: RecognizerSettings | None = None) -> None:
        manifest = model.manifest
        if not manifest.frontend:
            raise ManifestError("a speech recognizer needs a model directory with a frontend in its manifest")
        from lstm_edge.runtime.frontend import LogMelConfig, LogMelFrontend

        self.model = model
        self.settings = settings or RecognizerSettings.from_manifest(manifest.extra)
        self.frontend = LogMelFrontend(LogMelConfig.from_dict(dict(manifest.frontend)))
        self.vocabulary = Vocabulary(self.settings.tokens, self.settings.lexicon, self.settings.grammar,
                                     self.settings.blank)
        self.sample_rate = int(self.frontend.config.sample_rate)
        self.frame_seconds = self.settings.frame_stack * self.frontend.config.hop_length / self.sample_rate
        idle = self.settings.idle_reset
        # Model frames before an idle reset, and rerun by it (0, 0: no idle reset).
        self.idle_frames = int(round(idle.after_seconds / self.frame_seconds)) if idle else 0
        self.lookback_frames = int(round(idle.lookback_seconds / self.frame_seconds)) if idle else 0

    def create_stream(self) -> RecognizerStream:
        return RecognizerStream(self)

    def create_batch(self, n: int) -> RecognizerBatch:
        """``n`` audio streams whose model steps run together (see ``RecognizerBatch``)."""
        return RecognizerBatch(self, n)

    def transcribe(self, audio: np.ndarray | Iterable[np.ndarray], chunk_seconds: float = CHUNK_SECONDS,
                   partial: bool = False) -> list[Result]:
        """Every final result (and, with ``partial``, the partial ones) of a recording fed in chunks."""
        if isinstance(audio, np.ndarray):
            step = max(int(self.sample_rate * chunk_seconds), 1)
            chunks: Iterable[np.ndarray] = (audio[i:i + step] for i in range(0, len(audio), step))
        else:
            chunks = audio
        stream = self.create_stream()
        results = [r for chunk in chunks for r in stream.push(chunk)] + stream.flush()
        return results if partial else [r for r in results if r.final]


@dataclass
class _Utterance:
    start_frame: int
    beams: BeamState = field(default_factory=BeamState)
    last_speech_frame: int = -1  # last frame whose most probable token is not blank
    partial: str = ""
    greedy: GreedyState = field(default_factory=GreedyState)  # the best path, for a rejection rule


class RecognizerStream:
    """One audio stream: push PCM chunks (16 kHz mono int16 or float), get partial and final results."""

    def __init__(self, recognizer: SpeechRecognizer, model_stream: Any = None) -> None:
        """``model_stream``: where the model runs (a ``SlotStream`` of a ``RecognizerBatch``); default: its own."""
        self.recognizer = recognizer
        self.features = recognizer.frontend.create_stream()
        self.model_stream = model_stream if model_stream is not None else recognizer.model.create_stream()
        self.reset()

    def reset(self) -> None:
        self.features.reset()
        self.model_stream.reset()
        self._pending = np.zeros((0, self.recognizer.frontend.n_mels), dtype=np.float32)
        self._recent: np.ndarray | None = None  # the last model inputs, for an idle reset's lookback
        self._frame = 0
        self._utterance = _Utterance(0)

    def push(self, pcm: np.ndarray) -> list[Result]:
        """Feed audio; returns the results it completed (a partial when the best hypothesis changed, finals)."""
        stacked = self._model_input(pcm)
        return [] if stacked is None else self._run(stacked)

    def _model_input(self, pcm: np.ndarray) -> np.ndarray | None:
        """The frontend's new frames, stacked as the model takes them (None: not one whole model frame yet)."""
        return self._stacked(self.features.push(pcm))

    def _stacked(self, frames: np.ndarray) -> np.ndarray | None:
        """New frontend frames, stacked as the model takes them (None: not one whole model frame yet)."""
        if frames.shape[0] == 0:
            return None
        stack = self.recognizer.settings.frame_stack
        frames = np.concatenate([self._pending, frames]) if self._pending.shape[0] else frames
        usable = frames.shape[0] // stack * stack
        self._pending = frames[usable:]
        if usable == 0:
            return None
        return stack_frames(frames[:usable], stack)

    def _run(self, stacked: np.ndarray) -> list[Result]:
        results: list[Result] = []
        while stacked.shape[0]:
            log_probs = np.asarray(self.model_stream.push(stacked), dtype=np.float64)
            used, idle = self._decode(log_probs, results)
            self._remember(stacked[:used])
            stacked = stacked[used:]  # after an endpoint or an idle reset, the rest runs again from the initial state
            if idle:
                # Idle reset: decode the lookback frames again, as the start of a new (still silent) utterance.
                if self._recent is not None:
                    stacked = np.concatenate([self._recent, stacked])
                    self._frame -= self._recent.shape[0]
                    self._recent = None
                self._utterance = _Utterance(self._frame)
        return results

    def _remember(self, consumed: np.ndarray) -> None:
        keep = self.recognizer.lookback_frames
        if keep == 0 or consumed.shape[0] == 0:
            return
        if consumed.shape[0] >= keep or self._recent is None:
            self._recent = consumed[-keep:]  # a view of this push's own input array
        else:
            self._recent = np.concatenate([self._recent, consumed])[-keep:]

    def flush(self) -> list[Result]:
        """End of input: the final result of the utterance in progress (if anything was recognised and kept)."""
        return [r for r in self._finish("end_of_input") if r.final]

    def _decode(self, log_probs: np.ndarray, results: list[Result]) -> tuple[int, bool]:
        """Decode frames until an endpoint or an idle reset (either resets the model state); returns how many frames
        were used and whether it was an idle reset."""
        recognizer = self.recognizer
        settings, frame_seconds, idle_frames = recognizer.settings, recognizer.frame_seconds, recognizer.idle_frames
        speech = np.argmax(log_probs, axis=1) != settings.blank
        greedy = settings.decoder.rejection is not None
        for index, (row, is_speech) in enumerate(zip(log_probs, speech)):
            u = self._utterance
            u.beams = beam_step(u.beams, row[None], recognizer.vocabulary, settings.decoder)
            if greedy:
                u.greedy = greedy_step(u.greedy, row[None], settings.blank)
            if is_speech:
                u.last_speech_frame = self._frame
            self._frame += 1
            text = best_text(u.beams, recognizer.vocabulary)[0]
            if text != u.partial:
                u.partial = text
                results.append(Result(text, final=False))
            silence_from = u.last_speech_frame + 1 if u.last_speech_frame >= 0 else u.start_frame
            trailing = (self._frame - silence_from) * frame_seconds
            # "Speech" = a complete, grammatical hypothesis exists (a stray character is not speech).
            has_speech = bool(u.partial) and trailing > 0 and bool(self._final_text(u)[0])
            rule = fired_rule(settings.endpoint, (self._frame - u.start_frame) * frame_seconds, trailing, has_speech)
            if rule is not None:
                # The model was trained on utterances that start from its initial state after silence: the next
                # utterance starts the same way.
                self.model_stream.reset()
                results.extend(self._finish(rule.name))
                return index + 1, False
            silent_so_far = u.last_speech_frame < 0 and not u.partial
            if idle_frames and silent_so_far and self._frame - u.start_frame >= idle_frames:
                self.model_stream.reset()
                return index + 1, True
        return len(log_probs), False

    def _final_text(self, u: _Utterance) -> tuple[str, tuple[int, ...]]:
        recognizer = self.recognizer
        return best_text(u.beams, recognizer.vocabulary, final=True,
                         incomplete_margin=recognizer.settings.decoder.incomplete_margin)

    def _finish(self, reason: str) -> list[Result]:
        """End the utterance: its final result, nothing, or (rejected after a partial was shown) an empty partial."""
        recognizer, u = self.recognizer, self._utterance
        text, frames = self._final_text(u)
        self._utterance = _Utterance(self._frame)
        if not text:
            return []
        rule, distance = recognizer.settings.decoder.rejection, None
        if rule is not None:
            distance = disagreement(text, best_path_text(u.greedy.hypothesis, recognizer.settings.tokens))
            if rule.rejects(distance):
                return [Result("", final=False)] if u.partial else []
        offset = u.start_frame * recognizer.frame_seconds
        words = tuple(words_of(text, frames, recognizer.frame_seconds, offset))
        return [Result(text, final=True, start=words[0].start, end=words[-1].end, words=words, endpoint=reason,
                       disagreement=distance)]


class RecognizerBatch:
    """Many audio streams of one recognizer (a server's phone lines), their model steps pushed together through a
    ``StreamBatch``: each push runs the model once for every stream that completed frames. Each slot keeps its own
    frontend and decoder; the results are those of separate ``RecognizerStream``s. After an endpoint or an idle
    reset inside a chunk, the rest of that stream's chunk runs again from the initial state in its slot alone.

    ``push`` takes one PCM chunk per active slot (a sequence in ``active`` order, or ``{slot: pcm}``) and returns
    the results per slot; a slot whose audio is refused raises ``BatchPushError`` after the others ran (its
    ``outputs`` then hold their results)."""

    def __init__(self, recognizer: SpeechRecognizer, n: int) -> None:
        self.recognizer = recognizer
        self.batch = recognizer.model.create_batch(0)
        self._streams: dict[int, RecognizerStream] = {}
        self._slots: dict[int, SlotStream] = {}
        for _ in range(n):
            self.join()

    @property
    def active(self) -> tuple[int, ...]:
        return self.batch.active

    def join(self) -> int:
        """A new audio stream; returns its slot."""
        from lstm_edge.runtime.batch import SlotStream

        slot = self.batch.join()
        self._slots[slot] = SlotStream(self.batch, slot)
        self._streams[slot] = RecognizerStream(self.recognizer, model_stream=self._slots[slot])
        return slot

    def leave(self, slot: int) -> list[Result]:
        """End the stream in ``slot``; returns its final result (as ``flush``)."""
        results = self._streams[slot].flush() if slot in self._streams else []
        self.batch.leave(slot)
        del self._streams[slot], self._slots[slot]
        return results

    def reset(self, slot: int) -> None:
        self._streams[slot].reset()

    def push(self, pcm: Sequence[np.ndarray] | Mapping[int, np.ndarray]
             ) -> list[list[Result]] | dict[int, list[Result]]:
        from lstm_edge.runtime.batch import BatchPushError, chunks_by_slot, push_by_length

        keyed = isinstance(pcm, Mapping)
        chunks = chunks_by_slot(pcm, self.batch.active, self._streams)  # all checked before any stream moves
        features, errors = self.recognizer.frontend.push_many(  # one transform for every stream's frames
            {slot: (self._streams[slot].features, samples) for slot, samples in chunks.items()})
        inputs: dict[int, np.ndarray] = {}
        for slot, frames in features.items():
            stacked = self._streams[slot]._stacked(frames)
            if stacked is not None:
                inputs[slot] = stacked
        outputs, failed = push_by_length(self.batch, inputs)
        errors.update(failed)
        results: dict[int, list[Result]] = {slot: [] for slot in chunks if slot not in errors}
        for slot, log_probs in outputs.items():
            self._slots[slot].prefetched(inputs[slot], log_probs)
            results[slot] = self._streams[slot]._run(inputs[slot])
        if errors:
            raise BatchPushError(errors, results)  # type: ignore[arg-type]
        return results if keyed else [results[slot] for slot in chunks]

    def flush(self) -> dict[int, list[Result]]:
        """End of input for every slot: their final results."""
        return {slot: stream.flush() for slot, stream in self._streams.items()}
