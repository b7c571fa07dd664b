"""The CLI's subcommands, one module per area; each module has ``register(subparsers)``."""

from __future__ import annotations

import argparse
import importlib

MODULES = ("core", "quantize", "listen", "devices", "demo", "text", "asr", "build_c", "kws_train")


def register_all(subparsers: argparse._SubParsersAction) -> None:
    """Add every area's subcommands to the ``lstm-edge`` parser."""
    for name in MODULES:
        importlib.import_module(f"lstm_edge.commands.{name}").register(subparsers)


def add_engine_options(parser: argparse.ArgumentParser, precision_default: str | None = "float",
                       backend_help: str = "default: an installed engine",
                       precision_help: str = "default: float") -> None:
    """``--backend`` and ``--precision``, with the choices read from the backend registry and the manifest."""
    from lstm_edge.runtime.backends import NAMES
    from lstm_edge.runtime.manifest import PRECISIONS

    parser.add_argument("--backend", choices=NAMES, default=None, help=backend_help)
    parser.add_argument("--precision", choices=PRECISIONS, default=precision_default, help=precision_help)
