"""Inference engines behind one small protocol.

A backend runs one exported graph call: ``run(x, states) -> (y, new_states)`` with ``x`` batched
(``[1, T, ...]``) and states in manifest order. ONNX graphs take any ``T``; TFLite files take the fixed
chunk lengths listed in ``fixed_lengths`` and the model composes longer inputs from them. Each backend imports
its engine lazily and, when the engine is missing, says how to install it. There is no fallback from one
backend to another.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from lstm_edge.runtime.manifest import Manifest, ModelFile

BACKENDS = {"onnx": "lstm_edge.runtime.backends.onnx", "litert": "lstm_edge.runtime.backends.litert"}
FORMAT_OF = {"onnx": "onnx", "litert": "tflite"}
BACKEND_OF = {fmt: name for name, fmt in FORMAT_OF.items()}
PREFERENCE = ("litert", "onnx")  # when the caller does not choose: LiteRT is the faster engine per call here


class Backend(Protocol):
    name: str  # "onnx" or "litert"
    engine: str  # the engine actually running, with its version, e.g. "onnxruntime 1.32.0"
    fixed_lengths: tuple[int, ...] | None  # None: any T per call

    def run(self, x: np.ndarray, states: Sequence[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        ...


def backend_module(name: str):
    if name not in BACKENDS:
        from lstm_edge.runtime.errors import InputError

        raise InputError(f"backend: expected one of {sorted(BACKENDS)} or None, got {name!r}")
    return importlib.import_module(BACKENDS[name])


def engine_available(name: str) -> bool:
    """True when the engine for backend ``name`` can be imported (without importing it for good)."""
    return backend_module(name).available()


def open_backend(name: str, model_dir: Path, manifest: Manifest, entry: ModelFile, threads: int) -> Backend:
    return backend_module(name).open(model_dir, manifest, entry, threads)
