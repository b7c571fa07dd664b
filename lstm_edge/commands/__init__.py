"""The CLI's subcommands, one module per area; each module has ``register(subparsers)``."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import BinaryIO, TextIO

MODULES = ("core", "quantize", "listen", "devices", "demo", "text", "asr", "build_c", "web", "kws_train")


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



def stdin_text() -> TextIO:
    """The process's standard input as text, or an ``InputError`` when there is none: a shell's ``<&-`` closes it,
    and a service may start without one."""
    from lstm_edge.runtime.errors import InputError

    stream = sys.stdin
    if stream is None or stream.closed:
        raise InputError("standard input: expected an open input ('-' reads it), got a closed one")
    return stream


def stdin_bytes() -> BinaryIO:
    """The process's standard input as bytes (see ``stdin_text``)."""
    return stdin_text().buffer
