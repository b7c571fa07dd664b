"""Accuracy of an exported keyword-spotting model directory on a synthesised split, per backend x precision.

Runs through the runtime only (frontend, StreamingModel, the clip rule), one fresh stream per clip, so the numbers
are those of the deployed files, float and int8:

    python -m lstm_edge.recipes.kws.evaluate --data /tmp/kws_data --model-dir models/kws/export \
        --out models/kws/eval_report.json
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lstm_edge.recipes.kws.synth import load_split
from lstm_edge.runtime import ManifestError, StreamingModel
from lstm_edge.runtime.frontend import LogMelConfig, LogMelFrontend
from lstm_edge.runtime.kws import clip_prediction

VARIANTS = (("onnx", "float"), ("onnx", "int8"), ("litert", "float"), ("litert", "int8"))


def evaluate(data_dir: Path, model_dir: Path, split: str = "test", chunk: int = 10) -> dict:
    data = load_split(data_dir, split)
    first = StreamingModel.load(model_dir, backend="onnx")
    manifest = first.manifest
    rule = (manifest.detector or {}).get("clip_rule") or manifest.extra.get("clip_rule")
    if manifest.frontend is None or manifest.labels is None or not rule:
        raise ManifestError(f"{model_dir}: expected a keyword-spotting model directory (frontend, labels and a "
                            "clip rule in its manifest)")
    labels_of_model = manifest.labels
    frontend = LogMelFrontend(LogMelConfig.from_dict(dict(manifest.frontend)))
    features = [frontend.compute(clip) for clip in data["audio"]]
    labels = np.asarray(data["labels"])
    index = json.loads((Path(data_dir) / "index.json").read_text())
    report = {"split": split, "clips": int(len(labels)), "labels": list(labels_of_model),
              "voices": len(index["splits"][split]["voices_used"]), "data_config": index["config"], "results": {}}
    for backend, precision in VARIANTS:
        model = StreamingModel.load(model_dir, backend=backend, precision=precision)
        began = time.perf_counter()
        predicted: list[int] = []
        for clip in features:
            stream = model.create_stream()
            logits = np.concatenate([stream.push(clip[i:i + chunk]) for i in range(0, len(clip), chunk)])
            predicted.append(clip_prediction(logits, rule))
        predictions = np.asarray(predicted)
        per_label = {label: float(np.mean(predictions[labels == index] == index))
                     for index, label in enumerate(labels_of_model) if np.any(labels == index)}
        is_flite = np.char.startswith(np.asarray(data["voices"]).astype(str), "flite:")
        per_synthesiser = {name: float(np.mean(predictions[chosen] == labels[chosen]))
                           for name, chosen in (("flite", is_flite), ("espeak-ng", ~is_flite & (labels != 0)))
                           if np.any(chosen)}
        report["results"][f"{backend}/{precision}"] = {
            "accuracy": float(np.mean(predictions == labels)), "per_label": per_label,
            "per_synthesiser": per_synthesiser, "engine": model.engine, "seconds": time.perf_counter() - began}
    float_accuracy = report["results"]["onnx/float"]["accuracy"]
    for row in report["results"].values():
        row["drop_vs_onnx_float_points"] = 100 * (float_accuracy - row["accuracy"])
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, type=Path, help="output folder of lstm_edge.recipes.kws.synth")
    parser.add_argument("--model-dir", required=True, type=Path, help="exported model directory (float and int8)")
    parser.add_argument("--split", default="test", choices=("train", "validation", "test"))
    parser.add_argument("--out", type=Path, help="write the report here (JSON)")
    args = parser.parse_args(argv)
    report = evaluate(args.data, args.model_dir, args.split)
    for key, row in report["results"].items():
        by_synthesiser = ", ".join(f"{name} {100 * value:.1f}%" for name, value in row["per_synthesiser"].items())
        print(f"{key:14s} accuracy {100 * row['accuracy']:.2f}%  (drop vs onnx/float "
              f"{row['drop_vs_onnx_float_points']:+.2f} points; {by_synthesiser})  {row['engine']}")
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
