"""Export a trained keyword spotter (``train.py`` output) as a streaming model directory: ONNX + TFLite, float +
int8, parity verified against the float torch model (and clip accuracy on its ``eval_clips.npz``). The TFLite files
also get signatures for 4 and 16 streams per call (``StreamBatch`` on LiteRT).

The manifest's ``detector`` holds the detection settings of ``config.json`` (``detector``: the threshold chosen on
validation streams by ``detection.py --choose-threshold``; the runtime defaults without one) and the clip rule.

Run: ``python -m lstm_edge.recipes.kws.export_model --model-dir models/kws --out models/kws/export``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from lstm_edge.recipes.kws.model import feature_normalization, load_model
from lstm_edge.runtime.audio import load_mono
from lstm_edge.runtime.frontend import LogMelConfig, LogMelFrontend
from lstm_edge.runtime.kws import DetectorConfig


def detector_settings(config: dict[str, Any]) -> DetectorConfig:
    """The detector of a trained model's config (runtime defaults for settings it does not name)."""
    return DetectorConfig(**config.get("detector", {}))


def export_trained(model_dir: Path, out_dir: Path, name: str = "kws-lstm", quantized: bool = True,
                   verify: bool = True) -> dict[str, Any]:
    """Export + int8 (+ parity) of the model in ``model_dir``; ``demo.wav`` there is the reference input.
    Returns the parity report (empty without ``verify``)."""
    from lstm_edge.export import export
    from lstm_edge.export.tflite_batch import DEFAULT_BATCH_SIZES
    from lstm_edge.quantize import quantize
    from lstm_edge.quantize.parity import parity_report
    from lstm_edge.quantize.tasks import clip_predictor_for
    from lstm_edge.runtime.manifest import Manifest

    torch.set_num_threads(1)
    model_dir = Path(model_dir)
    model, config = load_model(model_dir)
    frontend_config = LogMelConfig.from_dict(config["frontend"])
    audio, _ = load_mono(model_dir / "demo.wav", frontend_config.sample_rate)
    features = LogMelFrontend(frontend_config).compute(audio)
    export(model, torch.from_numpy(features[None, :10]), out_dir, formats=("onnx", "tflite"), chunk_sizes=(10, 1),
           labels=config["labels"], frontend=frontend_config.to_dict(feature_normalization(model)), name=name,
           output_semantics="logits",
           detector=detector_settings(config).to_manifest(clip_rule=config["clip_rule"]), reference_input=features,
           tflite_batch_sizes=DEFAULT_BATCH_SIZES)
    if quantized:
        quantize(out_dir)
    if not verify:
        return {}
    return parity_report(out_dir, eval_data=model_dir / "eval_clips.npz",
                         clip_predictor=clip_predictor_for(Manifest.load(out_dir)))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", type=Path, required=True, help="directory with config.json and float.pt")
    parser.add_argument("--out", type=Path, required=True, help="model directory to write")
    args = parser.parse_args(argv)
    report = export_trained(args.model_dir, args.out)
    print(json.dumps({"failures": report.get("failures")}))
    return 0 if not report.get("failures") else 1


if __name__ == "__main__":
    raise SystemExit(main())
