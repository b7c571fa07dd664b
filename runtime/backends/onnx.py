"""ONNX backend on onnxruntime: one session per model, shared by every stream (``session.run`` is thread-safe)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Sequence

import numpy as np

from lstm_edge.runtime.errors import BackendUnavailableError, InputError, LstmEdgeError, ModelFileError, expected_got
from lstm_edge.runtime.manifest import Manifest, ModelFile

INSTALL = "pip install 'lstm-edge[onnx]'  (or: pip install onnxruntime)"


def available() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None


def _import_ort():
    try:
        import onnxruntime
    except ImportError as err:
        raise BackendUnavailableError(f"backend 'onnx' needs onnxruntime, which is not installed ({err}); "
                                      f"install it with: {INSTALL}") from None
    return onnxruntime


class OnnxBackend:
    name = "onnx"
    fixed_lengths = None
    checks_finite = False  # True when the graph itself reports non-finite input values

    def __init__(self, path: Path, manifest: Manifest, threads: int, checks: dict | None = None) -> None:
        ort = _import_ort()
        self.engine = f"onnxruntime {ort.__version__}"
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self._session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types for unreadable graphs
            raise ModelFileError(f"{path}: onnxruntime cannot load this file: {err}") from None
        self._input = manifest.input.name
        self._state_inputs = [s.input for s in manifest.states]
        self._outputs = [manifest.output.name] + [s.output for s in manifest.states]
        graph_inputs = {i.name for i in self._session.get_inputs()}
        graph_outputs = {o.name for o in self._session.get_outputs()}
        missing = ({self._input, *self._state_inputs} - graph_inputs) | (set(self._outputs) - graph_outputs)
        if missing:
            raise ModelFileError(f"{path}: graph does not match the manifest: names {sorted(missing)} are missing "
                                 f"(graph inputs {sorted(graph_inputs)}, outputs {sorted(graph_outputs)})")
        nonfinite = (checks or {}).get("nonfinite_input")
        if nonfinite is not None:
            if nonfinite not in graph_outputs:
                raise ModelFileError(f"{path}: the manifest names a check output {nonfinite!r} the graph lacks")
            self._outputs.append(nonfinite)
            self.checks_finite = True
        # InferenceSession.run re-validates the feed's names on every call; they were checked above, once.
        # Call the session underneath directly when this onnxruntime has it (the public run otherwise).
        inner = getattr(self._session, "_sess", None)
        if inner is not None and callable(getattr(inner, "run", None)):
            self._run = lambda names, feed, run=inner.run: run(names, feed, None)
        else:
            self._run = self._session.run

    def run(self, x: np.ndarray, states: Sequence[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        feed = dict(zip(self._state_inputs, states))
        feed[self._input] = x
        try:
            outputs = self._run(self._outputs, feed)
        except Exception as err:
            raise LstmEdgeError(f"onnxruntime failed on a chunk of shape {x.shape}: {err}") from None
        if self.checks_finite:
            if float(outputs[-1]) != 0.0:  # NaN when any input value is NaN or inf
                bad = int(np.size(x) - np.isfinite(x).sum())
                raise InputError(expected_got("chunk values", "finite numbers", f"{bad} NaN/inf values"))
            return outputs[0], outputs[1:-1]
        return outputs[0], outputs[1:]


def open(model_dir: Path, manifest: Manifest, entry: ModelFile, threads: int) -> OnnxBackend:
    return OnnxBackend(Path(model_dir) / entry.path, manifest, threads, dict(entry.checks or {}))
