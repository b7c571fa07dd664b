"""stream.push against a bare LiteRT signature-runner call on the same model and inputs, at T=1 and T=10.

Target: push overhead <= 15%. The backend itself skips the runner's per-call resize and re-allocation, so it can
be faster than the bare runner. Run: python benchmarks/bench_litert_overhead.py [--repeats N]
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np

from _common import interleaved_medians, reference_model, save


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=4000)
    args = parser.parse_args()

    import torch
    from ai_edge_litert.interpreter import Interpreter

    from lstm_edge.export import export
    from lstm_edge.runtime import StreamingModel

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = export(reference_model(), torch.randn(1, 10, 40), tmp, formats=("tflite",), chunk_sizes=(10, 1))
        model = StreamingModel.load(model_dir, backend="litert", threads=1)
        manifest = model.manifest
        entry = manifest.file("tflite", "float")
        interpreter = Interpreter(model_path=str(model_dir / entry.path), num_threads=1)
        state = {s.input: s.initial_value() for s in manifest.states}
        rows = {}
        print(f"{model.engine}, {args.repeats} repeats, median us per call")
        for length in (1, 10):
            runner = interpreter.get_signature_runner(entry.signatures[str(length)])
            chunk = np.random.default_rng(0).standard_normal((length, 40)).astype(np.float32)
            batched = chunk[None]
            stream = model.create_stream()
            medians = interleaved_medians({
                "bare signature runner": lambda: runner(x=batched, **state),
                "stream.push": lambda: stream.push(chunk),
            }, args.repeats)
            ratio = medians["stream.push"] / medians["bare signature runner"]
            rows[f"T={length}"] = {**medians, "push_over_bare": ratio}
            print(f"T={length:2d}: bare runner {medians['bare signature runner']:7.2f} us   stream.push "
                  f"{medians['stream.push']:7.2f} us   ratio {ratio:.3f}  (overhead {100 * (ratio - 1):+.1f}%, "
                  "target <= +15%)")
    print("saved", save("litert_overhead", {"engine": model.engine, "repeats": args.repeats, "results": rows}))


if __name__ == "__main__":
    main()
