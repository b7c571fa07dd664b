"""A Silero-VAD-style step model (tests/vad_like.py: 512 samples a step, STFT as a strided Conv1d, four Conv1d
blocks, LSTMCell, 1x1 head; seeded random weights) on every engine: µs per step through ``stream.push``, one run,
timed in alternating rounds side by side, one thread. The int8 files are mixed precision (``quantize`` on 8 random
streams, then ``add-c``: the C int8 file keeps the same layers float as the ONNX one).

Run: python benchmarks/bench_native_step.py [--repeats N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from _common import interleaved_medians, save  # noqa: E402

ENGINES = {"native": "c", "litert": "tflite", "onnx": "onnx"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2000)
    args = parser.parse_args()
    import torch

    from lstm_edge.export import export
    from lstm_edge.export.c_export import add_c_files
    from lstm_edge.quantize import quantize
    from lstm_edge.runtime import StreamingModel
    from lstm_edge.runtime.manifest import Manifest

    import vad_like

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = vad_like.SileroLike().eval()
    rng = np.random.default_rng(0)
    steps = (rng.normal(size=(64, 512)) * 0.1).astype(np.float32)
    calibration = [(rng.normal(size=(48, 512)) * 0.1).astype(np.float32) for _ in range(8)]
    with tempfile.TemporaryDirectory() as folder:
        out = export(model, torch.from_numpy(steps[:1]), Path(folder) / "silero", formats=("onnx", "tflite"),
                     reference_input=steps, output_semantics="probabilities")
        quantize(out, calibration=calibration, formats=("onnx", "tflite"))
        manifest = add_c_files(out)
        kept = {fmt: [layer["name"] for layer in manifest.file(fmt, "int8").quantization.get("float_layers", [])]
                for fmt in ENGINES.values()}
        calls, outputs = {}, {}
        for backend in ENGINES:
            for precision in ("float", "int8"):
                stream = StreamingModel.load(out, backend=backend, precision=precision).create_stream()
                outputs[f"{backend} {precision}"] = np.stack([stream.push(x) for x in steps])
                calls[f"{backend} {precision}"] = (lambda s=stream: s.push(steps[0]))
        medians = interleaved_medians(calls, args.repeats)
        reference = outputs["onnx float"]
        agreement = {name: float(np.mean((y >= 0.5) == (reference >= 0.5))) for name, y in outputs.items()}
        max_diff = {name: float(np.abs(y - reference).max()) for name, y in outputs.items()}
        c_bytes = {p: Manifest.load(out).file("c", p).bytes for p in ("float", "int8")}
    print("µs per step (median), one thread, side by side:")
    for name, value in medians.items():
        print(f"  {name:13s} {value:8.1f}  max|diff| vs onnx float {max_diff[name]:.2e}")
    for precision in ("float", "int8"):
        native = medians[f"native {precision}"]
        print(f"native {precision}: {medians[f'litert {precision}'] / native:.2f}x LiteRT {precision}, "
              f"{medians[f'onnx {precision}'] / native:.2f}x ONNX {precision}")
    print(f"float layers of the int8 files: {kept}; C file bytes {c_bytes}")
    path = save("native_step", {"model": "tests/vad_like.py SileroLike, torch.manual_seed(0)", "repeats": args.repeats,
                                "us_per_step": medians, "max_diff_vs_onnx_float": max_diff,
                                "decision_agreement_vs_onnx_float": agreement, "float_layers": kept,
                                "c_bytes": c_bytes})
    print(f"saved {path}")


if __name__ == "__main__":
    main()
