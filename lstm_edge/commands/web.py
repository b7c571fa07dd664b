"""CLI: ``lstm-edge web MODEL_DIR [--asr ASR_DIR] -o site/``: keyword spotter (and speech recognizer) as a static web
site (WebAssembly, offline)."""

from __future__ import annotations

import argparse


def cmd_web(args: argparse.Namespace) -> int:
    from lstm_edge.devices.web_site import build_site

    record = build_site(args.model_dir, args.output, args.audio, args.asr)
    site = record["site"]
    print(f"{args.output}: {len(site['files'])} files, {site['bytes'] / 1024:.0f} KB "
          f"(lstm_edge.wasm {record['module_bytes']['lstm_edge.wasm'] / 1024:.0f} KB)")
    print(f"serve it with: python -m http.server -d {args.output} 8000, then open http://localhost:8000/ "
          "(or ?autostart, or ?file=demo.wav)")
    return 0


def register(sub) -> None:
    p = sub.add_parser("web", help="write a static web site that spots keywords from the microphone, offline",
                       description="Build the C runtime as WebAssembly (clang + wasi-libc) and write a static site: "
                                   "a page that asks for the microphone, resamples it to 16 kHz in an AudioWorklet, "
                                   "runs the model directory's keyword spotter and shows each detection (and logs "
                                   "it to the console as `lstm-edge listen --json` prints it); with --asr it also "
                                   "transcribes. A service worker "
                                   "keeps it working offline once loaded; it can be installed as an app.")
    p.add_argument("model_dir", help="a keyword-spotting model directory with C weight files (lstm-edge add-c)")
    p.add_argument("--asr", default=None, metavar="ASR_DIR",
                   help="also a speech-recognizer model directory (CTC, extra.asr in its manifest): the page "
                        "transcribes the same audio and logs each final result as `lstm-edge transcribe --json`")
    p.add_argument("-o", "--output", required=True, help="output folder (the site's root)")
    p.add_argument("--audio", default=None,
                   help="a WAV file to ship as the page's demo recording (default: demo.wav in the model directory "
                        "or the folder above it, when there is one)")
    p.set_defaults(func=cmd_web)
