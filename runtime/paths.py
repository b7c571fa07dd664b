"""Where lstm-edge keeps files it can rebuild: ``$LSTM_EDGE_CACHE``, else ``$XDG_CACHE_HOME/lstm-edge``, else
``~/.cache/lstm-edge`` (the XDG base directory rule). Each user of the cache has a sub-folder, and most can be moved
on their own by an environment variable (named where each is defined)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    """The cache root, or a folder in it (not created here)."""
    root = os.environ.get("LSTM_EDGE_CACHE")
    if not root:
        root = str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lstm-edge")
    return Path(root).joinpath(*parts)
