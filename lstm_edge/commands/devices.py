"""The ``devices``, ``bundle`` and ``bench`` subcommands. ``register(subparsers)`` adds them to the lstm-edge CLI.

Each handler takes the parsed Namespace and returns an exit code; lstm-edge errors print one line and return 1.
"""

from __future__ import annotations

import argparse
import json
import sys

from lstm_edge.commands import add_engine_options
from lstm_edge.runtime.errors import LstmEdgeError


def cmd_devices(args: argparse.Namespace) -> int:
    from lstm_edge.devices.profiles import load_profiles

    profiles = load_profiles()
    if args.json:
        print(json.dumps([p.to_dict() for p in profiles.values()], indent=2))
        return 0
    print(f"{'device':24} {'arch':10} {'backend':8} {'prec':5} {'python':19} status")
    for p in profiles.values():
        python = ",".join(p.python_versions) or ("(C programs)" if p.kind == "linux" else "(app)")
        status = "ok" if p.supported else "UNSUPPORTED: " + (p.unsupported_reason or "").split(":")[0]
        print(f"{p.name:24} {p.architecture:10} {p.backend:8} {p.precision:5} {python:19} {status}")
    print("details: lstm-edge devices --json")
    return 0


def cmd_bundle(args: argparse.Namespace) -> int:
    from lstm_edge.devices.bundle import make_bundle

    try:
        make_bundle(args.model_dir, args.device, args.output, python=args.python, backend=args.backend,
                    precision=args.precision, wheel_cache=args.wheel_cache, wheel=args.wheel)
    except LstmEdgeError as err:
        print(f"lstm-edge bundle: error: {err}", file=sys.stderr)
        return 1
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from lstm_edge.devices.bench import bench, format_table

    if args.plot:
        from lstm_edge.plotting import import_pyplot

        import_pyplot()  # before seconds of measuring
    try:
        report = bench(args.model_dir, backend=args.backend, precision=args.precision, chunk_frames=args.chunk,
                       seconds=args.seconds, threads=args.threads)
    except LstmEdgeError as err:
        print(f"lstm-edge bench: error: {err}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=2) if args.json else format_table(report))
    if args.plot and report["results"]:
        from lstm_edge.devices.bench_plot import plot_bench

        reports = [report]
        if args.chunk != 1:  # the plot compares chunk sizes: add one-frame pushes
            reports.insert(0, bench(args.model_dir, backend=args.backend, precision=args.precision, chunk_frames=1,
                                    seconds=args.seconds, threads=args.threads))
        print(f"plot: {plot_bench(reports, args.plot)}")
    return 0 if report["results"] else 1


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``devices``, ``bundle`` and ``bench`` to the CLI's subparsers."""
    p = subparsers.add_parser("devices", help="list the device profiles",
                              description="List the device profiles (board, architecture, preferred backend and "
                                          "precision, Python versions, support status).")
    p.add_argument("--json", action="store_true", help="print every profile in full as JSON")
    p.set_defaults(func=cmd_devices)

    p = subparsers.add_parser("bundle", help="package a model directory for a device",
                              description="Write a .tar.gz for a device: Linux boards get the model, offline wheels, "
                                          "install.sh (checks SHA256SUMS), run.sh, a systemd unit and a README; "
                                          "phones get the model and a Kotlin/Swift integration guide.")
    p.add_argument("model_dir")
    p.add_argument("--device", required=True, help="a profile name (see `lstm-edge devices`)")
    p.add_argument("-o", "--output", required=True, help="bundle to write (.tar.gz)")
    p.add_argument("--python", default="3.11", help="the board's Python version X.Y (default 3.11)")
    add_engine_options(p, None, "default: the profile's",
                       "default: the profile's (int8 falls back to float, with a note, when absent)")
    p.add_argument("--wheel", default=None, help="a built lstm-edge wheel (default: build one from the source tree)")
    p.add_argument("--wheel-cache", default=None, help="dependency wheel cache (default ~/.cache/lstm-edge/wheels)")
    p.set_defaults(func=cmd_bundle)

    p = subparsers.add_parser("bench", help="measure a model directory on this device",
                              description="Per backend x precision present and installed: engine import time, load "
                                          "time, per-chunk latency p50/p99 with the state carried, real-time factor "
                                          "(with an audio frontend), peak RSS; flags int8 slower than float.")
    p.add_argument("model_dir")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    add_engine_options(p, None, "only this backend (default: every installed one)",
                       "only this precision (default: both)")
    p.add_argument("--chunk", type=int, default=10, help="frames per chunk (default 10)")
    p.add_argument("--seconds", type=float, default=2.0, help="measuring time per backend x precision (default 2)")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1)")
    p.add_argument("--plot", metavar="FILE.png", help="also bench one-frame pushes and draw p50 latency per chunk "
                                                      "size and precision (needs the plot extra: matplotlib)")
    p.set_defaults(func=cmd_bench)
