"""Calibration feeds recorded while state is carried, so the quantizer sees the state values a stream really has."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from lstm_edge.quantize.config import QuantizeConfig
from lstm_edge.runtime.backends import REGISTRY
from lstm_edge.runtime.errors import InputError, QuantizationError, expected_got
from lstm_edge.runtime.manifest import Manifest
from lstm_edge.runtime.model import StreamingModel

Feed = dict[str, np.ndarray]


def check_sequences(calibration: Iterable[np.ndarray], manifest: Manifest, min_frames: int) -> list[np.ndarray]:
    """The calibration items as arrays, after checking each has the model's input layout (no batch dim) and that
    together they hold at least ``min_frames`` frames (steps, for step models)."""
    spec = manifest.input
    frame_shape = tuple(spec.shape[2:]) if manifest.kind == "sequence" else tuple(spec.shape[1:])
    is_ids = spec.dtype == "int64"
    sequences = []
    for index, item in enumerate(calibration):
        array = np.asarray(item)
        if array.ndim != len(frame_shape) + 1 or tuple(array.shape[1:]) != frame_shape:
            layout = "[" + ", ".join(["T", *(str(d) for d in frame_shape)]) + "]"
            raise InputError(expected_got(f"calibration item {index} shape", f"{layout} (model input without the "
                                          "batch dim; audio must go through the frontend first)", list(array.shape)))
        if (array.dtype.kind in "iu") != is_ids or array.dtype.kind not in "iuf":
            raise InputError(expected_got(f"calibration item {index} dtype", spec.dtype, array.dtype))
        sequences.append(array.astype(spec.dtype))
    if not sequences:
        raise InputError(expected_got("calibration", "at least one input sequence", "an empty iterable"))
    total = sum(len(s) for s in sequences)
    if total < min_frames:
        raise InputError(expected_got("calibration length", f"at least {min_frames} frames in total (a few hundred "
                                      "utterances of training-like data is the guidance)", f"{total} frames in "
                                      f"{len(sequences)} sequences"))
    return sequences


class Calibration:
    """Checked calibration sequences of one model directory, and the graph feeds they give per chunk length."""

    def __init__(self, model_dir: Path, sequences: list[np.ndarray], config: QuantizeConfig) -> None:
        self.model_dir = model_dir
        self.sequences = sequences
        self.config = config
        self._feeds: dict[int, list[Feed]] = {}

    @classmethod
    def from_sequences(cls, model_dir: Path, calibration: Iterable[np.ndarray],
                       config: QuantizeConfig) -> Calibration:
        manifest = Manifest.load(model_dir)
        return cls(model_dir, check_sequences(calibration, manifest, config.min_calibration_frames), config)

    def feeds(self, length: int) -> list[Feed]:
        """Graph feeds (batched input chunk of ``length`` frames and the state entering it, by input name)."""
        if length not in self._feeds:
            self._feeds[length] = record_feeds(self.model_dir, self.sequences, length,
                                               self.config.max_calibration_feeds)
        return self._feeds[length]


def record_feeds(model_dir: Path, sequences: list[np.ndarray], length: int, max_feeds: int) -> list[Feed]:
    """Stream each sequence through the float model (state carried) in chunks of ``length`` and record the feeds.
    Step models record one feed per step."""
    manifest = Manifest.load(model_dir)
    backend = next(r.name for r in REGISTRY.values() if manifest.has_file(r.format, "float"))
    model = StreamingModel.load(model_dir, backend=backend)
    collected: list[Feed] = []
    for sequence in sequences:
        state = model.initial_state()
        if manifest.kind == "step":
            chunks = [sequence[i] for i in range(len(sequence))]
        else:
            chunks = [sequence[i:i + length] for i in range(0, len(sequence) - length + 1, length)]
        for chunk in chunks:
            feed = {manifest.input.name: model.check_chunk(chunk),
                    **{spec.input: state[spec.name].copy() for spec in manifest.states}}
            collected.append(feed)
            _, state = model.step(chunk, state)
    if not collected:
        longest = max(len(s) for s in sequences)
        raise QuantizationError(expected_got("calibration sequences", f"at least one of {length} frames or more "
                                             "(a chunk size of the file)", f"the longest has {longest}"))
    if len(collected) > max_feeds:  # keep an even spread over time, so late-stream states are represented
        picks = np.linspace(0, len(collected) - 1, max_feeds).round().astype(int)
        collected = [collected[i] for i in picks]
    return collected
