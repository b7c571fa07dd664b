"""The C runtime on the shipped keyword spotter: push latency side by side with LiteRT and ONNX, the pure C loop
against its matrix-vector floor, and code size and RAM for armv7.

1. ``stream.push`` per call at T=1 and T=10 for native int8/float, LiteRT int8/float, ONNX int8/float, and native
   int8 with the ctypes push (``LSTM_EDGE_NATIVE_PUSH=ctypes``: what runs without the push extension), timed in
   interleaved rounds (``_common.interleaved_medians``). Targets: native int8 <= 3 us per call at T=1 and
   <= 1.5 us per frame at T=10, on a machine where the fastest engine path (LiteRT int8) took 6.9 us at T=1: as
   ratios on any machine, native int8 >= 2.3x LiteRT int8 at T=1 (6.9 / 3; the issue's title says 3x), and
   >= 3x LiteRT int8 at T=10 (the register-tiled several-vector kernels).
2. ``benchmarks/native_loop.c`` built with the library's flags (timed in the thread's CPU time, so that other
   processes on a shared machine do not count): ``lem_stream_push`` in a C loop (T=1, T=10) and the
   floor, one matvec per weight matrix of the model per frame (int8 or float as the model) with the same kernel
   and nothing around it. Target: the int8 C loop within 1.5x of the floor. On an x86-64 CPU with AVX-512 VNNI,
   also with LEM_KERNEL=avx2 (the AVX2 kernels on the same CPU).
3. ``lstm-edge build-c --target armv7``: ``size`` of the library objects (target < 100 KB of code) and the RAM the C
   library reports for the model and for one stream (``lstm-edge-run --info`` under qemu-arm, max chunk 1 and 10).
Run: python benchmarks/bench_native.py [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from _common import interleaved_medians, save

ROOT = Path(__file__).resolve().parent.parent
KWS_DIR = ROOT / "models" / "kws" / "export"
NATIVE = ROOT / "runtime" / "native"
TARGET_T1_US = 3.0
TARGET_T10_US_PER_FRAME = 1.5
TARGET_FLOOR_RATIO = 1.5
TARGET_T1_RATIO = 2.3  # 6.9 us (LiteRT int8 where the targets were set) / 3 us
TARGET_T10_RATIO = 3.0


def push_latencies(repeats: int) -> dict[str, dict[str, float]]:
    from lstm_edge.runtime import StreamingModel

    calls = {}
    engines = {}
    for backend in ("native", "litert", "onnx"):
        for precision in ("int8", "float"):
            model = StreamingModel.load(KWS_DIR, backend=backend, precision=precision, threads=1)
            engines[f"{backend} {precision}"] = model.engine
            for frames in (1, 10):
                stream = model.create_stream()
                chunk = np.random.default_rng(frames).standard_normal((frames, 40)).astype(np.float32)
                calls[f"{backend} {precision} T={frames}"] = lambda s=stream, x=chunk: s.push(x)
                if backend == "native" and precision == "int8":
                    os.environ["LSTM_EDGE_NATIVE_PUSH"] = "ctypes"
                    try:
                        slow = model.create_stream()
                    finally:
                        del os.environ["LSTM_EDGE_NATIVE_PUSH"]
                    engines["native int8 ctypes"] = model.engine + " (ctypes push)"
                    calls[f"native int8 ctypes T={frames}"] = lambda s=slow, x=chunk: s.push(x)
    medians = interleaved_medians(calls, repeats)
    rows: dict[str, dict[str, float]] = {}
    for name, value in medians.items():
        key, frames = name.rsplit(" T=", 1)
        rows.setdefault(key, {"engine": engines[key]})[f"T={frames}_us"] = round(value, 3)  # type: ignore[assignment]
    return rows


def weight_shapes() -> list[str]:
    """rows x cols of every int8 matrix of the shipped model, from its C program."""
    from lstm_edge.export.c_export import program_from_onnx
    from lstm_edge.runtime.manifest import Manifest

    manifest = Manifest.load(KWS_DIR)
    program = program_from_onnx(KWS_DIR / manifest.file("onnx", "float").path, manifest)
    return [f"{m.shape[0]}x{m.shape[1]}" for layer in program.layers for m in layer.matrices]


def c_loop(work: Path, iterations: int) -> dict[str, dict[str, float]]:
    from lstm_edge.runtime.native_build import CFLAGS, find_compiler

    binary = work / "native_loop"
    flags = [f for f in CFLAGS if f not in ("-fPIC", "-shared")]
    subprocess.run([find_compiler() or "cc", *flags, f"-I{NATIVE}", "-o", str(binary),
                    str(ROOT / "benchmarks" / "native_loop.c"), str(NATIVE / "lstm_edge_model.c"),
                    str(NATIVE / "lstm_edge_kernels.c"), "-lm"], check=True)
    shapes = ",".join(weight_shapes())
    out: dict[str, dict[str, float]] = {}
    for kernel in ("", "avx2"):
        for precision, name in (("int8", "model.int8.lec"), ("float", "model.lec")):
            result = subprocess.run([str(binary), str(KWS_DIR / name), str(iterations), shapes], check=True,
                                    capture_output=True, text=True, env={**os.environ, "LEM_KERNEL": kernel})
            row = json.loads(result.stdout)
            if kernel and (row["kernels"] != kernel or row["kernels"] == out[precision]["kernels"]):
                break  # not an AVX2 CPU, or AVX2 is what runs anyway
            out[f"{precision} {kernel}".strip()] = row
    return out


def armv7_footprint(work: Path) -> dict[str, object]:
    from lstm_edge.devices.c_build import build_c

    folder = work / "armv7"
    record = build_c("armv7", folder, KWS_DIR)
    memory = {}
    for precision in ("int8", "float"):
        for chunk in (1, 10):
            info = subprocess.run(["qemu-arm", str(folder / "lstm-edge-run"), "--info", "--chunk", str(chunk),
                                   "--precision", precision, str(folder)], check=True, capture_output=True,
                                  text=True).stdout
            parsed = json.loads(info)
            memory[f"{precision} max_chunk={chunk}"] = {"model_bytes": parsed["model_bytes"],
                                                       "stream_bytes": parsed["stream_bytes"]}
    return {"library_size": record["library_size"], "compiler": record["compiler"], "memory": memory}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=4000)
    parser.add_argument("--c-iterations", type=int, default=20000)
    args = parser.parse_args()

    latencies = push_latencies(args.repeats)
    from lstm_edge.runtime import native_build

    binding = "extension" if native_build.push_extension() is not None else f"ctypes ({native_build.push_unavailable})"
    print(f"stream.push on the shipped keyword spotter (us per call, one thread, interleaved medians; native push: "
          f"{binding}):")
    for key, row in latencies.items():
        print(f"  {key:18s} T=1 {row['T=1_us']:8.2f}   T=10 {row['T=10_us']:8.2f} ({row['T=10_us'] / 10:6.2f} "
              f"per frame)   {row['engine']}")
    native = latencies["native int8"]
    litert = latencies["litert int8"]
    ratios = {"native_int8_vs_litert_int8_T1": litert["T=1_us"] / native["T=1_us"],
              "native_int8_vs_litert_int8_T10": litert["T=10_us"] / native["T=10_us"],
              "native_int8_vs_onnx_int8_T1": latencies["onnx int8"]["T=1_us"] / native["T=1_us"],
              "extension_vs_ctypes_push_T1": latencies["native int8 ctypes"]["T=1_us"] / native["T=1_us"],
              "extension_vs_ctypes_push_T10": latencies["native int8 ctypes"]["T=10_us"] / native["T=10_us"]}
    print("  speed-up of native int8: " + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items()))
    print(f"  targets: T=1 <= {TARGET_T1_US} us: {native['T=1_us']:.2f} us; T=10 <= {TARGET_T10_US_PER_FRAME} us "
          f"per frame: {native['T=10_us'] / 10:.2f} us; as a ratio, native int8 >= {TARGET_T1_RATIO}x LiteRT int8 "
          f"at T=1: {ratios['native_int8_vs_litert_int8_T1']:.2f}x; native int8 >= {TARGET_T10_RATIO}x LiteRT int8 "
          f"at T=10: {ratios['native_int8_vs_litert_int8_T10']:.2f}x")
    with tempfile.TemporaryDirectory() as tmp:
        loop = c_loop(Path(tmp), args.c_iterations)
        for precision, row in loop.items():
            ratio = row["push_t1_us"] / row["floor_us_per_frame"]
            row["t1_over_floor"] = round(ratio, 3)
            row["t10_over_floor"] = round(row["push_t10_us_per_frame"] / row["floor_us_per_frame"], 3)
            kind = "int8" if row["int8"] else "float"
            print(f"C loop {precision:10s} ({row['kernels']}): T=1 {row['push_t1_us']:.2f} us, T=10 "
                  f"{row['push_t10_us_per_frame']:.2f} us/frame; {kind} matvec floor {row['floor_us_per_frame']:.2f} "
                  f"us/frame; T=1 / floor {ratio:.2f} (target <= {TARGET_FLOOR_RATIO} for int8)")
        footprint = armv7_footprint(Path(tmp))
    size = footprint["library_size"]
    print(f"armv7 library code (text): {size['text']} bytes total, per object {size['text_per_object']} "  # type: ignore[index]
          f"(target < 100 KB)")
    for key, row in footprint["memory"].items():  # type: ignore[attr-defined]
        print(f"armv7 RAM {key}: model {row['model_bytes']} bytes, stream {row['stream_bytes']} bytes")
    print("saved", save("native", {"repeats": args.repeats, "native_push": binding, "push_us": latencies,
                                   "ratios": ratios, "c_loop": loop,
                                   "armv7": footprint,
                                   "targets": {"t1_us": TARGET_T1_US, "t10_us_per_frame": TARGET_T10_US_PER_FRAME,
                                               "t1_over_litert": TARGET_T1_RATIO,
                                               "t10_over_litert": TARGET_T10_RATIO,
                                               "c_loop_over_floor": TARGET_FLOOR_RATIO, "code_bytes": 100_000}}))


if __name__ == "__main__":
    main()
