"""Per-call overhead of the LiteRT backend against a bare signature-runner call.

Model: Linear 40->64, LSTM 64x2, Linear 64->12, written by the TFLite writer with chunk_10 and chunk_1.
Times (one thread, calls taking turns, median over many repeats, microseconds) at T=1 and T=10, side by side:
  runner    bare ``interpreter.get_signature_runner(key)(**inputs)``, runner fetched once
  backend   ``LiteRTBackend.run(x, states)``
  push      ``stream.push(chunk)`` on ``StreamingModel.load(dir, backend="litert")``

    python benchmarks/bench_litert_overhead.py [--repeats 3000] [--model-dir DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

FEATURES, HIDDEN, LAYERS, CLASSES = 40, 64, 2, 12
LENGTHS = (10, 1)


def build_model_dir(model_dir: Path) -> None:
    """Export the benchmark model with the TFLite writer and write its manifest by hand."""
    import torch

    from lstm_edge.export.tflite_export import write_tflite
    from lstm_edge.runtime.manifest import Manifest, StateSpec, TensorSpec, file_entry

    class Model(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = torch.nn.Linear(FEATURES, HIDDEN)
            self.lstm = torch.nn.LSTM(HIDDEN, HIDDEN, LAYERS, batch_first=True)
            self.head = torch.nn.Linear(HIDDEN, CLASSES)

        def forward(self, x, h_in, c_in):
            y, (h_out, c_out) = self.lstm(self.proj(x), (h_in, c_in))
            return self.head(y), h_out, c_out

    torch.manual_seed(0)
    zeros = torch.zeros(LAYERS, 1, HIDDEN)
    model_dir.mkdir(parents=True, exist_ok=True)
    signatures = write_tflite(Model().eval(), torch.randn(1, 10, FEATURES), (zeros, zeros), "x", "y",
                              ["lstm_h_in", "lstm_c_in"], ["lstm_h_out", "lstm_c_out"], LENGTHS,
                              model_dir / "model.tflite")
    states = tuple(StateSpec(n, n + "_in", n + "_out", "float32", (LAYERS, 1, HIDDEN)) for n in ("lstm_h", "lstm_c"))
    entry = file_entry(model_dir, "model.tflite", "tflite", "float", chunk_sizes=LENGTHS, signatures=signatures)
    Manifest(kind="sequence", inputs=(TensorSpec("x", "float32", (1, "T", FEATURES)),),
             outputs=(TensorSpec("y", "float32", (1, "T", CLASSES)),), states=states, files=(entry,)).save(model_dir)


def interleaved_medians_us(calls: list[Callable[[], object]], repeats: int) -> list[float]:
    """Median time of each call; the calls take turns so that load from other processes hits them alike."""
    for _ in range(max(50, repeats // 10)):
        for call in calls:
            call()
    clock = time.perf_counter_ns
    samples = np.empty((len(calls), repeats))
    for i in range(repeats):
        for j, call in enumerate(calls):
            start = clock()
            call()
            samples[j, i] = clock() - start
    return [float(v) / 1000.0 for v in np.median(samples, axis=1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3000)
    parser.add_argument("--model-dir", type=Path, help="reuse a directory written by an earlier run")
    args = parser.parse_args()

    model_dir = args.model_dir or Path(tempfile.mkdtemp(prefix="bench_litert_")) / "model"
    if not (model_dir / "manifest.json").is_file():
        build_model_dir(model_dir)

    from ai_edge_litert.interpreter import Interpreter

    from lstm_edge.runtime import StreamingModel
    from lstm_edge.runtime.backends import litert
    from lstm_edge.runtime.manifest import Manifest

    manifest = Manifest.load(model_dir)
    entry = manifest.file("tflite", "float")
    interpreter = Interpreter(model_path=str(model_dir / entry.path), num_threads=1)
    backend = litert.open(model_dir, manifest, entry, 1)
    model = StreamingModel.load(model_dir, backend="litert", threads=1)
    rng = np.random.default_rng(0)
    state = [np.zeros((LAYERS, 1, HIDDEN), np.float32) for _ in range(2)]

    print(f"{backend.engine}, model dir {model_dir}, {args.repeats} repeats, median us per call")
    print(f"{'T':>3} {'runner':>8} {'backend':>8} {'push':>8} {'backend/runner':>15} {'push/runner':>12}")
    for length in sorted(LENGTHS):
        runner = interpreter.get_signature_runner(entry.signatures[str(length)])
        x = rng.standard_normal((1, length, FEATURES)).astype(np.float32)
        chunk = x[0]
        stream = model.create_stream()
        bare, run, push = interleaved_medians_us([
            lambda: runner(x=x, lstm_h_in=state[0], lstm_c_in=state[1]),
            lambda: backend.run(x, state),
            lambda: stream.push(chunk),
        ], args.repeats)
        print(f"{length:>3} {bare:8.2f} {run:8.2f} {push:8.2f} {run / bare:15.2f} {push / bare:12.2f}")


if __name__ == "__main__":
    main()
