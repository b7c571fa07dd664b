"""End-to-end real-time factor of keyword spotting: frontend + model + detection, 100 ms chunks, one core.

RTF = processing time / audio duration (target <= 0.002 for the shipped spotter). Each backend x precision
streams the same recording in alternating rounds. Run: python benchmarks/bench_kws_rtf.py [--model-dir DIR] [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from lstm_edge.runtime.backends import NAMES

from _common import save


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-dir", default=None, help="default: the shipped models/kws/export")
    parser.add_argument("--wav", default=None, help="default: the shipped demo.wav")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    from lstm_edge.recipes.kws.model import shipped_model_dir
    from lstm_edge.runtime import StreamingModel
    from lstm_edge.runtime.audio import load_mono
    from lstm_edge.runtime.kws import KeywordSpotter

    assets = shipped_model_dir()
    model_dir = Path(args.model_dir) if args.model_dir else assets / "export"
    spotters = {}
    for backend in NAMES:
        for precision in ("float", "int8"):
            spotters[f"{backend} {precision}"] = KeywordSpotter(StreamingModel.load(model_dir, backend=backend,
                                                                                    precision=precision))
    first = next(iter(spotters.values()))
    audio, _ = load_mono(Path(args.wav) if args.wav else assets / "demo.wav", first.sample_rate)
    duration = len(audio) / first.sample_rate
    chunk = first.sample_rate // 10
    frontend = first.frontend

    def frontend_only():
        stream = frontend.create_stream()
        for start in range(0, len(audio), chunk):
            stream.push(audio[start:start + chunk])

    def run(spotter):
        return spotter.detect(audio, chunk_seconds=chunk / spotter.sample_rate)

    timings: dict[str, list[float]] = {name: [] for name in [*spotters, "frontend only"]}
    for _ in range(2):  # warm-up
        for spotter in spotters.values():
            run(spotter)
    for _ in range(args.rounds):
        for name, spotter in spotters.items():
            began = time.perf_counter()
            run(spotter)
            timings[name].append(time.perf_counter() - began)
        began = time.perf_counter()
        frontend_only()
        timings["frontend only"].append(time.perf_counter() - began)
    results = {}
    print(f"audio {duration:.1f} s in 100 ms chunks, {args.rounds} rounds, median")
    for name, values in timings.items():
        seconds = statistics.median(values)
        results[name] = {"seconds": seconds, "rtf": seconds / duration,
                         "per_chunk_ms": 1000 * seconds / (len(audio) / chunk)}
        print(f"  {name:14s} RTF {seconds / duration:.4f}  ({results[name]['per_chunk_ms']:.3f} ms per 100 ms chunk)"
              f"{'' if name == 'frontend only' else '  target <= 0.002'}")
    print("saved", save("kws_rtf", {"audio_seconds": duration, "rounds": args.rounds, "results": results}))


if __name__ == "__main__":
    main()
