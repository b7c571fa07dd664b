"""The error type of device bundles."""

from __future__ import annotations

from lstm_edge.runtime.errors import LstmEdgeError


class BundleError(LstmEdgeError, ValueError):
    """A bundle cannot be made, or an archive is unsafe or does not match its checksums."""
