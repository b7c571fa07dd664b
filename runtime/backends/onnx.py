"""ONNX backend on onnxruntime: one session per model, shared by every stream (``session.run`` is thread-safe).

Graphs have a dynamic time axis, so one call covers any ``T``; a float graph whose manifest entry says
``"batch": "any"`` also takes many streams in one call (``StreamBatch``, see ``runtime.batch``). Graphs with a
check output (the manifest file entry's ``checks``, see ``runtime.values.GraphCheck``) report NaN/inf in the chunk,
the output and the new state in the same call, so the runtime does not scan them in Python.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lstm_edge.runtime.backends import REGISTRY, release_of
from lstm_edge.runtime.errors import BackendUnavailableError, LstmEdgeError, ModelFileError
from lstm_edge.runtime.manifest import Manifest, ModelFile
from lstm_edge.runtime.values import GraphCheck

INFO = REGISTRY["onnx"]
# ``InferenceSession.run`` re-validates the feed's names on every call (~2-3 us here); they are checked once at
# load, so on the onnxruntime releases this was measured on, call the session object underneath it instead.
# Outside this range the public ``run`` is used; tests run both paths.
FAST_PATH_VERSIONS = ((1, 17), (1, 32))


def available() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None


def _import_ort() -> Any:
    try:
        import onnxruntime
    except ImportError as err:
        raise BackendUnavailableError(f"backend 'onnx' needs onnxruntime, which is not installed ({err}); "
                                      f"install it with: {INFO.install_hint}") from None
    return onnxruntime


class OnnxBackend:
    name = INFO.name

    def __init__(self, path: Path, manifest: Manifest, threads: int, checks: Mapping[str, str] | None = None,
                 fast_path: bool = True, batch: str | None = None) -> None:
        ort = _import_ort()
        self.engine = f"onnxruntime {ort.__version__}"
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types for unreadable graphs
            raise ModelFileError(f"{path}: onnxruntime cannot load this file: {err}") from None
        self._input = manifest.input.name
        self._state_inputs = [s.input for s in manifest.states]
        self._outputs = [manifest.output.name] + [s.output for s in manifest.states]
        graph_inputs = {i.name for i in session.get_inputs()}
        graph_outputs = {o.name for o in session.get_outputs()}
        missing = ({self._input, *self._state_inputs} - graph_inputs) | (set(self._outputs) - graph_outputs)
        if missing:
            raise ModelFileError(f"{path}: graph does not match the manifest: names {sorted(missing)} are missing "
                                 f"(graph inputs {sorted(graph_inputs)}, outputs {sorted(graph_outputs)})")
        self._state_names = [s.name for s in manifest.states]
        axes = [s.batch_axis for s in manifest.states]
        # the graph's batch axis (manifest file entry "batch": "any", every state's batch_axis), or None
        self._batch_axes: list[int] | None = axes if batch == "any" and None not in axes else None  # type: ignore
        self._check = GraphCheck.from_checks(checks)
        self.checks_input_finite = self._check is not None
        self.checks_result_finite = self._check is not None and self._check.covers_result
        if self._check is not None:
            if self._check.output not in graph_outputs:
                raise ModelFileError(f"{path}: the manifest names a check output {self._check.output!r} the "
                                     "graph lacks")
            self._outputs.append(self._check.output)
        self.fast_path = fast_path and FAST_PATH_VERSIONS[0] <= release_of(ort.__version__) <= FAST_PATH_VERSIONS[1]
        self._call: Callable[[list[str], dict[str, np.ndarray]], list[np.ndarray]] = session.run
        if self.fast_path:
            inner_run = session._sess.run  # the C++ session that InferenceSession.run calls after validating names

            def call(names: list[str], feed: dict[str, np.ndarray]) -> list[np.ndarray]:
                return inner_run(names, feed, None)

            self._call = call

    def open_batch(self, model: Any) -> Any:
        """A ``GraphBatchEngine`` when the file has a batch axis (one call for all slots), else None."""
        if self._batch_axes is None:
            return None
        from lstm_edge.runtime.batch import GraphBatchEngine

        return GraphBatchEngine(model, self.run, self._batch_axes)

    def run(self, x: np.ndarray, states: Sequence[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        feed = dict(zip(self._state_inputs, states))
        feed[self._input] = x
        try:
            outputs = self._call(self._outputs, feed)
        except Exception as err:
            raise LstmEdgeError(f"onnxruntime failed on a chunk of shape {x.shape}: {err}") from None
        if self._check is not None:
            states_out = outputs[1:-1]
            self._check.verify(outputs[-1], x, outputs[0], states_out, self._state_names)
            return outputs[0], states_out
        return outputs[0], outputs[1:]


def open(model_dir: Path, manifest: Manifest, entry: ModelFile, threads: int) -> OnnxBackend:
    return OnnxBackend(Path(model_dir) / entry.path, manifest, threads, dict(entry.checks or {}),
                       batch=entry.batch)
