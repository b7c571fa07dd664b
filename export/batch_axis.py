"""A batch axis for the float ONNX graph: many streams per call (``StreamBatch`` on the ONNX backend).

The exported graph is traced with one stream (the state tensors' batch dimension is 1). Most streaming graphs
(fused LSTM/GRU ops, MatMul, elementwise layers) compute each batch row on its own, so declaring the batch
dimensions symbolic ("B") lets onnxruntime run N streams in one call. This is checked, not assumed: the graph is
run with three streams and with each stream alone, and the axis is declared only when every output and state
matches (within 1e-6). Then the manifest's file entry gets ``"batch": "any"`` and each state its ``batch_axis``.

The int8 ONNX file (``quantize_dynamic``) keeps batch 1: its activations are quantized with one scale per tensor,
so streams sharing a call would change each other's results.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx

from lstm_edge.runtime.manifest import MANIFEST_NAME, Manifest, StateSpec, sha256_of

BATCH = "B"
CHECK_STREAMS = 3
CHECK_FRAMES = 5
TOLERANCE = 1e-6


def state_batch_axis(spec: StateSpec) -> int | None:
    """Where a state keeps its stream: recurrent layers' h/c are (layers x batch x size), axis 1; a convolution's
    context has the batch first. None when no axis of size 1 is where it should be."""
    axis = 1 if "layers x batch" in spec.source and len(spec.shape) >= 3 else 0
    return axis if spec.shape[axis] == 1 else None


def declare_onnx_batch(model_dir: str | Path) -> Manifest:
    """Declare the batch axis of the directory's float ONNX file when the graph computes each stream on its own
    (see the module's docstring); returns the (saved) manifest, unchanged when the graph has no such axis."""
    model_dir = Path(model_dir)
    manifest = Manifest.load(model_dir)
    if not manifest.has_file("onnx", "float") or manifest.kind != "sequence" or not manifest.states:
        return manifest
    entry = manifest.file("onnx", "float")
    if entry.batch is not None:
        return manifest
    axes = [state_batch_axis(spec) for spec in manifest.states]
    if None in axes:
        return manifest
    path = model_dir / entry.path
    graph = onnx.load(str(path))
    batched = _with_batch_dims(graph, manifest, axes)  # type: ignore[arg-type]
    if batched is None or not _streams_independent(batched, graph, manifest, axes):  # type: ignore[arg-type]
        return manifest
    path.write_bytes(batched.SerializeToString())
    # Only these fields change: the rest of manifest.json stays as written (no defaults filled in by a round trip).
    raw = json.loads((model_dir / MANIFEST_NAME).read_text(encoding="utf-8"))
    for state, axis in zip(raw["states"], axes):
        state["batch_axis"] = axis
    for record in raw["files"]:
        if record["format"] == "onnx" and record["precision"] == "float":
            record.update(sha256=sha256_of(path), bytes=path.stat().st_size, batch="any")
    (model_dir / MANIFEST_NAME).write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
    return Manifest.load(model_dir)


def _with_batch_dims(graph: onnx.ModelProto, manifest: Manifest, axes: list[int]) -> onnx.ModelProto | None:
    batched = onnx.ModelProto()
    batched.CopyFrom(graph)
    where = {manifest.input.name: 0, manifest.output.name: 0}
    for spec, axis in zip(manifest.states, axes):
        where[spec.input] = axis
        where[spec.output] = axis
    for value in [*batched.graph.input, *batched.graph.output]:
        if value.name not in where:
            continue
        dims = value.type.tensor_type.shape.dim
        axis = where.pop(value.name)
        if axis >= len(dims) or dims[axis].dim_value != 1:
            return None
        dims[axis].ClearField("dim_value")
        dims[axis].dim_param = BATCH
    if where:
        return None
    del batched.graph.value_info[:]  # intermediate shapes were inferred with batch 1
    try:
        onnx.checker.check_model(batched, full_check=True)
    except Exception:
        return None
    return batched


def _streams_independent(batched: onnx.ModelProto, graph: onnx.ModelProto, manifest: Manifest,
                         axes: list[int]) -> bool:
    import onnxruntime as ort

    spec = manifest.input
    x, states = random_streams(manifest, axes, CHECK_STREAMS, CHECK_FRAMES, np.random.default_rng(0))
    names = [manifest.output.name, *(s.output for s in manifest.states)]
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    try:
        together = ort.InferenceSession(batched.SerializeToString(), options, providers=["CPUExecutionProvider"])
        alone = ort.InferenceSession(graph.SerializeToString(), options, providers=["CPUExecutionProvider"])
        feed = {spec.name: x, **{s.input: v for s, v in zip(manifest.states, states)}}
        all_out = together.run(names, feed)
        for k in range(CHECK_STREAMS):
            one = {spec.name: x[k:k + 1], **{s.input: np.take(v, [k], axis=a)
                                             for s, v, a in zip(manifest.states, states, axes)}}
            if not stream_matches(all_out, alone.run(names, one), k, axes):
                return False
    except Exception:
        return False
    return True


def random_streams(manifest: Manifest, axes: list[int], streams: int, frames: int, rng: np.random.Generator
                   ) -> tuple[np.ndarray, list[np.ndarray]]:
    """Random input for ``streams`` streams of ``frames`` frames, and random states joined along their batch axes
    (the checks of a batch axis and of TFLite batch signatures)."""
    spec = manifest.input
    frame = [int(d) for d in spec.shape[2:]]
    if spec.dtype == "int64":
        low, high = spec.value_range or (0, 2)
        x = rng.integers(low, high, (streams, frames, *frame)).astype(np.int64)
    else:
        x = rng.standard_normal((streams, frames, *frame)).astype(spec.dtype)
    states = []
    for state, axis in zip(manifest.states, axes):
        shape = list(state.shape)
        shape[axis] = streams
        states.append((0.5 * rng.standard_normal(shape)).astype(state.dtype))
    return x, states


def stream_matches(together: list[np.ndarray], alone: list[np.ndarray], k: int, axes: list[int]) -> bool:
    """Stream ``k``'s part of a batched run's results (the output, then the states on their batch axes) equals the
    results of its own run within TOLERANCE."""
    for index, value in enumerate(alone):
        got = np.take(together[index], [k], axis=0 if index == 0 else axes[index - 1])
        if got.shape != value.shape or not np.all(np.abs(got - value) <= TOLERANCE):
            return False
    return True
