"""``StreamingModel``: a loaded model directory. Stateless and shareable; streams own their state."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lstm_edge.runtime import backends
from lstm_edge.runtime.errors import BackendUnavailableError, InputError, expected_got
from lstm_edge.runtime.manifest import PRECISIONS, TIME, Manifest, check_file
from lstm_edge.runtime.state import State
from lstm_edge.runtime.values import nonfinite_count, require_finite_chunk, require_finite_result

if TYPE_CHECKING:
    from lstm_edge.runtime.batch import BatchEngine, StreamBatch
    from lstm_edge.runtime.stream import Stream, StreamEngine

__all__ = ["StreamingModel", "State"]


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
        self._is_ids = spec.dtype == "int64"
        self._value_range = spec.value_range
        # Shape of one pushed chunk (no batch dim); None marks the time axis.
        self._chunk_shape: tuple[int | None, ...] = tuple(None if d == TIME else int(d) for d in spec.shape[1:])
        # Fast path of check_chunk: a float32 array whose non-time dims already match.
        self._float32 = np.dtype(np.float32)
        self._scan_input = not backend.checks_input_finite
        self._scan_result = not backend.checks_result_finite
        self._fast_shape = (tuple(d for d in self._chunk_shape[1:]) if self._chunk_shape[:1] == (None,)
                            and None not in self._chunk_shape[1:] and not self._is_ids else None)
        self._state_specs = manifest.states
        self._names = tuple(s.name for s in manifest.states)
        self._initial = tuple(s.initial_value() for s in manifest.states)
        self._run = backend.run

    # ----------------------------------------------------------------- loading
    @classmethod
    def load(cls, model_dir: str | Path, backend: str | None = None, precision: str = "float",
             threads: int = 1, preference: tuple[str, ...] = backends.PREFERENCE) -> StreamingModel:
        """Load ``model_dir`` on ``backend`` (a name from ``lstm_edge.runtime.backends.NAMES``, or None to pick the
        first installed engine in ``preference`` order that has a file at this precision).

        The manifest's schema version and the model file's sha256 are checked here.
        """
        model_dir = Path(model_dir)
        manifest = Manifest.load(model_dir)
        if precision not in PRECISIONS:
            raise InputError(expected_got("precision", f"one of {PRECISIONS}", repr(precision)))
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
            raise InputError(expected_got("threads", "a positive integer", repr(threads)))
        name = backend if backend is not None else _pick_backend(manifest, precision, preference)
        entry = manifest.file(backends.info(name).format, precision)
        check_file(model_dir, entry)
        return cls(model_dir, manifest, backends.open_backend(name, model_dir, manifest, entry, threads), precision)

    # ------------------------------------------------------------ properties
    @property
    def labels(self) -> tuple[str, ...] | None:
        return self.manifest.labels

    @property
    def state_names(self) -> tuple[str, ...]:
        return self._names

    @property
    def counts_frames(self) -> bool:
        """True when inputs have a time axis (a push of T frames advances the stream by T); step models: False."""
        return self._chunk_shape[:1] == (None,)

    def initial_state(self) -> State:
        """A fresh copy of the initial state (zeros or the learned values), by name."""
        return State(self._names, [value.copy() for value in self._initial], self)

    def create_stream(self) -> Stream:
        from lstm_edge.runtime.stream import Stream

        return Stream(self)

    def create_batch(self, n: int) -> StreamBatch:
        """``n`` independent streams pushed together (slots ``0 .. n-1``; see ``lstm_edge.runtime.batch``)."""
        from lstm_edge.runtime.batch import StreamBatch

        return StreamBatch(self, n)

    def describe(self) -> str:
        return f"{self.manifest.name} on {self.backend} ({self.engine}), {self.precision}"

    # ------------------------------------------------------------------ step
    def step(self, x: object, state: Mapping[str, np.ndarray]) -> tuple[np.ndarray, State]:
        """Run one chunk: ``x`` without the batch dim, ``state`` by name. Returns ``(y, new_state)``.

        Pure: nothing is kept between calls. ``y`` has no batch dim either. A chunk that holds NaN/inf, or whose
        output or new state would (the graph overflowed), raises and leaves ``state`` as it was.
        """
        batched = self.check_frames(x)[np.newaxis]
        values = state.ordered if type(state) is State and state.origin is self else self.check_state(state)
        y, new_values = self._run(batched, values)
        if self._scan_result:
            require_finite_result(y, new_values, self._names)
        return y[0], State(self._names, new_values, self)

    @property
    def fast_frame_shape(self) -> tuple[int, ...] | None:
        """The frame shape of a chunk that ``check_frames`` passes through untouched (float32 ``[T, *shape]``) when
        the backend refuses NaN/inf itself; None when chunks are always converted or scanned in Python."""
        if self._scan_input or self._fast_shape is None:
            return None
        return tuple(int(d) for d in self._fast_shape if d is not None)

    def open_stream_engine(self) -> StreamEngine:
        """The engine of one new ``Stream``: the backend's own stateful stream when it has one (the native backend:
        the C stream keeps the state), else a ``StepEngine`` over this model's pure ``step``."""
        opener = getattr(self._backend, "open_stream", None)
        if opener is not None:
            return opener(self)
        from lstm_edge.runtime.stream import StepEngine

        return StepEngine(self)

    def open_batch_engine(self) -> BatchEngine:
        """The engine of one new ``StreamBatch``: the backend's own when it batches (the native backend: one C call
        for all slots; ONNX with a batch axis: one graph call), else a ``StepBatchEngine`` running the slots one by
        one through ``step``."""
        opener = getattr(self._backend, "open_batch", None)
        engine = opener(self) if opener is not None else None
        if engine is not None:
            return engine
        from lstm_edge.runtime.batch import StepBatchEngine

        return StepBatchEngine(self)

    # ------------------------------------------------------------ validation
    def check_chunk(self, x: object) -> np.ndarray:
        """Validate one pushed chunk and return it batched, in the graph's dtype."""
        return self.check_frames(x)[np.newaxis]

    def check_frames(self, x: object) -> np.ndarray:
        """Validate one pushed chunk and return it without the batch dim, in the graph's dtype."""
        if (type(x) is np.ndarray and x.dtype == self._float32 and x.shape[1:] == self._fast_shape
                and x.ndim == len(self._chunk_shape) and x.shape[0] > 0):
            if self._scan_input:
                require_finite_chunk(x)
            return x  # else the graph reports NaN/inf itself, before any state is kept
        return self._check_frames_slow(x)

    def _check_frames_slow(self, x: object) -> np.ndarray:
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
                x = _to_float32(x, "chunk values")
            if self._scan_input:
                require_finite_chunk(x)
        return x

    def check_state(self, state: object) -> tuple[np.ndarray, ...]:
        """Validate a caller's state (a mapping by name) and return its values in manifest order, as copies in the
        manifest's dtypes. Refuses missing or extra names, wrong shapes, non-numbers, NaN/inf and values that do not
        fit the dtype (1e300 does not fit float32)."""
        if not isinstance(state, Mapping):
            raise InputError(expected_got("state", f"a mapping of {list(self._names)} to arrays",
                                          type(state).__name__))
        if set(state) != set(self._names):
            raise InputError(expected_got("state names", sorted(self._names), sorted(map(str, state))))
        return tuple(_state_value(spec.name, spec.dtype, spec.shape, state[spec.name]) for spec in self._state_specs)


def _to_float32(x: np.ndarray, what: str) -> np.ndarray:
    """Cast float64/float16 values to float32, refusing finite values that do not fit (they would become inf)."""
    with np.errstate(over="ignore"):
        converted = x.astype(np.float32)
    if x.dtype.itemsize > 4 and np.isfinite(x).all() and not np.isfinite(converted).all():
        raise InputError(expected_got(what, "values within float32 range (|x| < 3.4e38)",
                                      f"max |x| = {float(np.abs(x).max()):.3g}"))
    return converted


def _state_value(name: str, dtype: str, shape: tuple[int, ...], value: object) -> np.ndarray:
    where = f"state {name!r}"
    if not isinstance(value, np.ndarray):
        if value is None or isinstance(value, (str, bytes)):
            raise InputError(expected_got(where, f"a {dtype} array of shape {list(shape)}", type(value).__name__))
        try:
            value = np.asarray(value)
        except Exception:
            raise InputError(expected_got(where, f"a {dtype} array of shape {list(shape)}",
                                          type(value).__name__)) from None
    if value.dtype.kind not in "fiu":
        raise InputError(expected_got(where, f"a {dtype} array of shape {list(shape)}", f"{value.dtype} values"))
    if tuple(value.shape) != shape:
        raise InputError(expected_got(where, f"{dtype}{list(shape)}", f"{value.dtype}{list(value.shape)}"))
    if value.dtype.kind == "f" and nonfinite_count(value):
        raise InputError(expected_got(where, "finite numbers", f"{nonfinite_count(value)} NaN/inf values"))
    if dtype == "float32":
        return _to_float32(value, where) if value.dtype != np.float32 else value.copy()
    converted = value.astype(dtype)
    if not np.array_equal(converted, value):
        raise InputError(expected_got(where, f"values that fit {dtype}", f"{value.dtype} values that do not"))
    return converted


def _shape_text(shape: tuple[int | None, ...]) -> str:
    return "[" + ", ".join("T" if d is None else str(d) for d in shape) + "]"


def _pick_backend(manifest: Manifest, precision: str, preference: tuple[str, ...] = backends.PREFERENCE) -> str:
    """The first installed engine (in ``preference`` order) that has a file at this precision."""
    tried = []
    for name in preference:
        fmt = backends.info(name).format
        if not manifest.has_file(fmt, precision):
            tried.append(f"{name}: no {fmt} file at {precision}")
            continue
        if not backends.engine_available(name):
            tried.append(f"{name}: engine not installed")
            continue
        return name
    hints = " or ".join(f"{backends.info(name).install_hint}" for name in backends.PREFERENCE)
    raise BackendUnavailableError("no backend can load this model: " + "; ".join(tried)
                                  + f". Install an engine: {hints}")
