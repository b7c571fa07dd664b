"""Batched streams on one core: the shipped keyword spotter (models/kws) at n = 1, 4, 16, 64 streams.

1. Python level, each backend and precision, chunks of T = 1 and T = 10 frames: n separate ``Stream``s pushed one
   after another against one ``StreamBatch`` of n slots pushed with one ``[n, T, 40]`` array, timed in alternating
   rounds (medians). Printed per stream per push, and as the ratio batch / separate, with the batch engine (LiteRT:
   the files' batch signatures for 4 and 16 streams, n = 64 as four calls of 16). Target (native backend): at
   n = 16 the batch's per-stream cost <= 0.35x a separate stream's.
2. C level: ``benchmarks/batch_loop.c`` built with the library's flags: n ``lem_stream_push`` calls against one
   ``lem_batch_push`` of the same n streams (no Python around either). Then, int8 only, the same with the LSTM gate
   arithmetic replaced by a constant h in a patched copy of the library (a measurement build): what the products
   and the rest cost per stream without the gate work, which every stream keeps under the bitwise contract.
3. Real-time keyword streams one core sustains: ``KeywordBatch`` (frontend + model + detector) over n streams of
   real audio (the demo recording, each stream starting at another offset) in 100 ms chunks, as a microphone
   delivers them, against n separate ``KeywordStream``s; streams = n * (audio seconds) / (processing seconds).
   Target: >= 200 streams.

The process is pinned to one core (``--cpu``, default 0) and every engine runs one thread.
Run: python benchmarks/bench_batch.py [--quick] [--cpu N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from _common import save

ROOT = Path(__file__).resolve().parent.parent
KWS_DIR = ROOT / "models" / "kws" / "export"
NATIVE = ROOT / "runtime" / "native"
STREAMS = (1, 4, 16, 64)
FRAMES = (1, 10)
TARGET_RATIO_AT_16 = 0.35
TARGET_REALTIME_STREAMS = 200


def alternating(calls: dict[str, Callable[[], object]], seconds: float, rounds: int = 15) -> dict[str, float]:
    """Median microseconds per call of each callable, timed in alternating rounds (each about ``seconds`` in
    all), after a few warm-up calls."""
    per_call = {}
    for name, call in calls.items():
        for _ in range(3):
            call()
        start = time.perf_counter()
        call()
        per_call[name] = max(time.perf_counter() - start, 1e-7)
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            count = max(1, int(seconds / rounds / per_call[name]))
            start = time.perf_counter()
            for _ in range(count):
                call()
            samples[name].append((time.perf_counter() - start) / count * 1e6)
    return {name: statistics.median(values) for name, values in samples.items()}


def python_level(seconds: float) -> list[dict[str, object]]:
    from lstm_edge.runtime import StreamingModel

    rows = []
    for backend in ("native", "litert", "onnx"):
        for precision in ("int8", "float"):
            model = StreamingModel.load(KWS_DIR, backend=backend, precision=precision, threads=1)
            for frames in FRAMES:
                for n in STREAMS:
                    x = np.random.default_rng(n * 100 + frames).standard_normal((n, frames, 40)).astype(np.float32)
                    streams = [model.create_stream() for _ in range(n)]
                    batch = model.create_batch(n)

                    def separate(streams=streams, x=x) -> None:
                        for stream, chunk in zip(streams, x):
                            stream.push(chunk)

                    times = alternating({"separate": separate, "batch": lambda b=batch, x=x: b.push(x)}, seconds)
                    row = {"backend": backend, "precision": precision, "T": frames, "n": n,
                           "engine": model.engine, "batch_engine": batch.engine.name,
                           "separate_us_per_stream": round(times["separate"] / n, 3),
                           "batch_us_per_stream": round(times["batch"] / n, 3),
                           "ratio": round(times["batch"] / times["separate"], 3)}
                    print(f"  {backend:6s} {precision:5s} T={frames:<2d} n={n:<3d} separate "
                          f"{row['separate_us_per_stream']:8.2f}  batch {row['batch_us_per_stream']:8.2f} us/stream"
                          f"  ratio {row['ratio']:.2f}  ({row['batch_engine']})", flush=True)
                    rows.append(row)
    return rows


# The LSTM gate dispatch of lstm_edge_model.c, and what the measurement build without gate arithmetic puts there
GATES = """static void lstm_gates(const lem_model *m, float *g, float *c, float *hidden, size_t h) {
    if (m->kernels->lstm_gates != NULL) m->kernels->lstm_gates(g, c, hidden, h);
    else lstm_gates_loop(g, c, hidden, h);
}"""
NO_GATES = """static void lstm_gates(const lem_model *m, float *g, float *c, float *hidden, size_t h) {
    size_t j;
    (void)m, (void)g, (void)c;
    for (j = 0; j < h; j++) hidden[j] = 0.1f; /* a bounded h, so the products keep running on finite values */
}"""


def build_batch_loop(work: Path, name: str, model_source: Path) -> Path:
    from lstm_edge.runtime.native_build import CFLAGS, find_compiler

    binary = work / name
    flags = [f for f in CFLAGS if f not in ("-fPIC", "-shared")]
    subprocess.run([find_compiler() or "cc", *flags, f"-I{NATIVE}", "-o", str(binary),
                    str(ROOT / "benchmarks" / "batch_loop.c"), str(model_source),
                    str(NATIVE / "lstm_edge_kernels.c"), "-lm"], check=True)
    return binary


def c_rows(binary: Path, label: str, precisions: tuple[str, ...]) -> list[dict[str, object]]:
    rows = []
    for precision in precisions:
        name = "model.int8.lec" if precision == "int8" else "model.lec"
        for frames in FRAMES:
            out = subprocess.run([str(binary), str(KWS_DIR / name), str(frames), ",".join(map(str, STREAMS))],
                                 check=True, capture_output=True, text=True).stdout
            for line in out.splitlines():
                row = {"precision": precision, **json.loads(line)}
                row["ratio"] = round(row["batch_us"] / row["separate_us"], 3)
                print(f"  {label} {precision:5s} T={frames:<2d} n={row['n']:<3d} separate "
                      f"{row['separate_us']:8.2f}  batch {row['batch_us']:8.2f} us/stream  ratio {row['ratio']:.2f}",
                      flush=True)
                rows.append(row)
    return rows


def c_level(work: Path) -> list[dict[str, object]]:
    return c_rows(build_batch_loop(work, "batch_loop", NATIVE / "lstm_edge_model.c"), "C", ("int8", "float"))


def c_without_gates(work: Path) -> list[dict[str, object]]:
    """The C level again, int8, with the LSTM gate arithmetic taken out of both forms (a measurement build, wrong
    results): how far the products and the rest go without the per-stream gate work the batch cannot share."""
    source = (NATIVE / "lstm_edge_model.c").read_text()
    if GATES not in source:
        raise SystemExit("bench_batch: lstm_edge_model.c's lstm_gates dispatch changed; update GATES")
    patched = work / "lstm_edge_model_no_gates.c"
    patched.write_text(source.replace(GATES, NO_GATES))
    return c_rows(build_batch_loop(work, "batch_loop_no_gates", patched), "C no gates", ("int8",))


def realtime(n: int, seconds_of_audio: float) -> dict[str, object]:
    from lstm_edge.runtime import StreamingModel
    from lstm_edge.runtime.audio import load_mono
    from lstm_edge.runtime.kws import KeywordSpotter

    pcm, _ = load_mono(KWS_DIR.parent / "demo.wav", 16000)
    chunk = 1600  # 100 ms
    rounds = int(seconds_of_audio / 0.1)
    loop = np.concatenate([pcm] * (int(seconds_of_audio * 16000 * 2 / len(pcm)) + 2))
    offsets = [(k * 7919) % len(pcm) for k in range(n)]
    chunks = [[loop[o + r * chunk:o + (r + 1) * chunk] for o in offsets] for r in range(rounds)]
    out: dict[str, object] = {"streams": n, "audio_seconds_per_stream": rounds * 0.1}
    for backend, precision in (("native", "int8"), ("native", "float"), ("litert", "int8")):
        spotter = KeywordSpotter(StreamingModel.load(KWS_DIR, backend=backend, precision=precision, threads=1))
        timings = {}
        for form in ("separate", "batch"):
            best = float("inf")
            for _ in range(3):
                if form == "batch":
                    batch = spotter.create_batch(n)
                    start = time.perf_counter()
                    for pieces in chunks:
                        batch.push(pieces)
                else:
                    streams = [spotter.create_stream() for _ in range(n)]
                    start = time.perf_counter()
                    for pieces in chunks:
                        for stream, piece in zip(streams, pieces):
                            stream.push(piece)
                best = min(best, time.perf_counter() - start)
            timings[form] = best
        for form, elapsed in timings.items():
            streams_per_core = n * rounds * 0.1 / elapsed
            out[f"{backend} {precision} {form}"] = {"seconds": round(elapsed, 4),
                                                    "realtime_streams_per_core": round(streams_per_core, 1)}
            print(f"  {backend} {precision} {form:8s} {n} streams x {rounds * 0.1:.1f} s of audio in "
                  f"{elapsed:.3f} s: {streams_per_core:8.1f} real-time keyword streams on one core", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="shorter timings (a smoke run, not for the README)")
    parser.add_argument("--cpu", type=int, default=0, help="the core to pin the process to (default 0)")
    args = parser.parse_args()
    os.sched_setaffinity(0, {args.cpu})
    seconds = 0.05 if args.quick else 0.4
    print("1. StreamBatch vs separate Streams (us per stream per push; ratio = batch / separate):")
    python_rows = python_level(seconds)
    print("2. lem_batch_push vs lem_stream_push in C (us per stream per push):")
    with tempfile.TemporaryDirectory() as work:
        c_results = c_level(Path(work))
        print("2b. the same without the LSTM gate arithmetic (a measurement build: the products and the rest only):")
        no_gates = c_without_gates(Path(work))
    print("3. real-time keyword streams on one core (frontend + model + detector, 100 ms chunks):")
    live = realtime(64, 1.0 if args.quick else 10.0)
    at16 = [r for r in python_rows if r["backend"] == "native" and r["n"] == 16]
    best16 = min(float(r["ratio"]) for r in at16)  # type: ignore[arg-type]
    streams = max(v["realtime_streams_per_core"] for k, v in live.items() if isinstance(v, dict))
    print(f"targets: native per-stream cost at n=16 <= {TARGET_RATIO_AT_16}x a separate stream's: "
          + ", ".join(f"{r['precision']} T={r['T']} {r['ratio']:.2f}x" for r in at16)
          + f"; real-time keyword streams on one core >= {TARGET_REALTIME_STREAMS}: {streams:.0f}")
    if not args.quick:
        path = save("batch", {"python": python_rows, "c": c_results, "c_without_gates": no_gates, "realtime": live,
                              "targets": {"ratio_at_16": TARGET_RATIO_AT_16, "best_native_ratio_at_16": best16,
                                          "realtime_streams": TARGET_REALTIME_STREAMS,
                                          "best_realtime_streams": streams}})
        print(f"saved {path}")


if __name__ == "__main__":
    main()
