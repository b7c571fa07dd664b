"""CLI: ``lstm-edge add-c MODEL_DIR`` (the C weight files) and ``lstm-edge build-c`` (library + programs)."""

from __future__ import annotations

import argparse
import json


def cmd_add_c(args: argparse.Namespace) -> int:
    from lstm_edge.export.c_export import add_c_files

    manifest = add_c_files(args.model_dir)
    for entry in manifest.files:
        if entry.format == "c":
            print(f"{args.model_dir}/{entry.path}: {entry.precision}, {entry.bytes} bytes, sha256 {entry.sha256[:12]}")
    return 0


def cmd_build_c(args: argparse.Namespace) -> int:
    from lstm_edge.devices.c_build import build_c

    record = build_c(args.target, args.output, args.model_dir)
    print(json.dumps(record, indent=2))
    return 0


def register(sub) -> None:
    from lstm_edge.devices.c_build import TARGETS
    from lstm_edge.devices.mcu_build import MCU_TARGETS

    p = sub.add_parser("add-c", help="add the C weight files (model.lec, model.int8.lec) to a model directory",
                       description="Convert the directory's float ONNX graph into the C weight files of "
                                   "lstm-edge's C library, float32 and int8 (per-row weight scales), and record "
                                   "them with their checksums in manifest.json. Rerun it after a re-export. "
                                   "Layers without a C version are refused by name.")
    p.add_argument("model_dir")
    p.set_defaults(func=cmd_add_c)
    p = sub.add_parser("build-c", help="build the C library, headers, lstm-edge-run and lstm-edge-listen",
                       description="Compile runtime/native for this machine or cross-compile for an ARM board "
                                   "(Debian gcc cross packages; programs linked statically), and copy the model "
                                   "directory's C weight files next to them. Cortex-M targets build bare-metal "
                                   "keyword-spotter firmware for qemu's MPS2/MPS3 boards (gcc-arm-none-eabi, "
                                   "int8 weights as const arrays) with run-qemu.sh and footprint.json. --target "
                                   "wasm builds WebAssembly modules (clang + wasi-libc) and an ES module that loads "
                                   "the model directory's weight file at run time.")
    p.add_argument("model_dir", nargs="?", default=None, help="a model directory with C weight files (optional)")
    p.add_argument("--target", choices=(*TARGETS, *MCU_TARGETS, "wasm"), default="native")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.set_defaults(func=cmd_build_c)
