"""Exception types shared by every part of lstm-edge.

Each error says what was expected and what came. They subclass the built-in type a caller would
naturally catch (ValueError for bad input, RuntimeError for an environment problem).
"""

from __future__ import annotations


class LstmEdgeError(Exception):
    """Base class of every error raised by lstm-edge."""


class InputError(LstmEdgeError, ValueError):
    """An input chunk (or a state) does not match the model's contract."""


class NonFiniteResultError(InputError):
    """A chunk made the graph overflow: its outputs or new state are not finite (the state was kept)."""


class ConcurrentUseError(LstmEdgeError, RuntimeError):
    """One Stream was pushed from two threads at once (a Stream belongs to one thread at a time)."""


class ManifestError(LstmEdgeError, ValueError):
    """A model directory's manifest is missing, malformed, of an unknown schema, or inconsistent."""


class ModelFileError(LstmEdgeError, ValueError):
    """A model file is missing, corrupt, or does not match the checksum recorded in the manifest."""


class BackendUnavailableError(LstmEdgeError, RuntimeError):
    """The inference engine that was asked for is not installed (the message says how to install it)."""


class ExportError(LstmEdgeError, ValueError):
    """A model cannot be exported as a streaming model (the message names the layer and the reason)."""


class QuantizationError(LstmEdgeError, RuntimeError):
    """Quantization failed or produced a model that does not meet its structural checks."""


def expected_got(what: str, expected: object, got: object) -> str:
    """Format the standard "expected vs got" message."""
    return f"{what}: expected {expected}, got {got}"
