"""``State``: the carried tensors of one stream, by name, as the manifest names them.

A read-only mapping ``{state name: array}`` (``state["lstm_h"]``, ``dict(state)``, ``state.keys()``): the one
representation of state in the public API, for ``StreamingModel.step``, ``initial_state`` and ``Stream.state``.
It also keeps the values in manifest order, so a state a model produced goes back into the next call without being
looked up name by name.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np


class State(Mapping[str, np.ndarray]):
    __slots__ = ("names", "ordered", "origin")

    def __init__(self, names: tuple[str, ...], values: Sequence[np.ndarray], origin: object = None) -> None:
        self.names = names
        self.ordered = tuple(values)  # the arrays in manifest order (the graph's state inputs)
        self.origin = origin  # the model whose step produced (and checked) these values; None: unchecked

    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self.ordered[self.names.index(name)]
        except ValueError:
            raise KeyError(name) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{n}: {v.dtype}{list(v.shape)}" for n, v in zip(self.names, self.ordered))
        return f"State({shapes})"

    def copy(self) -> State:
        """A deep copy (the arrays too), e.g. to suspend a stream and resume it later."""
        return State(self.names, [value.copy() for value in self.ordered], self.origin)
