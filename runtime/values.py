"""The one place that decides whether values are finite, for chunks, outputs and carried state alike.

A sum is NaN or inf whenever any term is, so one reduction answers the common case; only when the sum is not finite
are the elements counted, which words the error and tells a real NaN/inf from a sum of huge finite values that
overflowed (those pass here; if the graph then overflows, its result is refused instead).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from lstm_edge.runtime.errors import InputError, NonFiniteResultError, expected_got


def nonfinite_count(array: np.ndarray) -> int:
    return int(np.size(array) - np.count_nonzero(np.isfinite(array)))


def is_finite(array: np.ndarray) -> bool:
    """True when every value of a float array is finite (one reduction)."""
    return math.isfinite(float(np.add.reduce(array, axis=None)))


def require_finite_chunk(x: np.ndarray) -> None:
    """Refuse an input chunk holding NaN or inf."""
    if not is_finite(x) and nonfinite_count(x):
        raise refuse_nonfinite_chunk(x)


def refuse_nonfinite_chunk(x: np.ndarray) -> InputError:
    """The error for a chunk an engine reported as non-finite."""
    return InputError(expected_got("chunk values", "finite numbers", f"{nonfinite_count(x)} NaN/inf values"))


def require_finite_result(y: np.ndarray, states: Sequence[np.ndarray], names: Sequence[str]) -> None:
    """Refuse a call whose output or new state is not finite (the graph overflowed); the caller keeps its state."""
    if not is_finite(y) and nonfinite_count(y):
        raise NonFiniteResultError(f"the model produced {nonfinite_count(y)} NaN/inf outputs on this chunk "
                                   "(its values overflow inside the graph); the chunk was refused and the state kept")
    for name, value in zip(names, states):
        if not is_finite(value) and nonfinite_count(value):
            raise NonFiniteResultError(f"the model's new state {name!r} holds {nonfinite_count(value)} NaN/inf "
                                       "values (the chunk's values overflow inside the graph); the chunk was refused "
                                       "and the state kept")



class GraphCheck:
    """A check output the graph computes itself, named in the manifest file entry's ``checks``.

    ``nonfinite_any``: the sum of every value of the input chunk, the output and the new state (finite when they
    all are). ``nonfinite_input`` (older files): the sum of ``x - x``, 0 when the input chunk is finite.
    """

    def __init__(self, output: str, covers_result: bool) -> None:
        self.output = output
        self.covers_result = covers_result

    @classmethod
    def from_checks(cls, checks: Mapping[str, str] | None) -> GraphCheck | None:
        checks = checks or {}
        if "nonfinite_any" in checks:
            return cls(checks["nonfinite_any"], True)
        if "nonfinite_input" in checks:
            return cls(checks["nonfinite_input"], False)
        return None

    def verify(self, flag: np.ndarray, x: np.ndarray, y: np.ndarray, states: Sequence[np.ndarray],
               state_names: Sequence[str]) -> None:
        """Raise when the flag says the call saw or made NaN/inf (the exact scan runs only then)."""
        value = float(flag)
        if self.covers_result:
            if math.isfinite(value):
                return
            if x.dtype.kind == "f":
                require_finite_chunk(x)
            require_finite_result(y, states, state_names)  # a sum of finite values that overflowed passes here
        elif value != 0.0:
            raise refuse_nonfinite_chunk(x)
