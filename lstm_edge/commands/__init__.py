"""The CLI's subcommands, one module per area; each module has ``register(subparsers)``."""

from __future__ import annotations

import argparse
import importlib

MODULES = ("core", "quantize", "listen", "devices", "demo", "text")


def register_all(subparsers: argparse._SubParsersAction) -> None:
    """Add every area's subcommands to the ``lstm-edge`` parser."""
    for name in MODULES:
        importlib.import_module(f"lstm_edge.commands.{name}").register(subparsers)
