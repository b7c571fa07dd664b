"""matplotlib for the ``--plot`` options (host-side tools; the ``plot`` extra, also in ``all``). Commands call
``import_pyplot`` before they measure anything, so a missing matplotlib is said at once, not after the work."""

from __future__ import annotations

from typing import Any

from lstm_edge.runtime.errors import BackendUnavailableError


def import_pyplot() -> Any:
    """``matplotlib.pyplot`` on the file-only Agg backend, or a one-line error saying how to install it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise BackendUnavailableError("--plot: expected matplotlib to be installed, got no such module: "
                                      "pip install 'lstm-edge[plot]'") from None
    return plt
