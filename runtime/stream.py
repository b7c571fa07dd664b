"""``Stream``: one caller's position in a stream. Owns the carried state; the model is shared.

A Stream holds one *stream engine*, made by the model's backend, with one interface: ``push(x) -> y``,
``reset()``, ``get_state() -> values``, ``set_state(values)`` and ``frames``. Backends whose engine keeps the state
itself give their own (the native backend: a C stream); the others get ``StepEngine``, which threads the state
through the model's pure ``step`` in Python. Both validate alike, refuse alike and give the same results.

A Stream belongs to one thread at a time (the model may be shared by many threads): a push that starts while
another push on the same stream is running raises ``ConcurrentUseError`` instead of silently losing an update.
Every engine enforces that in its ``push``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np

from lstm_edge.runtime.errors import ConcurrentUseError
from lstm_edge.runtime.state import State

if TYPE_CHECKING:
    from lstm_edge.runtime.model import StreamingModel


class StreamEngine(Protocol):
    """What a backend gives a ``Stream``: the carried state and the push over it."""

    name: str  # how pushes run, for describe() and tests: "step", "native C stream (extension)", ...

    def push(self, x: object) -> np.ndarray: ...

    def reset(self) -> None: ...

    def get_state(self) -> Sequence[np.ndarray]: ...  # copies, in manifest order

    def set_state(self, values: Sequence[np.ndarray]) -> None: ...  # values the model has checked

    @property
    def frames(self) -> int: ...


class StepEngine:
    """The state in Python, threaded through ``model.step`` (a pure function) on every push."""

    name = "step"

    def __init__(self, model: StreamingModel) -> None:
        self._model = model
        self._step = model.step
        self._state: State = model.initial_state()
        self._count = 0
        self._counts_frames = model.counts_frames
        self._busy = threading.Lock()

    def push(self, x: object) -> np.ndarray:
        if not self._busy.acquire(blocking=False):
            raise busy_error()
        try:
            y, self._state = self._step(x, self._state)
            self._count += len(y) if self._counts_frames else 1
            return y
        finally:
            self._busy.release()

    @property
    def frames(self) -> int:
        return self._count

    def reset(self) -> None:
        self._state = self._model.initial_state()
        self._count = 0

    def get_state(self) -> Sequence[np.ndarray]:
        return self._state.copy().ordered

    def set_state(self, values: Sequence[np.ndarray]) -> None:
        self._state = State(self._model.state_names, values, self._model)


class Stream:
    """Push chunks, get outputs; the LSTM state is carried from one push to the next.

    A rejected chunk raises before anything changes, so the stream stays usable.
    """

    def __init__(self, model: StreamingModel) -> None:
        self.model = model
        self.engine: StreamEngine = model.open_stream_engine()
        # The engine's push is this stream's push: no Python layer in between (the native push is one C call).
        self.push = self.engine.push  # type: ignore[method-assign]

    def push(self, x: np.ndarray) -> np.ndarray:
        """Run a chunk (no batch dim: ``[T, F]`` features, ``[T]`` token ids, or one step's input).

        Returns the outputs for these frames, without the batch dim.
        """
        return self.engine.push(x)

    @property
    def frames(self) -> int:
        """Output frames (or steps, for a step model) produced since the last reset."""
        return int(self.engine.frames)

    def reset(self) -> None:
        """Back to the initial state, as a fresh stream."""
        self.engine.reset()

    @property
    def state(self) -> State:
        """A copy of the carried state, by name (for suspend/resume)."""
        return State(self.model.state_names, self.engine.get_state(), self.model)

    @state.setter
    def state(self, value: Mapping[str, np.ndarray]) -> None:
        """Resume from a state by name (validated: names, shapes, dtypes, finite values)."""
        self.engine.set_state(self.model.check_state(value))


def busy_error() -> ConcurrentUseError:
    return ConcurrentUseError("this Stream is being pushed from another thread; a Stream belongs to one thread at a "
                              "time (create one stream per thread: model.create_stream())")
