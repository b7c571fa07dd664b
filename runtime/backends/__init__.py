"""Inference engines behind one small protocol, and the one registry that names them.

A backend runs an exported graph on one chunk: ``run(x, states) -> (y, new_states)`` with ``x`` batched
(``[1, T, ...]``, any ``T >= 1``) and the state values in manifest order. How the engine covers ``T`` (ONNX: one
call with a dynamic time axis; LiteRT: the file's fixed-length signatures composed, 23 = 2 x 10 + 3 x 1) is the
backend's business. Each backend module imports its engine lazily and, when the engine is missing, says how to
install it. There is no fallback from one backend to another.

Adding a backend: write its module (``available()``, ``open(...)``, a class following ``Backend``) and add one
``BackendInfo`` record to ``REGISTRY``. Everything else (the CLI's choices, bundles, device profiles, benchmarks,
parity reports) reads the registry.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Protocol

import numpy as np

from lstm_edge.runtime.errors import InputError, expected_got
from lstm_edge.runtime.manifest import Manifest, ModelFile


@dataclass(frozen=True)
class BackendInfo:
    """What the rest of lstm-edge needs to know about one backend, in one place."""

    name: str  # the backend's name, as users pass it: backend="onnx"
    format: str  # the manifest file format it runs
    module: str  # the backend module (imported lazily)
    engine_import: str  # the engine's import name, for import-time measurements
    pip_package: str  # the engine's distribution on PyPI (what a device bundle downloads)
    extra: str  # the lstm-edge extra that installs it
    needs: str = ""  # what the backend needs instead of a PyPI engine (the native backend: a C compiler)

    @property
    def install_hint(self) -> str:
        if self.needs:
            return self.needs
        return f"pip install 'lstm-edge[{self.extra}]'  (or: pip install {self.pip_package})"


REGISTRY: dict[str, BackendInfo] = {
    "onnx": BackendInfo("onnx", "onnx", "lstm_edge.runtime.backends.onnx", "onnxruntime", "onnxruntime", "onnx"),
    "litert": BackendInfo("litert", "tflite", "lstm_edge.runtime.backends.litert", "ai_edge_litert.interpreter",
                          "ai-edge-litert", "litert"),
    "native": BackendInfo("native", "c", "lstm_edge.runtime.backends.native", "ctypes", "", "",
                          needs="a C compiler (cc, gcc or clang; $CC), used once to build lstm-edge's C library"),
}
NAMES = tuple(REGISTRY)
PREFERENCE = ("litert", "onnx", "native")  # when the caller does not choose: LiteRT is the faster engine per call here


class Backend(Protocol):
    """One loaded model file on one engine. Shared by every stream of a model: ``run`` keeps no state."""

    name: str  # the registry name
    engine: str  # the engine actually running, with its version, e.g. "onnxruntime 1.32.0"
    checks_input_finite: bool  # True: ``run`` itself refuses chunks holding NaN/inf (the caller need not scan)
    checks_result_finite: bool  # True: ``run`` itself refuses calls whose output or new state is not finite

    def run(self, x: np.ndarray, states: Sequence[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        ...


def info(name: str) -> BackendInfo:
    """The registry record of backend ``name`` (an InputError naming the choices otherwise)."""
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise InputError(expected_got("backend", f"one of {list(NAMES)} or None", repr(name))) from None


def for_format(fmt: str) -> BackendInfo:
    """The backend that runs files of format ``fmt``."""
    for record in REGISTRY.values():
        if record.format == fmt:
            return record
    raise InputError(expected_got("model format", f"one of {[r.format for r in REGISTRY.values()]}", repr(fmt)))


def release_of(version: str) -> tuple[int, int]:
    """(major, minor) of an engine's version string; (0, 0) when it cannot be read (no fast paths then)."""
    parts = version.split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return (0, 0)


def _module(name: str) -> ModuleType:
    return importlib.import_module(info(name).module)


def engine_available(name: str) -> bool:
    """True when the engine for backend ``name`` can be imported (without importing it for good)."""
    return bool(_module(name).available())


def open_backend(name: str, model_dir: Path, manifest: Manifest, entry: ModelFile, threads: int) -> Backend:
    return _module(name).open(model_dir, manifest, entry, threads)
