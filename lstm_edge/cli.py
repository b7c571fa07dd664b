"""The ``lstm-edge`` command line. Each subcommand's handler returns an exit code; errors print one clear line.

The subcommands live in ``lstm_edge.commands``, one module per area, each with ``register(subparsers)``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from lstm_edge import __version__
from lstm_edge.commands import register_all
from lstm_edge.commands.quiet import quiet_third_party
from lstm_edge.runtime.errors import LstmEdgeError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lstm-edge", description="Take PyTorch LSTM models to the edge: export "
                                     "with named state, quantize to int8 with parity gates, stream on devices.")
    parser.add_argument("--version", action="version", version=f"lstm-edge {__version__}")
    parser.add_argument("--verbose", action="store_true",
                        help="show the engines' and converters' own log lines and progress bars on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    register_all(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse takes a command's positionals in one run: `listen MODEL --json a.wav` would leave a.wav over. Files
    # after an option go where the files before it go (commands whose last positional is a list of inputs).
    if extra and isinstance(getattr(args, "inputs", None), list) and not any(e.startswith("-") for e in extra):
        args.inputs += extra
    elif extra:
        parser.parse_args(argv)  # the usual "unrecognized arguments" error, exit 2
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if not args.verbose and argv is None:  # a real command line, not a call from Python code
        quiet_third_party(host_side=args.command in ("export", "quantize", "verify", "demo"))
    try:
        return int(args.func(args) or 0)
    except LstmEdgeError as err:
        print(f"lstm-edge {args.command}: error: {err}", file=sys.stderr)
        return 1
    except (OSError, json.JSONDecodeError) as err:
        print(f"lstm-edge {args.command}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
