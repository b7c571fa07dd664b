"""Calibration feeds recorded while state is carried, so the quantizer sees the state values a stream really has."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from lstm_edge.runtime.errors import InputError, QuantizationError
from lstm_edge.runtime.manifest import Manifest
from lstm_edge.runtime.model import StreamingModel

Feed = dict[str, np.ndarray]


def _sequences(calibration: Iterable[np.ndarray], manifest: Manifest) -> list[np.ndarray]:
    sequences = []
    for index, item in enumerate(calibration):
        array = np.asarray(item)
        if manifest.kind == "sequence":
            want = len(manifest.input.shape) - 1
            if array.ndim != want:
                raise InputError(f"calibration item {index}: expected a sequence without the batch dim "
                                 f"({want} dims), got shape {array.shape}")
        sequences.append(array)
    if not sequences:
        raise InputError("calibration: expected at least one input sequence, got an empty iterable")
    return sequences


def record_feeds(model_dir: Path, calibration: Iterable[np.ndarray], lengths: Iterable[int] | None,
                 max_feeds: int = 2000) -> dict[int, list[Feed]]:
    """Stream each calibration sequence through the float ONNX model (state carried) and record, per chunk length,
    the graph feeds (batched input chunk and the state entering it). Step models record one feed per step."""
    manifest = Manifest.load(model_dir)
    backend = "onnx" if manifest.has_file("onnx", "float") else "litert"
    model = StreamingModel.load(model_dir, backend=backend)
    sequences = _sequences(calibration, manifest)
    state_inputs = [s.input for s in manifest.states]
    feeds: dict[int, list[Feed]] = {}
    lengths = sorted(set(lengths or [1]), reverse=True)
    for length in lengths:
        collected: list[Feed] = []
        for sequence in sequences:
            state = model.initial_state()
            if manifest.kind == "step":
                chunks = [sequence[i] for i in range(len(sequence))]
            else:
                chunks = [sequence[i:i + length] for i in range(0, len(sequence) - length + 1, length)]
            for chunk in chunks:
                batched = model.check_chunk(chunk)
                feed = {manifest.input.name: batched, **dict(zip(state_inputs, (s.copy() for s in state.ordered)))}
                collected.append(feed)
                _, state = model.step(chunk, state)
        if not collected:
            raise QuantizationError(f"calibration: no sequence is at least {length} frames long")
        if len(collected) > max_feeds:  # keep an even spread over time, so late-stream states are represented
            picks = np.linspace(0, len(collected) - 1, max_feeds).round().astype(int)
            collected = [collected[i] for i in picks]
        feeds[length] = collected
    return feeds
