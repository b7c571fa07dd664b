"""Native backend: lstm-edge's own C library (``runtime/native/lstm_edge_model.c``) through ctypes.

The library is compiled on first use into a per-user cache (``runtime.native_build``); it reads the directory's C
weight file (``model.lec`` / ``model.int8.lec``). One C model per loaded file, shared by every stream; the C
scratch streams (no allocation per call) come from a small pool, one per concurrent call, so ``run`` stays pure
and thread-safe. The C code refuses NaN/inf in the chunk and in the result itself.
"""

from __future__ import annotations

import ctypes
import importlib.util
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lstm_edge.runtime.backends import REGISTRY
from lstm_edge.runtime.errors import InputError, LstmEdgeError, ModelFileError, NonFiniteResultError, expected_got
from lstm_edge.runtime.manifest import Manifest, ModelFile
from lstm_edge.runtime.stream import busy_error
from lstm_edge.runtime.values import nonfinite_count, refuse_nonfinite_chunk

if TYPE_CHECKING:
    from lstm_edge.runtime.model import StreamingModel

INFO = REGISTRY["native"]
MAX_CHUNK = 64  # frames per internal C step (longer pushes are run in pieces of this size, no allocation)
OUTPUT_BLOCK = 1 << 15  # floats per block that outputs are sliced from (128 KB)
OUTPUT_LAYOUTS = 8  # chunk lengths a slot keeps an output block for (at most 8 x 128 KB held per slot)
DIRECT_MAX_CHUNK = 16  # a Stream's own C stream: ~80 KB for the keyword spotter (64 frames: ~300 KB)
DIRECT_OUTPUT_BLOCK = 1 << 12  # floats per output block of a Stream's own C stream (16 KB per chunk length)
KNOWN_STATES = 256  # states returned whose addresses are remembered (then forgotten all at once)
LEM_ERR_NONFINITE_INPUT = -6
LEM_ERR_NONFINITE_RESULT = -7
_NO_ERRORS: dict = {}  # (never written: a push with errors makes its own dict)
_library: Any = None


class _StateInfo(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("offset", ctypes.c_size_t), ("size", ctypes.c_size_t)]


def available() -> bool:
    from lstm_edge.runtime.native_build import find_compiler

    return importlib.util.find_spec("ctypes") is not None and find_compiler() is not None


def library() -> Any:
    """The loaded C library (built on first use), with its function signatures declared."""
    global _library
    if _library is None:
        from lstm_edge.runtime.native_build import shared_library

        lib = ctypes.CDLL(str(shared_library()))
        p, size, i32 = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int
        signatures = {
            "lem_model_from_memory": (p, [p, size, ctypes.POINTER(i32)]),
            "lem_model_free": (None, [p]),
            "lem_last_error": (ctypes.c_char_p, []),
            "lem_status_string": (ctypes.c_char_p, [i32]),
            "lem_kernel_name": (ctypes.c_char_p, []),
            "lem_model_input_kind": (i32, [p]),
            "lem_model_input_width": (size, [p]),
            "lem_model_output_width": (size, [p]),
            "lem_model_state_size": (size, [p]),
            "lem_model_state_count": (size, [p]),
            "lem_model_state_info": (i32, [p, size, ctypes.POINTER(_StateInfo)]),
            "lem_model_is_int8": (i32, [p]),
            "lem_model_bytes": (size, [p]),
            "lem_stream_bytes_for": (size, [p, size]),
            "lem_stream_create": (p, [p, size, ctypes.POINTER(i32)]),
            "lem_stream_free": (None, [p]),
            "lem_stream_run": (i32, [p, p, size, p, p, p]),
            "lem_stream_run_parts": (i32, [p, p, size, p, p, p]),
            "lem_stream_push": (i32, [p, p, size, p]),
            "lem_stream_push_ids": (i32, [p, p, size, p]),
            "lem_stream_get_state": (i32, [p, p]),
            "lem_stream_set_state": (i32, [p, p]),
            "lem_stream_reset": (None, [p]),
            "lem_batch_create": (p, [p, size, size, ctypes.POINTER(i32)]),
            "lem_batch_free": (None, [p]),
            "lem_batch_bytes_for": (size, [p, size, size]),
            "lem_batch_push": (i32, [p, p, size, p, size, p, p]),
            "lem_batch_push_ids": (i32, [p, p, size, p, size, p, p]),
        }
        for name, (restype, argtypes) in signatures.items():
            function = getattr(lib, name)
            function.restype = restype
            function.argtypes = argtypes
        _library = lib
    return _library


def load_c_model(data: bytes, where: str) -> tuple[Any, int]:
    """A C model from the bytes of a weight file: (library, handle). A ModelFileError quotes the C reader."""
    lib = library()
    status = ctypes.c_int(0)
    buffer = ctypes.create_string_buffer(data, len(data))
    handle = lib.lem_model_from_memory(buffer, len(data), ctypes.byref(status))
    if not handle:
        raise ModelFileError(f"{where}: the C library refuses this weight file: "
                             f"{lib.lem_status_string(status.value).decode()} ({lib.lem_last_error().decode()})")
    return lib, handle


class _Outputs:
    """Where the calls of one chunk length write: records of ``state_size + frames * out_width`` floats (rounded up
    to 64 bytes) in one block. The arrays of every record (y and each state, views shaped as the results) are made
    together when a block is made, so a call takes its outputs ready-made: fresh arrays that never share memory
    with another call's."""

    __slots__ = ("frames", "record", "count", "states_at", "bounds", "shapes", "out_width", "next", "address",
                 "records", "y_shape")

    def __init__(self, frames: int, state_size: int, out_width: int, bounds: list[tuple[int, int]],
                 shapes: list[tuple[int, ...]], batched: bool = True, block: int = OUTPUT_BLOCK,
                 step: bool = False) -> None:
        self.frames, self.states_at, self.out_width = frames, state_size, out_width
        self.bounds, self.shapes = bounds, shapes
        one = (out_width,) if step else (frames, out_width)  # a step model's call is one frame, without a time axis
        self.y_shape = (1, *one) if batched else one
        size = state_size + frames * out_width
        self.record = size + (-size % 16)
        self.count = max(1, block // self.record)
        self.renew()

    def renew(self) -> None:
        block = np.empty((self.count, self.record), np.float32)
        self.address = block.ctypes.data
        at = self.states_at
        ys = list(block[:, at:at + self.frames * self.out_width].reshape(self.count, *self.y_shape))
        states = [list(block[:, a:b].reshape(self.count, *shape)) for (a, b), shape in zip(self.bounds, self.shapes)]
        per_record = list(zip(*states)) if states else [()] * self.count
        self.records: list[tuple[np.ndarray, tuple[np.ndarray, ...]]] = list(zip(ys, per_record))
        self.next = 0

    def take(self) -> tuple[int, int]:
        """The next free record: its index and the address C writes it at (a new block once this one is used)."""
        index = self.next
        if index == self.count:
            self.renew()
            index = 0
        self.next = index + 1
        return index, self.address + 4 * self.record * index


def _outputs_for(layouts: dict[int, _Outputs], frames: int, make: Any) -> _Outputs:
    """The output records of one chunk length from ``layouts`` (made by ``make(frames)``; at most OUTPUT_LAYOUTS
    lengths kept)."""
    outputs = layouts.get(frames)
    if outputs is None:
        if len(layouts) >= OUTPUT_LAYOUTS:
            layouts.clear()
        outputs = layouts[frames] = make(frames)
    return outputs


class _Input:
    """Where C reads a chunk: the caller's array in place when ctypes' buffer protocol takes it (the engine dtype,
    contiguous, writable), else a copy in a buffer that grows (token ids, other dtypes, read-only arrays)."""

    def __init__(self, in_width: int, ids: bool) -> None:
        self.in_width, self.ids = in_width, ids
        self.dtype = np.dtype(np.int32 if ids else np.float32)
        self.byte_at = (ctypes.c_char * 1).from_buffer  # a ctypes array: passed as its address
        self.grow(16)

    def grow(self, frames: int) -> None:
        self.frames = frames
        self.x = np.zeros((frames,) if self.ids else (frames, self.in_width), self.dtype)
        self.x_address = self.x.ctypes.data

    def address(self, x: np.ndarray, frames: int) -> object:
        """What to pass C for the chunk ``x`` of ``frames`` frames (batched ``[1, T, ...]`` or not)."""
        if x.dtype is self.dtype:
            try:
                return self.byte_at(x)  # type: ignore[arg-type]  # ndarray is a buffer
            except (TypeError, ValueError):
                pass
        if frames > self.frames:
            self.grow(frames)
        view = self.x[:frames]
        view[...] = x.reshape(view.shape)
        return self.x_address


class _Slot:
    """One C stream, its pointer table for the states, fallback buffers for arrays passed by copy and the output
    records per chunk length. A slot belongs to one call at a time (taken from the backend's pool), so no lock."""

    def __init__(self, stream: int, in_width: int, ids: bool, state_sizes: list[int]) -> None:
        self.stream = stream
        self.input = _Input(in_width, ids)
        self.pointers = (ctypes.c_void_p * max(len(state_sizes), 1))()
        self.pointers_address = ctypes.addressof(self.pointers)
        self.state_copies = [np.zeros(n, np.float32) for n in state_sizes]
        self.state_copy_addresses = [a.ctypes.data for a in self.state_copies]
        self.outputs: dict[int, _Outputs] = {}


class NativeBackend:
    name = INFO.name
    checks_input_finite = True
    checks_result_finite = True

    def __init__(self, path: Path, manifest: Manifest) -> None:
        lib, handle = load_c_model(path.read_bytes(), str(path))
        self._lib, self._model = lib, handle
        self.kernels = lib.lem_kernel_name().decode()
        self.int8 = bool(lib.lem_model_is_int8(handle))
        self.engine = f"lstm-edge C {self.kernels}"
        self._slots: list[_Slot] = []
        # States this backend returned, by the id of the first (the arrays kept, so an id cannot be reused while
        # listed): the address of their concatenated vector, for the next call.
        self._produced: dict[int, tuple[tuple[np.ndarray, ...], int]] = {}
        self._check_contract(path, manifest)
        self._ids = manifest.input.dtype == "int64"
        self._step = manifest.kind == "step"  # one frame per call: [1, F] in, [1, out] out
        self._out_width = int(lib.lem_model_output_width(handle))
        self._state_size = int(lib.lem_model_state_size(handle))
        self._shapes = [tuple(s.shape) for s in manifest.states]
        self._bounds = []
        offset = 0
        for spec in manifest.states:
            n = int(np.prod(spec.shape))
            self._bounds.append((offset, offset + n))
            offset += n
        self._in_width = 1 if self._ids else int(lib.lem_model_input_width(handle))
        self._run_parts = lib.lem_stream_run_parts
        self._run_whole = lib.lem_stream_run
        self._float32 = np.dtype(np.float32)
        self._char_from = ctypes.c_char.from_buffer
        self._addressof = ctypes.addressof

    def _check_contract(self, path: Path, manifest: Manifest) -> None:
        lib, handle = self._lib, self._model
        names = []
        for index in range(int(lib.lem_model_state_count(handle))):
            info = _StateInfo()
            lib.lem_model_state_info(handle, index, ctypes.byref(info))
            names.append((info.name.decode(), int(info.size)))
        want = [(s.name, int(np.prod(s.shape))) for s in manifest.states]
        if names != want:
            raise ModelFileError(expected_got(f"{path}: states (name, values)", want, names))
        ids = manifest.input.dtype == "int64"
        if bool(lib.lem_model_input_kind(handle)) != ids:
            raise ModelFileError(expected_got(f"{path}: input kind", "token ids" if ids else "features",
                                              "features" if ids else "token ids"))
        first = 1 if manifest.kind == "step" else 2  # the frame's dimensions: after batch (and time)
        out_width = int(np.prod([int(d) for d in manifest.output.shape[first:]]))
        if int(lib.lem_model_output_width(handle)) != out_width:
            raise ModelFileError(expected_got(f"{path}: output width", out_width,
                                              int(lib.lem_model_output_width(handle))))
        if not ids:
            in_width = int(np.prod([int(d) for d in manifest.input.shape[first:]]))
            if int(lib.lem_model_input_width(handle)) != in_width:
                raise ModelFileError(expected_got(f"{path}: input width", in_width,
                                                  int(lib.lem_model_input_width(handle))))

    def create_c_stream(self, max_chunk: int) -> int:
        """A new C stream of this model (freed with ``lem_stream_free``)."""
        status = ctypes.c_int(0)
        stream = self._lib.lem_stream_create(self._model, max_chunk, ctypes.byref(status))
        if not stream:
            raise LstmEdgeError(f"the C library could not create a stream: "
                                f"{self._lib.lem_status_string(status.value).decode()}")
        return int(stream)

    def _new_slot(self) -> _Slot:
        return _Slot(self.create_c_stream(MAX_CHUNK), self._in_width, self._ids, [b - a for a, b in self._bounds])

    def open_stream(self, model: StreamingModel) -> NativeStreamEngine:
        """The stream engine of one ``Stream`` of ``model``: a C stream that keeps its own state."""
        return NativeStreamEngine(self, model)

    def open_batch(self, model: StreamingModel) -> NativeBatchEngine:
        """The engine of one ``StreamBatch`` of ``model``: a C stream per slot, pushed together by a C batch."""
        return NativeBatchEngine(self, model)

    def memory(self) -> dict[str, int]:
        """Bytes held by the C model (weights) and by the C stream of one ``Stream`` (the pool's scratch streams for
        ``step`` hold ``MAX_CHUNK`` frames instead)."""
        return {"model_bytes": int(self._lib.lem_model_bytes(self._model)),
                "stream_bytes": int(self._lib.lem_stream_bytes_for(self._model, DIRECT_MAX_CHUNK))}

    def run(self, x: np.ndarray, states: Sequence[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        frames = 1 if self._step else x.shape[1]
        slots = self._slots
        try:
            slot = slots.pop()
        except IndexError:
            slot = self._new_slot()
        try:
            x_at = slot.input.address(x, frames)
            outputs = _outputs_for(slot.outputs, frames, self._make_outputs)
            index, out_at = outputs.take()
            y_at = out_at + 4 * self._state_size
            # states this backend returned are one concatenated vector whose address is known: no per-state work
            known = self._produced.get(id(states[0])) if states else None
            if known is not None:
                for mine, given in zip(known[0], states):
                    if mine is not given:
                        known = None
                        break
            if known is not None:
                status = self._run_whole(slot.stream, x_at, frames, known[1], out_at, y_at)
            else:
                self._point_at(slot, states)
                status = self._run_parts(slot.stream, x_at, frames, slot.pointers_address, out_at, y_at)
        finally:
            slots.append(slot)
        if status != 0:
            raise self._error(status, x)
        y, new_states = outputs.records[index]
        produced = self._produced
        if len(produced) >= KNOWN_STATES:
            produced.clear()
        if new_states:  # (a tuple: the caller's list may change, the record must not)
            produced[id(new_states[0])] = (new_states, out_at)
        return y, list(new_states)

    def _make_outputs(self, frames: int) -> _Outputs:
        return _Outputs(frames, self._state_size, self._out_width, self._bounds, self._shapes, step=self._step)

    def _point_at(self, slot: _Slot, states: Sequence[np.ndarray]) -> None:
        """The slot's pointer table at the given states, copying those C cannot read in place."""
        pointers = slot.pointers
        for index, value in enumerate(states):
            found = self._address(value, self._float32)
            if found is None:
                slot.state_copies[index][...] = value.reshape(-1)
                found = slot.state_copy_addresses[index]
            pointers[index] = found

    def _address(self, array: np.ndarray, dtype: np.dtype) -> int | None:
        if array.dtype != dtype or not array.flags.c_contiguous or not array.flags.writeable or not array.size:
            return None
        return int(self._addressof(self._char_from(array)))  # type: ignore[arg-type]  # ndarray is a buffer

    def _error(self, status: int, x: np.ndarray) -> LstmEdgeError:
        if status == LEM_ERR_NONFINITE_INPUT:
            return refuse_nonfinite_chunk(x)
        if status == LEM_ERR_NONFINITE_RESULT:
            return NonFiniteResultError("the model produced NaN/inf outputs or state on this chunk (the C library "
                                        "kept the state as it was)")
        message = self._lib.lem_status_string(status).decode()
        if nonfinite_count(x) if x.dtype.kind == "f" else 0:
            return refuse_nonfinite_chunk(x)
        return InputError(f"the C library refused the chunk of shape {x.shape}: {message}")

    def __del__(self) -> None:
        lib = getattr(self, "_lib", None)
        if lib is None:
            return
        for slot in getattr(self, "_slots", []):
            lib.lem_stream_free(slot.stream)
        if getattr(self, "_model", None):
            lib.lem_model_free(self._model)
            self._model = 0


class NativeStreamEngine:
    """The stream engine of the native backend: one C stream holding the carried state itself
    (``lem_stream_push``), so a push hands C the chunk and the output only, instead of the state both ways; the
    state is read and written only when asked. On an error the C stream keeps the state it had.

    The push is one C call through the push extension where it is built (``name`` "native C stream (extension)";
    it refuses a second thread itself and hands anything but an exact float32 chunk to the Python push), else the
    Python push over ctypes ("native C stream (ctypes)"). Same checks, errors and results either way."""

    def __init__(self, backend: NativeBackend, model: StreamingModel) -> None:
        self._backend = backend  # keeps the C model alive as long as this stream
        lib = backend._lib
        self._lib, self._stream = lib, backend.create_c_stream(DIRECT_MAX_CHUNK)
        self._push = lib.lem_stream_push_ids if backend._ids else lib.lem_stream_push
        self._input = _Input(backend._in_width, backend._ids)
        self._outputs: dict[int, _Outputs] = {}
        self._state = np.empty(max(backend._state_size, 1), np.float32)
        self._state_at = self._state.ctypes.data
        self._counts_frames = model.counts_frames
        self._count = 0
        self._busy = threading.Lock()
        python_push = self._python_push(model.check_frames)
        self._c_pusher = self._extension_pusher(python_push, model.fast_frame_shape)
        if self._c_pusher is not None:
            self.push = self._c_pusher.push
            self.name = "native C stream (extension)"
        else:
            self.push = python_push
            self.name = "native C stream (ctypes)"

    @property
    def frames(self) -> int:
        return int(self._c_pusher.frames) if self._c_pusher is not None else self._count

    def _python_push(self, check: Callable[[object], np.ndarray]) -> Callable[[object], np.ndarray]:
        """``push(x) -> y [T, out]`` validated by ``check`` (the model's ``check_frames``; NaN/inf is left to C,
        which refuses it). Names are bound once: this is the whole Python cost of a push over ctypes."""
        layouts, make, take_input = self._outputs, self._make_outputs, self._input.address
        run, stream, error, busy = self._push, self._stream, self._backend._error, self._busy
        counts_frames = self._counts_frames
        step = self._backend._step

        def push(chunk: object) -> np.ndarray:
            if not busy.acquire(blocking=False):
                raise busy_error()
            try:
                x = check(chunk)
                frames = 1 if step else x.shape[0]
                outputs = layouts.get(frames)
                if outputs is None:
                    outputs = _outputs_for(layouts, frames, make)
                index, y_at = outputs.take()
                status = run(stream, take_input(x, frames), frames, y_at)
                if status != 0:
                    raise error(status, x)
                self._count += frames if counts_frames else 1
                return outputs.records[index][0]
            finally:
                busy.release()

        return push

    def _make_outputs(self, frames: int) -> _Outputs:
        return _Outputs(frames, 0, self._backend._out_width, [], [], batched=False, block=DIRECT_OUTPUT_BLOCK,
                        step=self._backend._step)

    def _extension_pusher(self, push: Callable[[object], np.ndarray], frame_shape: tuple[int, ...] | None) -> Any:
        """The push extension's pusher for this stream (``.push(x)``, ``.frames``), or None when the extension is
        not built here (``native_build.push_unavailable`` says why) or the chunks always need converting
        (``frame_shape`` None: token ids). It runs an exact float32 chunk ``[T, *frame_shape]`` itself and hands any
        other chunk to ``push``, which validates it."""
        from lstm_edge.runtime import native_build

        backend = self._backend
        if frame_shape is None or backend._ids:
            return None
        extension = native_build.push_extension()
        if extension is None:
            return None
        width = backend._out_width

        def make_outputs(frames: int) -> list[np.ndarray]:
            return list(np.empty((max(1, DIRECT_OUTPUT_BLOCK // (frames * width)), frames, width), np.float32))

        return extension.Pusher(
            push_address=ctypes.cast(self._push, ctypes.c_void_p).value, stream_address=self._stream,
            frame_shape=tuple(frame_shape), out_items=width, counts_frames=self._counts_frames, owner=self,
            ndarray=np.ndarray, fallback=push, make_outputs=make_outputs, error=backend._error,
            busy_error=busy_error)

    def get_state(self) -> list[np.ndarray]:
        """A copy of the carried state, one array per manifest state."""
        self._lib.lem_stream_get_state(self._stream, self._state_at)
        return [self._state[a:b].reshape(shape).copy() for (a, b), shape in zip(self._backend._bounds,
                                                                                self._backend._shapes)]

    def set_state(self, values: Sequence[np.ndarray]) -> None:
        """Carry on from ``values`` (validated by the model: names, shapes, dtypes, finite)."""
        for (a, b), value in zip(self._backend._bounds, values):
            self._state[a:b] = np.asarray(value, np.float32).reshape(-1)
        status = self._lib.lem_stream_set_state(self._stream, self._state_at)
        if status != 0:
            raise self._backend._error(status, self._state)

    def reset(self) -> None:
        self._lib.lem_stream_reset(self._stream)
        self._count = 0
        if self._c_pusher is not None:
            self._c_pusher.frames = 0

    def __del__(self) -> None:
        lib, stream = getattr(self, "_lib", None), getattr(self, "_stream", None)
        if lib is not None and stream:
            lib.lem_stream_free(stream)
            self._stream = 0


class NativeBatchEngine:
    """The batch engine of the native backend: one C stream per slot (its state kept in C, as a ``Stream``'s) and
    one C batch (``lem_batch_push``) that steps the pushed slots together, reading each weight block once per step
    for all of them. Results are bitwise those of separate native streams."""

    name = "native C batch"

    def __init__(self, backend: NativeBackend, model: StreamingModel) -> None:
        self._backend = backend  # keeps the C model alive as long as this batch
        self._lib = backend._lib
        self._streams: dict[int, int] = {}
        self._batch = 0
        self._capacity = 0
        self._pointers: Any = None
        self._statuses = np.zeros(0, np.int32)
        self._last_slots: tuple[int, ...] | None = None
        self._push = self._lib.lem_batch_push_ids if backend._ids else self._lib.lem_batch_push
        self._dtype = np.dtype(np.int32 if backend._ids else np.float32)
        self._state = np.empty(max(backend._state_size, 1), np.float32)
        self._state_at = self._state.ctypes.data
        self._out_width = backend._out_width
        self._byte_at = (ctypes.c_char * 1).from_buffer  # a ctypes view of an array: passed as its address

    def _grow(self, streams: int) -> None:
        """A C batch (and pointer table) for at least ``streams`` streams: capacities double."""
        capacity = max(4, self._capacity)
        while capacity < streams:
            capacity *= 2
        status = ctypes.c_int(0)
        batch = self._lib.lem_batch_create(self._backend._model, capacity, DIRECT_MAX_CHUNK, ctypes.byref(status))
        if not batch:
            raise LstmEdgeError(f"the C library could not create a batch of {capacity} streams: "
                                f"{self._lib.lem_status_string(status.value).decode()}")
        if self._batch:
            self._lib.lem_batch_free(self._batch)
        self._batch, self._capacity = int(batch), capacity
        self._pointers = (ctypes.c_void_p * capacity)()
        self._pointers_at = ctypes.addressof(self._pointers)
        self._statuses = np.zeros(capacity, np.int32)
        self._statuses_at = self._statuses.ctypes.data
        self._last_slots = None

    def open_slot(self, slot: int) -> None:
        self._streams[slot] = self._backend.create_c_stream(DIRECT_MAX_CHUNK)
        self._last_slots = None

    def close_slot(self, slot: int) -> None:
        self._lib.lem_stream_free(self._streams.pop(slot))
        self._last_slots = None

    def reset(self, slot: int) -> None:
        self._lib.lem_stream_reset(self._streams[slot])

    def get_state(self, slot: int) -> list[np.ndarray]:
        self._lib.lem_stream_get_state(self._streams[slot], self._state_at)
        return [self._state[a:b].reshape(shape).copy() for (a, b), shape in zip(self._backend._bounds,
                                                                                self._backend._shapes)]

    def set_state(self, slot: int, values: Sequence[np.ndarray]) -> None:
        for (a, b), value in zip(self._backend._bounds, values):
            self._state[a:b] = np.asarray(value, np.float32).reshape(-1)
        status = self._lib.lem_stream_set_state(self._streams[slot], self._state_at)
        if status != 0:
            raise self._backend._error(status, self._state)

    def push(self, slots: Sequence[int], x: np.ndarray) -> tuple[np.ndarray, dict[int, LstmEdgeError]]:
        count, frames = len(slots), x.shape[1]
        if slots != self._last_slots:
            if count > self._capacity:
                self._grow(count)
            pointers, streams = self._pointers, self._streams
            for position, slot in enumerate(slots):
                pointers[position] = streams[slot]
            self._last_slots = tuple(slots)
        if x.dtype != self._dtype or not x.flags.c_contiguous:
            x = np.ascontiguousarray(x, self._dtype)
        y = np.empty((count, frames, self._out_width), np.float32)
        status = self._push(self._batch, self._pointers_at, count, self._byte_at(x),  # type: ignore[arg-type]
                            frames, self._byte_at(y), self._statuses_at)  # type: ignore[arg-type]
        if status == 0:
            return y, _NO_ERRORS
        errors: dict[int, LstmEdgeError] = {}
        for bad in np.flatnonzero(self._statuses[:count]):
            errors[int(bad)] = self._backend._error(int(self._statuses[bad]), x[bad])
        return y, errors

    def __del__(self) -> None:
        lib = getattr(self, "_lib", None)
        if lib is None:
            return
        for stream in getattr(self, "_streams", {}).values():
            lib.lem_stream_free(stream)
        if getattr(self, "_batch", 0):
            lib.lem_batch_free(self._batch)
            self._batch = 0


def open(model_dir: Path, manifest: Manifest, entry: ModelFile, threads: int) -> NativeBackend:
    return NativeBackend(Path(model_dir) / entry.path, manifest)
