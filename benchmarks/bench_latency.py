"""Per-chunk latency of torch eager, onnxruntime and LiteRT (float and int8) on the same models, in one run.

Two sizes: the reference model (Linear 40->64, LSTM 64x2, Linear 64->12) and a wide one (LSTM 256x2), where the
float weights no longer fit the L2 cache. One thread everywhere, state carried, medians of interleaved rounds.
Flags every case where int8 is slower than float. Run: python benchmarks/bench_latency.py [--repeats N]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from lstm_edge.runtime.backends import NAMES
from lstm_edge.runtime.manifest import PRECISIONS

from _common import interleaved_medians, reference_model, save


def wide_model():
    import torch
    from torch import nn

    class Wide(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inp = nn.Linear(40, 256)
            self.lstm = nn.LSTM(256, 256, num_layers=2, batch_first=True)
            self.out = nn.Linear(256, 12)

        def forward(self, x):
            return self.out(self.lstm(torch.relu(self.inp(x)))[0])

    torch.manual_seed(0)
    return Wide().eval()


def measure(name: str, model, tmp: Path, repeats: int) -> dict:
    import torch

    from lstm_edge.export import export
    from lstm_edge.export.wrap import SequenceStreamer
    from lstm_edge.quantize import quantize
    from lstm_edge.runtime import StreamingModel

    torch.set_num_threads(1)
    model_dir = export(model, torch.randn(1, 10, 40), tmp / name, formats=("onnx", "tflite"), chunk_sizes=(10, 1))
    quantize(model_dir)
    streamer = SequenceStreamer(model, torch.randn(1, 10, 40))
    loaded = {(b, p): StreamingModel.load(model_dir, backend=b, precision=p)
              for b in NAMES for p in PRECISIONS}
    sizes = {f"{f.format}/{f.precision}": f.bytes for f in loaded[("onnx", "float")].manifest.files}
    results = {}
    for frames in (1, 10):
        x = np.random.default_rng(0).standard_normal((frames, 40)).astype(np.float32)
        xt = torch.from_numpy(x[None])
        state = tuple(slot.initial for slot in streamer.slots)

        def torch_call(xt=xt, state=state):
            with torch.no_grad():
                return streamer(xt, *state)

        calls = {"torch eager float": torch_call}
        for (backend, precision), streaming in loaded.items():
            stream = streaming.create_stream()
            calls[f"{backend} {precision}"] = (lambda s=stream, x=x: s.push(x))
        medians = interleaved_medians(calls, repeats)
        results[f"T={frames}"] = medians
    flags = []
    for key, medians in results.items():
        for backend in NAMES:
            ratio = medians[f"{backend} int8"] / medians[f"{backend} float"]
            if ratio > 1.0:
                flags.append(f"{name} {key}: {backend} int8 is {100 * (ratio - 1):.0f}% SLOWER than float "
                             f"({medians[f'{backend} int8']:.1f} vs {medians[f'{backend} float']:.1f} us)")
    return {"sizes_bytes": sizes, "latency_us": results, "int8_slower": flags,
            "engines": {f"{b}/{p}": m.engine for (b, p), m in loaded.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=2000)
    args = parser.parse_args()
    payload = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, factory in (("lstm64x2", reference_model), ("lstm256x2", wide_model)):
            result = measure(name, factory(), Path(tmp), args.repeats)
            payload[name] = result
            print(f"\n{name}: per-chunk latency, microseconds (median, one thread, stream.push with state carried)")
            columns = list(result["latency_us"]["T=1"])
            print(f"{'':6s}" + "".join(f"{c:>19s}" for c in columns))
            for key, medians in result["latency_us"].items():
                print(f"{key:6s}" + "".join(f"{medians[c]:19.1f}" for c in columns))
            print("sizes KB: " + ", ".join(f"{k} {v / 1024:.0f}" for k, v in result["sizes_bytes"].items()))
            for flag in result["int8_slower"]:
                print("FLAG", flag)
    print("saved", save("latency", {"repeats": args.repeats, "models": payload}))


if __name__ == "__main__":
    main()
