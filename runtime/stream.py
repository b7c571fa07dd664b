"""``Stream``: one caller's position in a stream. Owns the carried state; the model is shared."""

from __future__ import annotations

from typing import Mapping

import numpy as np

from lstm_edge.runtime.errors import InputError, expected_got
from lstm_edge.runtime.model import State, StreamingModel


class Stream:
    """Push chunks, get outputs; the LSTM state is carried from one push to the next.

    A rejected chunk raises before anything changes, so the stream stays usable.
    """

    def __init__(self, model: StreamingModel) -> None:
        self.model = model
        self._state: State = model.initial_state()
        self.frames = 0  # frames (or steps) pushed since the last reset
        self._check = model.check_chunk
        self._run = model._run
        self._counts_frames = model._time_axis is not None  # step models count steps

    def push(self, x: np.ndarray) -> np.ndarray:
        """Run a chunk (no batch dim: ``[T, F]`` features, ``[T]`` token ids, or one step's input).

        Returns the outputs for these frames, without the batch dim.
        """
        batched = self._check(x)
        y, self._state = self._run(batched, self._state)
        self.frames += batched.shape[1] if self._counts_frames else 1
        return y[0]

    def reset(self) -> None:
        """Back to the initial state, as a fresh stream."""
        self._state = self.model.initial_state()
        self.frames = 0

    @property
    def state(self) -> dict[str, np.ndarray]:
        """A copy of the carried state, by name (for suspend/resume)."""
        return {spec.name: value.copy() for spec, value in zip(self.model.manifest.states, self._state)}

    @state.setter
    def state(self, value: Mapping[str, np.ndarray]) -> None:
        names = self.model.state_names
        if not isinstance(value, Mapping):
            raise InputError(expected_got("stream state", f"a mapping of {names}", type(value).__name__))
        if set(value) != set(names):
            raise InputError(expected_got("stream state names", sorted(names), sorted(value)))
        new_state = []
        for spec in self.model.manifest.states:
            array = np.array(value[spec.name], dtype=spec.dtype, copy=True)
            new_state.append(array)
        self.model.check_state(new_state)
        self._state = tuple(new_state)
