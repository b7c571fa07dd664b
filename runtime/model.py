"""``StreamingModel``: a loaded model directory. Stateless and shareable; streams own their state."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from lstm_edge.runtime import backends
from lstm_edge.runtime.errors import BackendUnavailableError, InputError, expected_got
from lstm_edge.runtime.manifest import PRECISIONS, Manifest, check_file

if TYPE_CHECKING:
    from lstm_edge.runtime.stream import Stream

State = tuple[np.ndarray, ...]


class StreamingModel:
    """A model directory loaded on one backend at one precision.

    It holds no recurrent state, so one model may serve many streams from many threads.
    ``step`` is the pure function underneath; ``create_stream`` gives a stateful convenience on top.
    """

    def __init__(self, model_dir: Path, manifest: Manifest, backend: backends.Backend, precision: str) -> None:
        self.model_dir = model_dir
        self.manifest = manifest
        self.precision = precision
        self._backend = backend
        self.backend: str = backend.name
        self.engine: str = backend.engine
        spec = manifest.input
        self._kind = manifest.kind
        self._input_name = spec.name
        self._is_ids = spec.dtype == "int64"
        self._value_range = spec.value_range
        self._time_axis = spec.time_axis
        # Shape of one pushed chunk (no batch dim); None marks the time axis.
        self._chunk_shape = tuple(None if d == "T" else d for d in spec.shape[1:])
        self._fixed = backend.fixed_lengths
        # Fast path of check_chunk: a float32 array whose non-time dims already match.
        self._float32 = np.dtype(np.float32)
        self._finite_checked_by_backend = bool(getattr(backend, "checks_finite", False))
        self._fast_shape = (tuple(d for d in self._chunk_shape[1:]) if self._chunk_shape[:1] == (None,)
                            and None not in self._chunk_shape[1:] and not self._is_ids else None)
        self._initial = manifest.initial_state()
        self._state_specs = manifest.states

    # ----------------------------------------------------------------- loading
    @classmethod
    def load(cls, model_dir: str | Path, backend: str | None = None, precision: str = "float",
             threads: int = 1) -> "StreamingModel":
        """Load ``model_dir`` on ``backend`` ("onnx", "litert", or None to pick an installed engine).

        The manifest's schema version and the model file's sha256 are checked here.
        """
        model_dir = Path(model_dir)
        manifest = Manifest.load(model_dir)
        if precision not in PRECISIONS:
            raise InputError(expected_got("precision", f"one of {PRECISIONS}", repr(precision)))
        if not isinstance(threads, int) or threads < 1:
            raise InputError(expected_got("threads", "a positive integer", repr(threads)))
        name = backend if backend is not None else _pick_backend(manifest, precision)
        backends.backend_module(name)  # rejects unknown names
        entry = manifest.file(backends.FORMAT_OF[name], precision)
        check_file(model_dir, entry)
        return cls(model_dir, manifest, backends.open_backend(name, model_dir, manifest, entry, threads), precision)

    # ------------------------------------------------------------ properties
    @property
    def labels(self) -> tuple[str, ...] | None:
        return self.manifest.labels

    @property
    def state_names(self) -> list[str]:
        return [s.name for s in self._state_specs]

    def initial_state(self) -> State:
        """A fresh copy of the initial state (zeros or the learned values), in manifest order."""
        return tuple(s.copy() for s in self._initial)

    def create_stream(self) -> "Stream":
        from lstm_edge.runtime.stream import Stream

        return Stream(self)

    def describe(self) -> str:
        return f"{self.manifest.name} on {self.backend} ({self.engine}), {self.precision}"

    # ------------------------------------------------------------------ step
    def step(self, x: np.ndarray, state: Sequence[np.ndarray]) -> tuple[np.ndarray, State]:
        """Run one chunk: ``x`` without the batch dim, ``state`` in manifest order. Returns (y, new_state).

        Pure: nothing is kept between calls. ``y`` has no batch dim either.
        """
        batched = self.check_chunk(x)
        self.check_state(state)
        y, new_state = self._run(batched, tuple(state))
        return y[0], new_state

    def _run(self, batched: np.ndarray, state: State) -> tuple[np.ndarray, State]:
        fixed = self._fixed
        if fixed is None or self._kind == "step":
            y, new_state = self._backend.run(batched, state)
            return y, tuple(new_state)
        return self._run_composed(batched, state, fixed)

    def _run_composed(self, batched: np.ndarray, state: State, lengths: tuple[int, ...]) -> tuple[np.ndarray, State]:
        """Cover T with the available fixed chunk lengths, largest first (23 = 2 x 10 + 3 x 1)."""
        total = batched.shape[1]
        pieces = []
        start = 0
        for length in lengths:  # sorted largest first by the backend
            while total - start >= length:
                y, state = self._backend.run(batched[:, start:start + length], state)
                pieces.append(y)
                start += length
        if start != total:  # unreachable while 1 is a chunk size (the exporter requires it)
            raise InputError(expected_got("chunk length", f"a sum of {lengths}", total))
        y = pieces[0] if len(pieces) == 1 else np.concatenate(pieces, axis=1)
        return y, tuple(state)

    # ------------------------------------------------------------ validation
    def check_chunk(self, x: object) -> np.ndarray:
        """Validate one pushed chunk and return it batched, in the graph's dtype."""
        if (type(x) is np.ndarray and x.dtype == self._float32 and x.shape[1:] == self._fast_shape
                and x.ndim == len(self._chunk_shape) and x.shape[0] > 0):
            if self._finite_checked_by_backend:
                return x[np.newaxis]  # the graph reports NaN/inf itself, before any state is kept
            flat = x.reshape(-1)
            energy = float(np.dot(flat, flat))  # NaN or inf in, NaN or inf out
            if energy - energy == 0.0 or np.isfinite(x).all():  # inf here may be an overflow of finite values
                return x[np.newaxis]
            bad = np.size(x) - int(np.isfinite(x).sum())
            raise InputError(expected_got("chunk values", "finite numbers", f"{bad} NaN/inf values"))
        return self._check_chunk_slow(x)

    def _check_chunk_slow(self, x: object) -> np.ndarray:
        if not isinstance(x, np.ndarray):
            try:
                x = np.asarray(x)
            except Exception:
                raise InputError(expected_got("chunk", "a numpy array", type(x).__name__)) from None
        shape = self._chunk_shape
        if x.ndim != len(shape):
            raise InputError(expected_got("chunk rank", f"{len(shape)} dims {_shape_text(shape)}",
                                          f"{x.ndim} dims {tuple(x.shape)}"))
        for axis, (want, have) in enumerate(zip(shape, x.shape)):
            if want is None:
                if have < 1:
                    raise InputError(expected_got("chunk length", "at least 1 frame", f"{have} (an empty chunk)"))
            elif want != have:
                raise InputError(expected_got(f"chunk shape (axis {axis})", _shape_text(shape), tuple(x.shape)))
        kind = x.dtype.kind
        if self._is_ids:
            if kind not in "iu":
                raise InputError(expected_got("chunk dtype", "integer token ids (int64)", x.dtype))
            if x.dtype != np.int64:
                x = x.astype(np.int64)
            low, high = self._value_range or (0, None)
            if x.min() < low or (high is not None and x.max() >= high):
                raise InputError(expected_got("token ids", f"values in [{low}, {high})",
                                              f"values in [{x.min()}, {x.max()}]"))
        else:
            if kind != "f":
                raise InputError(expected_got("chunk dtype", "float32 features", x.dtype))
            if x.dtype != np.float32:
                x = x.astype(np.float32)
            # One reduction catches NaN and inf (a finite sum of float32 features cannot overflow here).
            if not np.isfinite(np.add.reduce(x, axis=None)) and not np.isfinite(x).all():
                bad = np.size(x) - int(np.isfinite(x).sum())
                raise InputError(expected_got("chunk values", "finite numbers", f"{bad} NaN/inf values"))
        return x[np.newaxis]

    def check_state(self, state: Sequence[np.ndarray]) -> None:
        specs = self._state_specs
        if len(state) != len(specs):
            raise InputError(expected_got("state", f"{len(specs)} tensors {self.state_names}", f"{len(state)}"))
        for spec, value in zip(specs, state):
            if not isinstance(value, np.ndarray) or value.shape != spec.shape or value.dtype != spec.dtype:
                got = (f"{value.dtype}{list(value.shape)}" if isinstance(value, np.ndarray)
                       else type(value).__name__)
                raise InputError(expected_got(f"state {spec.name!r}", f"{spec.dtype}{list(spec.shape)}", got))


def _shape_text(shape: tuple[int | None, ...]) -> str:
    return "[" + ", ".join("T" if d is None else str(d) for d in shape) + "]"


def _pick_backend(manifest: Manifest, precision: str) -> str:
    """The first installed engine (in preference order) that has a file at this precision."""
    tried = []
    for name in backends.PREFERENCE:
        fmt = backends.FORMAT_OF[name]
        if not manifest.has_file(fmt, precision):
            tried.append(f"{name}: no {fmt} file at {precision}")
            continue
        if not backends.engine_available(name):
            tried.append(f"{name}: engine not installed")
            continue
        return name
    raise BackendUnavailableError("no backend can load this model: " + "; ".join(tried)
                                  + ". Install an engine: pip install 'lstm-edge[onnx]' or 'lstm-edge[litert]'")
