"""Keyword spotting over a stream: PCM in, detections out.

The model emits per-frame logits; posteriors are smoothed over a short window, and a detection opens when a
keyword's smoothed posterior crosses the threshold and closes when it falls back (or after ``max_event_s``).
One detection is reported per event, with the peak score; a refractory period after it suppresses the tail of the
same utterance. Everything here is numpy on top of ``Stream``; the model may be shared by many spotter streams.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from lstm_edge.runtime.errors import InputError, LstmEdgeError, ManifestError, expected_got
from lstm_edge.runtime.model import StreamingModel

NON_KEYWORDS = ("_silence_", "_unknown_")
CHUNK_SECONDS = 0.1  # audio from a file is fed as it would arrive from a microphone
DEFAULT_CLIP_RULE: Mapping[str, Any] = {
    "name": "max_smoothed_speech_window",
    "window_frames": 25,
    "min_speech_probability": 0.5,
    "silence_index": 0,
}


@dataclass(frozen=True)
class Detection:
    label: str
    start: float  # seconds from the start of the stream
    end: float
    score: float

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(start=round(self.start, 3), end=round(self.end, 3), score=round(self.score, 4))
        return out


@dataclass(frozen=True)
class DetectorConfig:
    threshold: float = 0.6  # smoothed posterior that opens a detection
    smoothing_frames: int = 8  # moving average of posteriors (frames of 10 ms)
    refractory_s: float = 0.6  # after a detection ends, no new one for this long
    max_event_s: float = 1.0  # a detection is closed at the latest this long after it opened
    onset_level: float = 0.2  # the raw posterior level that marks where the keyword started
    lookback_s: float = 1.2  # how far back to search for that onset

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise InputError(expected_got("threshold", "a value in (0, 1)", self.threshold))
        if self.smoothing_frames < 1:
            raise InputError(expected_got("smoothing_frames", ">= 1", self.smoothing_frames))

    def to_manifest(self, clip_rule: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The manifest's ``detector`` section (docs/manifest.md) for these settings."""
        section = {"type": "keyword_spotting", "posteriors": "softmax", **asdict(self),
                   "non_keywords": list(NON_KEYWORDS)}
        return section | ({"clip_rule": dict(clip_rule)} if clip_rule is not None else {})

    @classmethod
    def from_manifest(cls, section: Mapping[str, Any] | None) -> DetectorConfig:
        """Settings from a manifest's ``detector`` section (validated by the manifest schema); defaults without one."""
        if not section:
            return cls()
        return cls(**{name: section[name] for name in cls.__dataclass_fields__ if name in section})


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def clip_prediction(logits: Any, rule: Mapping[str, Any] | None = None) -> int:
    """The class of one clip from its per-frame logits [T, C]: average posteriors over the ``window_frames`` window
    where speech (1 - P(silence)) is most likely; silence if that stays under ``min_speech_probability``.

    The one clip rule of lstm-edge (training, evaluation, verify and the device agree by construction); ``rule``
    defaults to ``DEFAULT_CLIP_RULE``, a trained model's rule is in its manifest (``extra.clip_rule``)."""
    rule = DEFAULT_CLIP_RULE if rule is None else rule
    probabilities = softmax(np.asarray(logits, dtype=np.float64))
    if probabilities.ndim != 2 or probabilities.shape[0] == 0:
        raise InputError(expected_got("clip logits", "[T >= 1, C]", probabilities.shape))
    window = int(min(rule["window_frames"], probabilities.shape[0]))
    cumulative = np.cumsum(np.vstack([np.zeros((1, probabilities.shape[1])), probabilities]), axis=0)
    smoothed = (cumulative[window:] - cumulative[:-window]) / window
    silence = int(rule["silence_index"])
    speech = 1.0 - smoothed[:, silence]
    best = int(np.argmax(speech))
    if speech[best] < float(rule["min_speech_probability"]):
        return silence
    scores = smoothed[best].copy()
    scores[silence] = -np.inf
    return int(np.argmax(scores))


class KeywordSpotter:
    """A loaded keyword-spotting model plus detection settings; stateless, shareable across threads."""

    def __init__(self, model: StreamingModel | None, config: DetectorConfig | None = None,
                 labels: Iterable[str] | None = None, frontend: Mapping[str, Any] | None = None) -> None:
        """``model`` supplies labels, frontend and detector defaults from its manifest. Without a model (``labels``
        and ``frontend`` given instead), streams only take posteriors (``KeywordStream.push_posteriors``): the
        detector alone, for posteriors computed elsewhere."""
        from lstm_edge.runtime.frontend import LogMelConfig, LogMelFrontend

        if model is not None:
            manifest = model.manifest
            if not manifest.frontend or not manifest.labels:
                raise ManifestError("a keyword spotter needs a model directory with a frontend and labels in its "
                                    "manifest")
            labels, frontend = manifest.labels, manifest.frontend
            config = config or DetectorConfig.from_manifest(manifest.detector)
        elif labels is None or frontend is None:
            raise InputError(expected_got("KeywordSpotter", "a model, or labels and a frontend", "neither"))
        self.model = model
        self.config = config or DetectorConfig()
        self.frontend = LogMelFrontend(LogMelConfig.from_dict(dict(frontend)))
        self.labels = tuple(labels)
        self.keyword_indices = [i for i, label in enumerate(self.labels) if label not in NON_KEYWORDS]
        self.keyword_array = np.array(self.keyword_indices, dtype=np.intp)
        self.sample_rate = int(self.frontend.config.sample_rate)
        self.hop_s = self.frontend.config.hop_length / self.sample_rate
        self.window_s = self.frontend.config.win_length / self.sample_rate

    def create_stream(self) -> KeywordStream:
        return KeywordStream(self)

    def create_batch(self, n: int) -> KeywordBatch:
        """``n`` audio streams whose model steps run together (one batch push per chunk for all of them)."""
        return KeywordBatch(self, n)

    def detect(self, audio: np.ndarray | Iterable[np.ndarray], chunk_seconds: float = CHUNK_SECONDS,
               timings: list[float] | None = None) -> list[Detection]:
        """Every detection in a recording: ``audio`` is one PCM array (fed in ``chunk_seconds`` pieces, as a
        microphone would deliver it) or an iterable of PCM chunks. With a ``timings`` list, the processing time of
        each chunk (frontend + model + detection, seconds) is appended to it."""
        if isinstance(audio, np.ndarray):
            step = max(int(self.sample_rate * chunk_seconds), 1)
            chunks: Iterable[np.ndarray] = (audio[start:start + step] for start in range(0, len(audio), step))
        else:
            chunks = audio
        stream = self.create_stream()
        detections: list[Detection] = []
        clock = time.perf_counter
        for chunk in chunks:
            began = clock()
            detections.extend(stream.push(chunk))
            if timings is not None:
                timings.append(clock() - began)
        detections.extend(stream.flush())
        return detections


class KeywordStream:
    """One audio stream: push PCM chunks (16 kHz mono int16 or float), get the detections completed so far."""

    def __init__(self, spotter: KeywordSpotter, own_model_stream: bool = True) -> None:
        """``own_model_stream`` False: the model runs elsewhere (a ``KeywordBatch`` slot); this stream keeps the
        frontend and the detector."""
        self.spotter = spotter
        self.features = spotter.frontend.create_stream()
        self.model_stream = (None if spotter.model is None or not own_model_stream
                             else spotter.model.create_stream())
        self.reset()

    def reset(self) -> None:
        self.features.reset()
        if self.model_stream is not None:
            self.model_stream.reset()
        config = self.spotter.config
        lookback = int(round(config.lookback_s / self.spotter.hop_s)) + 1
        self._history: deque[np.ndarray] = deque(maxlen=max(lookback, config.smoothing_frames))
        self._window_sum = np.zeros(len(self.spotter.labels))
        self._tail = np.zeros((0, len(self.spotter.labels)))  # the last smoothing_frames rows (fewer at the start)
        self._frame = 0
        self._open: dict[str, Any] | None = None
        self._quiet_until = -1

    def _time(self, frame: int) -> float:
        return frame * self.spotter.hop_s + self.spotter.window_s

    def push(self, pcm: np.ndarray) -> list[Detection]:
        if self.model_stream is None:
            raise LstmEdgeError("this keyword spotter has no model: push posteriors (push_posteriors), not audio")
        frames = self.features.push(pcm)
        if frames.shape[0] == 0:
            return []
        return self._consume(softmax(self.model_stream.push(frames).astype(np.float64)))

    def push_posteriors(self, posteriors: np.ndarray) -> list[Detection]:
        """Run the detector on per-frame posteriors [T, labels] computed elsewhere (the model's softmax), as
        ``push`` does after the model; used to sweep detector settings over one model pass."""
        posteriors = np.asarray(posteriors, dtype=np.float64)
        if posteriors.ndim != 2 or posteriors.shape[1] != len(self.spotter.labels):
            raise InputError(expected_got("posteriors", f"[T, {len(self.spotter.labels)}]", posteriors.shape))
        return self._consume(posteriors)

    def flush(self) -> list[Detection]:
        """Close a detection still open at the end of the audio."""
        if self._open is None:
            return []
        return [self._close(self._frame - 1)]

    def _consume(self, posteriors: np.ndarray) -> list[Detection]:
        spotter, config = self.spotter, self.spotter.config
        frames = len(posteriors)
        if frames == 0:
            return []
        smoothed = self._smoothed(posteriors)
        keywords = spotter.keyword_array
        if keywords.size == 0:  # no keyword labels: nothing to detect
            self._history.extend(posteriors)
            self._frame += frames
            return []
        best = keywords[np.argmax(smoothed[:, keywords], axis=1)].tolist()  # the first of a tie, as max() gives
        values = smoothed.tolist()
        detections = []
        history = self._history
        threshold, hop, max_event = config.threshold, spotter.hop_s, config.max_event_s
        for t in range(frames):
            history.append(posteriors[t])
            frame = self._frame
            self._frame += 1
            row = values[t]
            if self._open is not None:
                event = self._open
                score = row[event["index"]]
                if score > event["score"]:
                    event["score"] = score
                if score < threshold or (frame - event["opened"]) * hop >= max_event:
                    detections.append(self._close(frame))
                continue
            if frame < self._quiet_until:
                continue
            index = best[t]
            if row[index] >= threshold:
                self._open = {"index": index, "opened": frame, "score": row[index], "onset": self._onset(index, frame)}
        return detections

    def _smoothed(self, posteriors: np.ndarray) -> np.ndarray:
        """The moving average of the last ``smoothing_frames`` rows at each frame of ``posteriors`` (fewer at the
        start), and the running window sum carried to the next chunk. The sum is the same float64 sequence a frame
        loop computes, sum - leaving row + new row, with the additions in that order: one sequential accumulate
        over the interleaved steps (a - b is a + (-b) exactly; a frame with no leaving row adds -0.0)."""
        window = self.spotter.config.smoothing_frames
        frames, seen = len(posteriors), self._frame
        kept = len(self._tail)  # the window's rows from earlier chunks: min(seen, window)
        rows = np.concatenate([self._tail, posteriors])
        leaving = np.arange(frames) + kept - window  # row of `rows` leaving the window at each frame
        steps = np.empty((2 * frames + 1, posteriors.shape[1]))
        steps[0] = self._window_sum
        steps[1::2] = np.where((leaving >= 0)[:, None], -rows[np.maximum(leaving, 0)], -0.0)
        steps[2::2] = posteriors
        sums = np.add.accumulate(steps, axis=0)[2::2]
        self._window_sum = sums[-1].copy()
        self._tail = rows[-window:].copy()
        return sums / np.minimum(seen + 1 + np.arange(frames), window)[:, None]

    def _onset(self, index: int, frame: int) -> int:
        """The first frame of the run (within the look-back) where this keyword's raw posterior was raised."""
        level = self.spotter.config.onset_level
        onset = frame
        for back, row in enumerate(reversed(self._history)):
            if row[index] < level:
                break
            onset = frame - back
        return onset

    def _close(self, frame: int) -> Detection:
        event, self._open = self._open, None
        if event is None:
            raise LstmEdgeError("internal: a detection was closed that was never opened")
        spotter = self.spotter
        self._quiet_until = frame + int(round(spotter.config.refractory_s / spotter.hop_s))
        start = max(self._time(event["onset"]) - spotter.window_s, 0.0)
        return Detection(spotter.labels[event["index"]], start, self._time(frame), event["score"])


class KeywordBatch:
    """Many audio streams of one keyword spotter, their model steps pushed together (``StreamBatch``): a hub with
    several microphones, a server with many lines. Each slot has its own frontend and detector; the detections are
    those of separate ``KeywordStream``s (bitwise the same model outputs on the native backend).

    ``push`` takes one PCM chunk per active slot (a sequence in ``active`` order, or ``{slot: pcm}``); chunks may
    differ in length (one model push per frame count). A slot whose audio is refused raises ``BatchPushError`` after
    the others ran (its ``outputs`` then hold their detections)."""

    def __init__(self, spotter: KeywordSpotter, n: int) -> None:
        if spotter.model is None:
            raise LstmEdgeError("this keyword spotter has no model: a batch needs one")
        self.spotter = spotter
        self.batch = spotter.model.create_batch(0)
        self._detectors: dict[int, KeywordStream] = {}
        for _ in range(n):
            self.join()

    @property
    def active(self) -> tuple[int, ...]:
        return self.batch.active

    def join(self) -> int:
        """A new audio stream; returns its slot."""
        slot = self.batch.join()
        self._detectors[slot] = KeywordStream(self.spotter, own_model_stream=False)
        return slot

    def leave(self, slot: int) -> list[Detection]:
        """End the stream in ``slot``; returns the detection it still had open (as ``flush``)."""
        self.batch.leave(slot)
        return self._detectors.pop(slot).flush()

    def reset(self, slot: int) -> None:
        self.batch.reset(slot)
        self._detectors[slot].reset()

    def push(self, pcm: Sequence[np.ndarray] | Mapping[int, np.ndarray]
             ) -> list[list[Detection]] | dict[int, list[Detection]]:
        from lstm_edge.runtime.batch import BatchPushError, chunks_by_slot, push_by_length

        keyed = isinstance(pcm, Mapping)
        chunks = chunks_by_slot(pcm, self.batch.active, self._detectors)  # all checked before any stream moves
        computed, errors = self.spotter.frontend.push_many(
            {slot: (self._detectors[slot].features, samples) for slot, samples in chunks.items()})
        features = {slot: frames for slot, frames in computed.items() if frames.shape[0]}
        outputs, failed = push_by_length(self.batch, features)
        errors.update(failed)
        detections: dict[int, list[Detection]] = {slot: [] for slot in chunks if slot not in errors}
        for slot, logits in outputs.items():
            detections[slot] = self._detectors[slot]._consume(softmax(logits.astype(np.float64)))
        if errors:
            raise BatchPushError(errors, detections)  # type: ignore[arg-type]
        return detections if keyed else [detections[slot] for slot in chunks]

    def flush(self) -> dict[int, list[Detection]]:
        """Close the detections still open in every slot (end of the audio)."""
        return {slot: detector.flush() for slot, detector in self._detectors.items()}
