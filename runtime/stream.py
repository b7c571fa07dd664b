"""``Stream``: one caller's position in a stream. Owns the carried state; the model is shared.

A Stream belongs to one thread at a time (the model may be shared by many threads): a push that starts while
another push on the same stream is running raises ``ConcurrentUseError`` instead of silently losing an update.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

import numpy as np

from lstm_edge.runtime.errors import ConcurrentUseError
from lstm_edge.runtime.model import StreamingModel
from lstm_edge.runtime.state import State


class Stream:
    """Push chunks, get outputs; the LSTM state is carried from one push to the next.

    A rejected chunk raises before anything changes, so the stream stays usable.
    """

    def __init__(self, model: StreamingModel) -> None:
        self.model = model
        self._state: State = model.initial_state()
        self._frames = 0  # output frames (or steps) produced since the last reset
        self._step = model.step
        self._counts_frames = model.counts_frames
        self._busy = threading.Lock()
        # A backend whose engine keeps the state itself (native: a C stream) takes only the chunk per push; the
        # state is read from it when asked. Same validation, errors and results as the pure step.
        self._direct = model.open_direct_stream()
        self._c_pusher = None
        if self._direct is not None:
            self._push_direct = self._direct.pusher(model.check_frames)
            # The push extension, where it is built: this push as one C call (same checks, results and errors;
            # anything but a plain float32 chunk goes through the Python push above).
            self._c_pusher = self._direct.c_pusher(self._push_direct, model.fast_frame_shape, self._counts_frames,
                                                   _busy_error)
            if self._c_pusher is not None:
                self.push = self._c_pusher.push  # type: ignore[method-assign]

    def push(self, x: np.ndarray) -> np.ndarray:
        """Run a chunk (no batch dim: ``[T, F]`` features, ``[T]`` token ids, or one step's input).

        Returns the outputs for these frames, without the batch dim.
        """
        if not self._busy.acquire(blocking=False):
            raise _busy_error()
        try:
            if self._direct is not None:
                y = self._push_direct(x)
            else:
                y, self._state = self._step(x, self._state)
            self._frames += len(y) if self._counts_frames else 1
            return y
        finally:
            self._busy.release()

    @property
    def frames(self) -> int:
        """Output frames (or steps, for a step model) produced since the last reset."""
        return int(self._c_pusher.frames) if self._c_pusher is not None else self._frames

    def reset(self) -> None:
        """Back to the initial state, as a fresh stream."""
        if self._direct is not None:
            self._direct.reset()
        else:
            self._state = self.model.initial_state()
        self._frames = 0
        if self._c_pusher is not None:
            self._c_pusher.frames = 0

    @property
    def state(self) -> State:
        """A copy of the carried state, by name (for suspend/resume)."""
        if self._direct is not None:
            return State(self.model.state_names, self._direct.get_state(), self.model)
        return self._state.copy()

    @state.setter
    def state(self, value: Mapping[str, np.ndarray]) -> None:
        """Resume from a state by name (validated: names, shapes, dtypes, finite values)."""
        values = self.model.check_state(value)
        if self._direct is not None:
            self._direct.set_state(values)
        else:
            self._state = State(self.model.state_names, values, self.model)


def _busy_error() -> ConcurrentUseError:
    return ConcurrentUseError("this Stream is being pushed from another thread; a Stream belongs to one thread at a "
                              "time (create one stream per thread: model.create_stream())")
