"""stream.push against a bare onnxruntime session.run on the same model and inputs, at T=1 and T=10.

Target: push overhead <= 15%. Run: python benchmarks/bench_onnx_overhead.py [--repeats N]
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np

from _common import interleaved_medians, reference_model, save


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=4000)
    args = parser.parse_args()

    import onnxruntime as ort
    import torch

    from lstm_edge.export import export
    from lstm_edge.runtime import StreamingModel

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = export(reference_model(), torch.randn(1, 10, 40), tmp)
        model = StreamingModel.load(model_dir, backend="onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(model_dir / "model.onnx"), options, providers=["CPUExecutionProvider"])
        names = ["y", *[s.output for s in model.manifest.states]]
        rows = {}
        for frames in (1, 10):
            x = np.random.default_rng(0).standard_normal((frames, 40)).astype(np.float32)
            batched = x[None]
            state = {s.input: s.initial_value() for s in model.manifest.states}
            stream = model.create_stream()
            medians = interleaved_medians({
                "bare session.run": lambda: session.run(names, {"x": batched, **state}),
                "stream.push": lambda: stream.push(x),
            }, args.repeats)
            ratio = medians["stream.push"] / medians["bare session.run"]
            rows[f"T={frames}"] = {**medians, "push_over_bare": ratio}
            print(f"T={frames:2d}: bare session.run {medians['bare session.run']:7.2f} us   stream.push "
                  f"{medians['stream.push']:7.2f} us   ratio {ratio:.3f}  (overhead {100 * (ratio - 1):+.1f}%, "
                  "target <= +15%)")
    print("saved", save("onnx_overhead", {"engine": model.engine, "repeats": args.repeats, "results": rows}))


if __name__ == "__main__":
    main()
