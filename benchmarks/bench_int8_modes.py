"""Float, dynamic int8 and static int8 of the shipped keyword spotter on both backends, side by side in one run:
file size, stream.push latency at T=1 and T=10, argmax agreement with torch float over the stored reference
stream (at chunk 1, 10 and one push), and clip accuracy on held-out voices.

    python -m lstm_edge.recipes.kws.synth --out /tmp/kws_data     # or a smaller set: --train-per-class 40
    python benchmarks/bench_int8_modes.py --data /tmp/kws_data

Static is calibrated on ``--calibration-clips`` clips of the *training* split (never the test voices), streamed
with the state carried. Results: benchmarks/results/int8_modes.json.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import interleaved_medians, save  # noqa: E402

SHIPPED = Path(__file__).resolve().parent.parent / "models" / "kws" / "export"


def features(data_dir: Path, split: str, manifest, limit: int | None, seed: int = 0) -> tuple[list, np.ndarray]:
    from lstm_edge.recipes.kws.synth import load_split
    from lstm_edge.runtime.frontend import LogMelConfig, LogMelFrontend

    data = load_split(data_dir, split)
    order = np.random.default_rng(seed).permutation(len(data["labels"]))[:limit]
    frontend = LogMelFrontend(LogMelConfig.from_dict(dict(manifest.frontend)))
    return [frontend.compute(data["audio"][i]) for i in order], np.asarray(data["labels"])[order]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="output directory of recipes/kws/synth")
    parser.add_argument("--model-dir", type=Path, default=SHIPPED)
    parser.add_argument("--calibration-clips", type=int, default=200)
    parser.add_argument("--test-clips", type=int, default=None, help="default: the whole test split")
    parser.add_argument("--repeats", type=int, default=2000)
    args = parser.parse_args()

    from lstm_edge.quantize import quantize
    from lstm_edge.quantize.parity import parity_report
    from lstm_edge.quantize.tasks import clip_predictor_for
    from lstm_edge.runtime import StreamingModel
    from lstm_edge.runtime.errors import LstmEdgeError
    from lstm_edge.runtime.manifest import Manifest

    manifest = Manifest.load(args.model_dir)
    predict = clip_predictor_for(manifest)
    calibration, _ = features(args.data, "train", manifest, args.calibration_clips)
    test_inputs, test_labels = features(args.data, "test", manifest, args.test_clips)
    work = Path(tempfile.mkdtemp(prefix="int8_modes_"))
    dirs = {}
    for mode in ("dynamic", "static"):
        dirs[mode] = work / mode
        shutil.copytree(args.model_dir, dirs[mode])
        for stale in ("model.int8.onnx", "model.int8.tflite"):  # quantize writes these again (C files stay)
            (dirs[mode] / stale).unlink(missing_ok=True)
    quantize(dirs["dynamic"])
    rows: dict[str, dict] = {}
    static_error = None
    try:
        quantize(dirs["static"], calibration=calibration, mode="static")
    except LstmEdgeError as err:
        static_error = str(err)
    variants = [("float", dirs["dynamic"], "float"), ("dynamic", dirs["dynamic"], "int8")]
    if static_error is None:
        variants.append(("static", dirs["static"], "int8"))
    reports = {mode: parity_report(path, chunk=10) for mode, path in (("dynamic", dirs["dynamic"]),
                                                                       *((("static", dirs["static"]),)
                                                                         if static_error is None else ()))}
    rng = np.random.default_rng(0)
    chunks = {t: rng.standard_normal((t, manifest.input.shape[-1])).astype(np.float32) for t in (1, 10)}
    calls = {}
    for name, path, precision in variants:
        for backend in ("onnx", "litert"):
            key = f"{backend}/{name}"
            model = StreamingModel.load(path, backend=backend, precision=precision)
            entry = model.manifest.file("onnx" if backend == "onnx" else "tflite", precision)
            report = reports["static" if name == "static" else "dynamic"]
            parity = next(r for r in report["results"] if r["backend"] == backend and r["precision"] == precision)
            predictions = []
            for clip in test_inputs:
                stream = model.create_stream()
                predictions.append(predict(np.concatenate([stream.push(clip[i:i + 10])
                                                           for i in range(0, len(clip), 10)])))
            rows[key] = {"bytes": entry.bytes, "argmax_agreement": parity["argmax_agreement"],
                         "by_chunk": parity.get("by_chunk"), "chunking_spread": parity.get("chunking_spread"),
                         "test_accuracy": float(np.mean(np.asarray(predictions) == test_labels))}
            for t, x in chunks.items():
                stream = model.create_stream()
                calls[f"{key}/T={t}"] = (lambda s=stream, x=x: s.push(x))
    latency = interleaved_medians(calls, args.repeats)
    float_bytes = {b: rows[f"{b}/float"]["bytes"] for b in ("onnx", "litert")}
    for key, row in rows.items():
        backend = key.split("/")[0]
        row["size_ratio"] = row["bytes"] / float_bytes[backend]
        for t in (1, 10):
            row[f"us_T{t}"] = latency[f"{key}/T={t}"]
            row[f"vs_float_T{t}"] = latency[f"{key}/T={t}"] / latency[f"{backend}/float/T={t}"]
    float_accuracy = rows["onnx/float"]["test_accuracy"]
    for row in rows.values():
        row["accuracy_drop_points"] = 100 * (float_accuracy - row["test_accuracy"])
    print(f"{'variant':16s} {'KB':>7s} {'ratio':>6s} {'argmax':>7s} {'1/10/all':>22s} {'test acc':>8s} "
          f"{'T=1 us':>8s} {'T=10 us':>8s} {'vs float T1/T10':>16s}")
    for key, row in rows.items():
        sweep = "/".join(f"{100 * m['argmax_agreement']:.1f}" for m in (row["by_chunk"] or {}).values())
        print(f"{key:16s} {row['bytes'] / 1024:7.1f} {row['size_ratio']:6.2f} {100 * row['argmax_agreement']:6.2f}% "
              f"{sweep:>22s} {100 * row['test_accuracy']:7.2f}% {row['us_T1']:8.1f} {row['us_T10']:8.1f} "
              f"{row['vs_float_T1']:7.2f}/{row['vs_float_T10']:.2f}")
    if static_error:
        print(f"static: refused: {static_error}")
    path = save("int8_modes", {"model": manifest.name, "calibration_clips": len(calibration),
                               "calibration_split": "train", "test_clips": len(test_labels), "results": rows,
                               "static_error": static_error, "repeats": args.repeats})
    shutil.rmtree(work)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
