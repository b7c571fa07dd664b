"""``StreamBatch``: many independent streams of one model stepped together, one push for all of them.

A hub listening to several microphones, or a server transcribing many lines, runs one model for N streams. Pushed
one by one, N streams cost N matrix-vector products per frame; pushed as a batch on the native backend they cost one
matrix-matrix product, where every weight is read once for all N streams (the C library's ``lem_batch_push``). The
results are those of N separate ``Stream``s: bitwise on the native backend (float and int8), since the C batch
performs the same operations in the same order.

The batch is a slot table. ``model.create_batch(n)`` starts with slots ``0 .. n-1`` joined; ``join()`` takes a
free slot (or a new one) for a fresh stream, ``leave(slot)`` frees it, ``reset(slot)`` starts it over, and
``state(slot)`` / ``set_state(slot, state)`` read and write its carried state as a ``State``. ``push`` takes one
chunk per active slot (all of the same length T) and returns one output per slot.

A chunk that is refused (wrong shape or dtype, NaN/inf, a result that overflows) fails only its own slot: that
slot keeps its state, the others run as usual, and ``push`` then raises ``BatchPushError`` holding the outputs of
the slots that ran and the error of each that did not.

On ONNX, a float file whose manifest entry says ``"batch": "any"`` runs all slots in one call along the graph's
batch axis (``GraphBatchEngine``). On LiteRT, a file whose entry has ``batch_signatures`` runs them through the same
engine over the backend's ``run_batch``: one call of the smallest batch signature holding the slots, the unused rows
padded; those signatures live in the entry's ``batch_file`` (``model.batch.tflite``), which the backend opens only
when a batch is created, so a single ``Stream`` never loads them. Files without either (the int8 ONNX file, whose
activations are quantized per tensor, so streams would change each other's results; manifests written before
batch axes or batch signatures existed) run the slots one by one through ``model.step`` (``StepBatchEngine``).
``engine.name`` says which is running.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np

from lstm_edge.runtime.errors import ConcurrentUseError, InputError, LstmEdgeError, expected_got
from lstm_edge.runtime.state import State

if TYPE_CHECKING:
    from lstm_edge.runtime.model import StreamingModel

__all__ = ["StreamBatch", "BatchPushError", "BatchEngine", "StepBatchEngine", "GraphBatchEngine", "SlotStream",
           "push_by_length"]


class BatchPushError(InputError):
    """Some slots of a batch push were refused. ``errors`` maps each refused slot to its error (that slot kept its
    state); ``outputs`` maps every slot that ran to its output (those slots advanced as usual)."""

    def __init__(self, errors: Mapping[int, LstmEdgeError], outputs: Mapping[int, np.ndarray]) -> None:
        self.errors = dict(errors)
        self.outputs = dict(outputs)
        lines = "; ".join(f"slot {slot}: {error}" for slot, error in sorted(self.errors.items()))
        ran = sorted(self.outputs)
        super().__init__(f"{len(self.errors)} slot(s) refused, kept their state ({lines}); "
                         f"{len(ran)} slot(s) ran: {ran}")


def _stacked(outputs: list[np.ndarray | None], n: int) -> np.ndarray:
    """The slots' outputs as one array, zeros where a slot was refused (None)."""
    shape = next((y.shape for y in outputs if y is not None), None)
    if shape is None:
        return np.empty((n, 0), np.float32)
    filler = np.zeros(shape, np.float32)
    return np.stack([filler if y is None else y for y in outputs])


def chunks_by_slot(chunks: Sequence[np.ndarray] | Mapping[int, np.ndarray], active: Sequence[int],
                   known: Mapping[int, object]) -> dict[int, np.ndarray]:
    """``{slot: chunk}`` from one chunk per active slot (in slot order) or a mapping; every slot checked against
    ``known`` before anything moves."""
    if isinstance(chunks, Mapping):
        by_slot = dict(chunks)
    else:
        if len(chunks) != len(active):
            raise InputError(expected_got("audio chunks", f"one per active slot ({len(active)})", len(chunks)))
        by_slot = dict(zip(active, chunks))
    for slot in by_slot:
        if slot not in known:
            raise InputError(expected_got("slot", f"one of the active slots {list(active)}", repr(slot)))
    return by_slot


class BatchEngine(Protocol):
    """What a backend gives a ``StreamBatch``: slots holding state, and one push over several of them."""

    name: str

    def open_slot(self, slot: int) -> None: ...  # a fresh stream in slot ``slot`` (a new or a freed index)

    def close_slot(self, slot: int) -> None: ...

    def reset(self, slot: int) -> None: ...

    def get_state(self, slot: int) -> Sequence[np.ndarray]: ...  # copies, in manifest order

    def set_state(self, slot: int, values: Sequence[np.ndarray]) -> None: ...  # values the model has checked

    def push(self, slots: Sequence[int], x: np.ndarray) -> tuple[np.ndarray, dict[int, LstmEdgeError]]:
        """Run ``x[i]`` (checked chunks of one length, stacked: ``[len(slots), T, ...]``) in ``slots[i]``. Returns
        the outputs ``[len(slots), T, ...]`` and the errors by position in ``slots`` (those slots kept their state;
        their rows of the outputs mean nothing)."""
        ...


class StepBatchEngine:
    """Slots run one by one through the model's pure ``step`` (backends whose graphs have no batch dimension)."""

    name = "one by one (model.step per slot)"

    def __init__(self, model: StreamingModel) -> None:
        self._model = model
        self._states: dict[int, State] = {}

    def open_slot(self, slot: int) -> None:
        self._states[slot] = self._model.initial_state()

    def close_slot(self, slot: int) -> None:
        del self._states[slot]

    def reset(self, slot: int) -> None:
        self._states[slot] = self._model.initial_state()

    def get_state(self, slot: int) -> Sequence[np.ndarray]:
        return self._states[slot].copy().ordered

    def set_state(self, slot: int, values: Sequence[np.ndarray]) -> None:
        self._states[slot] = State(self._model.state_names, values, self._model)

    def push(self, slots: Sequence[int], x: np.ndarray) -> tuple[np.ndarray, dict[int, LstmEdgeError]]:
        step, states = self._model.step, self._states
        outputs: list[np.ndarray | None] = []
        errors: dict[int, LstmEdgeError] = {}
        for position, slot in enumerate(slots):
            try:
                y, states[slot] = step(x[position], states[slot])
            except LstmEdgeError as error:
                errors[position] = error
                outputs.append(None)
                continue
            outputs.append(y)
        return _stacked(outputs, len(slots)), errors


class GraphBatchEngine:
    """All slots in one call of a graph with a batch axis (the manifest file's ``"batch": "any"``: ONNX float; or
    LiteRT's batch signatures, ``run`` padding and splitting the slots over them; ``name`` then says so): the
    slots' states are joined along each state's ``batch_axis``, and kept joined while the same slots are pushed
    again. A call that fails (a NaN in one slot's chunk, an overflow) is run again slot by slot through
    ``model.step``, so only the slots at fault are refused."""

    name = "one call for all slots (the graph's batch axis)"

    def __init__(self, model: StreamingModel, run: object, axes: Sequence[int], name: str | None = None) -> None:
        if name is not None:
            self.name = name
        self._model = model
        self._run = run
        self._axes = tuple(axes)
        self._names = model.state_names
        self._states: dict[int, tuple[np.ndarray, ...]] = {}
        self._joint: tuple[tuple[int, ...], list[np.ndarray]] | None = None  # slots pushed last, their states

    def _settle(self) -> None:
        """Split the joint state back into the slots' own."""
        if self._joint is not None:
            slots, values = self._joint
            for k, slot in enumerate(slots):
                if slot in self._states:
                    self._states[slot] = tuple(np.take(v, [k], axis=a) for v, a in zip(values, self._axes))
            self._joint = None

    def open_slot(self, slot: int) -> None:
        self._settle()
        self._states[slot] = self._model.initial_state().ordered

    def close_slot(self, slot: int) -> None:
        self._settle()
        del self._states[slot]

    def reset(self, slot: int) -> None:
        self._settle()
        self._states[slot] = self._model.initial_state().ordered

    def get_state(self, slot: int) -> Sequence[np.ndarray]:
        self._settle()
        return [value.copy() for value in self._states[slot]]

    def set_state(self, slot: int, values: Sequence[np.ndarray]) -> None:
        self._settle()
        self._states[slot] = tuple(values)

    def push(self, slots: Sequence[int], x: np.ndarray) -> tuple[np.ndarray, dict[int, LstmEdgeError]]:
        slots = tuple(slots)
        if self._joint is not None and self._joint[0] == slots:
            values = self._joint[1]
        else:
            self._settle()
            values = [np.concatenate([self._states[slot][i] for slot in slots], axis=axis)
                      for i, axis in enumerate(self._axes)]
        try:
            y, new_values = self._run(x, values)  # type: ignore[operator]
            if self._model._scan_result:
                from lstm_edge.runtime.values import require_finite_result

                require_finite_result(y, new_values, self._names)
        except LstmEdgeError:
            return self._one_by_one(slots, x)
        self._joint = (slots, list(new_values))
        return y, {}

    def _one_by_one(self, slots: tuple[int, ...], x: np.ndarray) -> tuple[np.ndarray, dict[int, LstmEdgeError]]:
        self._settle()
        step = self._model.step
        outputs: list[np.ndarray | None] = []
        errors: dict[int, LstmEdgeError] = {}
        for position, slot in enumerate(slots):
            try:
                y, state = step(x[position], State(self._names, self._states[slot], self._model))
            except LstmEdgeError as error:
                errors[position] = error
                outputs.append(None)
                continue
            self._states[slot] = state.ordered
            outputs.append(y)
        return _stacked(outputs, len(slots)), errors


class StreamBatch:
    """Independent streams of one model in a slot table, pushed together (see the module's docstring).

    Like a ``Stream``, a batch belongs to one thread at a time: a push that starts while another push of the same
    batch runs raises ``ConcurrentUseError``.
    """

    def __init__(self, model: StreamingModel, n: int) -> None:
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise InputError(expected_got("streams in a batch", "an integer >= 0", repr(n)))
        self.model = model
        self.engine: BatchEngine = model.open_batch_engine()
        self._joined: list[bool] = []  # by slot index: True while a stream holds the slot
        # frames(slot) = _frames[slot] + _together - _base[slot]: a push of every active slot adds to _together
        # alone (no per-slot loop); a push of some slots adds to each one's _frames
        self._frames: list[int] = []
        self._base: list[int] = []
        self._together = 0
        self._active: tuple[int, ...] = ()
        self._counts_frames = model.counts_frames
        self._frame_shape = model.fast_frame_shape
        self._busy = threading.Lock()
        for _ in range(n):
            self.join()

    # ------------------------------------------------------------------ slot table
    @property
    def active(self) -> tuple[int, ...]:
        """The joined slots, in increasing order: the order of ``push``'s chunks and outputs."""
        return self._active

    def __len__(self) -> int:
        return len(self._active)

    def join(self, state: Mapping[str, np.ndarray] | None = None) -> int:
        """A new stream in the lowest free slot (or a new slot): at the initial state, or at ``state``. Returns
        the slot."""
        values = None if state is None else self.model.check_state(state)
        with self._exclusive():
            try:
                slot = self._joined.index(False)
            except ValueError:
                slot = len(self._joined)
                self._joined.append(False)
                self._frames.append(0)
                self._base.append(0)
            self.engine.open_slot(slot)
            if values is not None:
                self.engine.set_state(slot, values)
            self._joined[slot] = True
            self._frames[slot] = 0
            self._base[slot] = self._together
            self._active = tuple(i for i, joined in enumerate(self._joined) if joined)
        return slot

    def leave(self, slot: int) -> None:
        """End the stream in ``slot`` (its state is dropped; ``join`` may give the slot to a new stream)."""
        self._check_slot(slot)
        with self._exclusive():
            self.engine.close_slot(slot)
            self._joined[slot] = False
            self._active = tuple(i for i, joined in enumerate(self._joined) if joined)

    def reset(self, slot: int) -> None:
        """Start the stream in ``slot`` over, as a fresh stream."""
        self._check_slot(slot)
        with self._exclusive():
            self.engine.reset(slot)
            self._frames[slot] = 0
            self._base[slot] = self._together

    def state(self, slot: int) -> State:
        """A copy of the state carried in ``slot``, by name."""
        self._check_slot(slot)
        return State(self.model.state_names, self.engine.get_state(slot), self.model)

    def set_state(self, slot: int, state: Mapping[str, np.ndarray]) -> None:
        """Resume ``slot`` from ``state`` (validated: names, shapes, dtypes, finite values)."""
        self._check_slot(slot)
        values = self.model.check_state(state)
        with self._exclusive():
            self.engine.set_state(slot, values)

    def frames(self, slot: int) -> int:
        """Output frames (steps, for a step model) produced in ``slot`` since it joined or was reset."""
        self._check_slot(slot)
        return self._frames[slot] + self._together - self._base[slot]

    # ------------------------------------------------------------------------ push
    def push(self, chunks: np.ndarray | Sequence[object] | Mapping[int, object]
             ) -> list[np.ndarray] | dict[int, np.ndarray]:
        """One chunk per active slot, all of the same length T: an array ``[len(batch), T, ...]`` or a sequence,
        in ``active`` order (returns a list of outputs ``[T, ...]`` in that order), or a mapping ``{slot: chunk}``
        for some of the slots (returns ``{slot: output}``).

        A refused chunk fails only its slot: see ``BatchPushError``."""
        if not self._busy.acquire(blocking=False):
            raise _busy_error()
        try:
            keyed = type(chunks) is not np.ndarray and isinstance(chunks, Mapping)
            if keyed:
                slots = tuple(chunks)
                for slot in slots:
                    self._check_slot(slot)
                x, errors, ran = self._checked([chunks[slot] for slot in slots], slots)
            else:
                slots = self._active
                x, errors, ran = self._checked(chunks, slots)
            if not slots:
                return {} if keyed else []
            if not ran:
                raise BatchPushError(errors, {})
            y, failed = self.engine.push(ran, x)
            step = x.shape[1] if self._counts_frames else 1
            frames = self._frames
            if not errors and not failed and not keyed:  # every active slot ran
                self._together += step
                return list(y)
            outputs: dict[int, np.ndarray] = {}
            for position, slot in enumerate(ran):
                if position in failed:
                    errors[slot] = failed[position]
                else:
                    outputs[slot] = y[position]
                    frames[slot] += step
        finally:
            self._busy.release()
        if errors:
            raise BatchPushError(errors, outputs)
        return outputs

    def _checked(self, chunks: object, slots: tuple[int, ...]
                 ) -> tuple[np.ndarray, dict[int, LstmEdgeError], tuple[int, ...]]:
        """The accepted chunks stacked ``[n, T, ...]``, the refused ones' errors by slot, the slots that run."""
        shape = self._frame_shape
        if (type(chunks) is np.ndarray and shape is not None and chunks.dtype == np.float32
                and chunks.shape[2:] == shape and chunks.ndim == len(shape) + 2 and chunks.shape[0] == len(slots)
                and chunks.shape[1] > 0):
            return np.ascontiguousarray(chunks), {}, slots  # NaN/inf is refused per slot by the engine
        if isinstance(chunks, (str, bytes)) or not isinstance(chunks, (Sequence, np.ndarray)):
            raise InputError(expected_got("batch push", "a sequence of chunks, an array [streams, T, ...] or a "
                                          "mapping {slot: chunk}", type(chunks).__name__))
        if len(chunks) != len(slots):
            raise InputError(expected_got("chunks in a batch push", f"one per active slot ({len(slots)})",
                                          len(chunks)))
        errors: dict[int, LstmEdgeError] = {}
        accepted: dict[int, np.ndarray] = {}
        for slot, chunk in zip(slots, chunks):
            try:
                accepted[slot] = self.model.check_frames(chunk)
            except LstmEdgeError as error:
                errors[slot] = error
        if accepted:
            lengths = Counter(len(x) for x in accepted.values())
            length = max(lengths, key=lambda n: lengths[n])  # the most common (the first of a tie)
            for slot, x in list(accepted.items()):
                if len(x) != length:
                    errors[slot] = InputError(expected_got("chunk length", f"{length} frames, as the other slots "
                                                           "of this push", len(x)))
                    del accepted[slot]
        ran = tuple(accepted)
        if not ran:
            return np.empty(0), errors, ran
        return np.stack([accepted[slot] for slot in ran]), errors, ran

    def _check_slot(self, slot: object) -> None:
        if (not isinstance(slot, (int, np.integer)) or isinstance(slot, bool) or not 0 <= slot < len(self._joined)
                or not self._joined[int(slot)]):
            raise InputError(expected_got("slot", f"one of the active slots {list(self._active)}", repr(slot)))

    def _exclusive(self) -> _Exclusive:
        return _Exclusive(self._busy)


def _busy_error() -> ConcurrentUseError:
    return ConcurrentUseError("this StreamBatch is being used from another thread; a batch belongs to one thread at "
                              "a time")


class _Exclusive:
    """The batch's lock, refusing (not waiting for) a second thread."""

    __slots__ = ("lock",)

    def __init__(self, lock: threading.Lock) -> None:
        self.lock = lock

    def __enter__(self) -> None:
        if not self.lock.acquire(blocking=False):
            raise _busy_error()

    def __exit__(self, *exc: object) -> None:
        self.lock.release()


def push_by_length(batch: StreamBatch, chunks: Mapping[int, np.ndarray]
                   ) -> tuple[dict[int, np.ndarray], dict[int, LstmEdgeError]]:
    """Push ``{slot: chunk}`` whose chunks may differ in length: one batch push per length (audio applications whose
    streams deliver different amounts). Returns the outputs and the errors, by slot."""
    groups: dict[int, dict[int, np.ndarray]] = {}
    for slot, chunk in chunks.items():
        groups.setdefault(len(chunk), {})[slot] = chunk
    outputs: dict[int, np.ndarray] = {}
    errors: dict[int, LstmEdgeError] = {}
    for group in groups.values():
        try:
            outputs.update(batch.push(group))  # type: ignore[arg-type]
        except BatchPushError as error:
            outputs.update(error.outputs)
            errors.update(error.errors)
    return outputs, errors


class SlotStream:
    """One slot of a batch seen as a ``Stream`` (``push``, ``reset``, ``state``, ``frames``), for an application
    that drives a stream's pushes itself (a recognizer reruns part of a chunk after an endpoint). A push runs this
    slot alone, unless its chunk is the one the batch already ran for it (``prefetched``): then its output comes
    back without running again."""

    def __init__(self, batch: StreamBatch, slot: int) -> None:
        self.batch, self.slot = batch, slot
        self._ready: tuple[np.ndarray, np.ndarray] | None = None

    def prefetched(self, x: np.ndarray, y: np.ndarray) -> None:
        """The batch ran chunk ``x`` in this slot and gave ``y``: the next ``push(x)`` (the same array) returns it."""
        self._ready = (x, y)

    def push(self, x: np.ndarray) -> np.ndarray:
        ready, self._ready = self._ready, None
        if ready is not None and ready[0] is x:
            return ready[1]
        try:
            return self.batch.push({self.slot: x})[self.slot]
        except BatchPushError as error:
            raise error.errors[self.slot] from None

    def reset(self) -> None:
        self._ready = None
        self.batch.reset(self.slot)

    @property
    def state(self) -> State:
        return self.batch.state(self.slot)

    @property
    def frames(self) -> int:
        return self.batch.frames(self.slot)
