"""Dynamic int8 before and after automatic mixed precision, per zoo model and a Silero-VAD-style model, on ONNX and
LiteRT: relative error of int8 against float (rms of the difference over the float outputs' std), the Silero-like
model's speech/non-speech agreement, and the layers kept float.

    python benchmarks/bench_mixed_precision.py            # measure (about 5 minutes on 2 cores), print the table
    python benchmarks/bench_mixed_precision.py --table    # the table of the saved results only

Zoo models (tests/zoo.py, seeded random weights) are measured on their reference input (1200 random frames, or 200
random steps). The Silero-like model (tests/vad_like.py) is trained for 150 steps on espeak-ng speech with silence,
noise and a DC offset, and measured on held-out streams, which are also the data mixed precision chooses on. The
shipped keyword spotter and speech recognizer (models/kws, models/asr) are requantized from their float files and
measured on their reference input.
"before" is every layer int8 (``mixed=False``); "after" is the default. Results:
benchmarks/results/mixed_precision.json.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from _common import save  # noqa: E402

SHIPPED = ("kws", "asr")  # the trained models in models/, their float files requantized
ZOO = ("feature_lstm", "projected", "tokens_time_major", "learned_h0", "stacked_residual", "gru", "causal_crnn",
       "dilated_tcn", "depthwise_separable", "cell_step", "context_step", "grucell_step", "vad_step",
       "last_state_classifier", "last_frame_tokens")
BACKENDS = {"onnx": "onnx", "tflite": "litert"}
MODELS = Path(__file__).resolve().parent.parent / "models"


def _float_copy(src: Path, dst: Path) -> None:
    """A shipped model directory with only its float ONNX and TFLite files."""
    from dataclasses import replace

    from lstm_edge.runtime.manifest import Manifest

    shutil.copytree(src, dst)
    manifest = Manifest.load(dst)
    replace(manifest, files=tuple(f for f in manifest.files if f.precision == "float" and f.format != "c")).save(dst)


def _measure(model_dir: Path, formats: list[str], streams: list[np.ndarray] | None, mixed: bool) -> dict:
    from lstm_edge.quantize import quantize
    from lstm_edge.quantize.mixed import stream_all
    from lstm_edge.runtime import StreamingModel
    from lstm_edge.runtime.manifest import Manifest

    try:
        quantize(model_dir, calibration=streams, formats=formats, mixed=mixed, report=mixed)
    except Exception as err:  # a refused model is a result too
        return {fmt: {"error": str(err)} for fmt in formats}
    manifest = Manifest.load(model_dir)
    if streams is None:
        streams = [np.load(model_dir / manifest.reference["input"])]
    out = {}
    for fmt in formats:
        model = {p: StreamingModel.load(model_dir, backend=BACKENDS[fmt], precision=p) for p in ("float", "int8")}
        chunk = max(manifest.file(fmt, "float").chunk_sizes or (10,))
        y_float, y_int8 = (stream_all(model[p], streams, chunk) for p in ("float", "int8"))
        record = manifest.file(fmt, "int8").quantization
        row = {"relative_error": float(np.sqrt(np.mean((y_int8 - y_float) ** 2)) / y_float.std()),
               "float_layers": [layer["name"] for layer in record.get("float_layers", [])],
               "weight_scales": record.get("mixed_precision", {}).get("weight_scales"),
               "bytes": manifest.file(fmt, "int8").bytes, "float_bytes": manifest.file(fmt, "float").bytes}
        if manifest.output.semantics == "probabilities":
            row["decision_agreement"] = float(np.mean((y_int8 >= 0.5) == (y_float >= 0.5)))
        out[fmt] = row
    if mixed:
        out["sensitivity"] = json.loads((model_dir / "sensitivity.json").read_text())["files"]
    return out


def main() -> None:
    import torch

    from lstm_edge.export import export

    import vad_like
    import zoo

    torch.set_num_threads(1)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in (*ZOO, "silero_like", *SHIPPED):
            float_dir = Path(tmp) / name
            streams = None
            if name == "silero_like":
                _, streams, _ = vad_like.trained_export(float_dir)
            elif name in SHIPPED:
                _float_copy(MODELS / name / "export", float_dir)
            else:
                model, example = zoo.build(name)
                export(model, example, float_dir, formats=("onnx", "tflite"), chunk_sizes=(10, 1))
            formats = ["tflite"] if name == "gru" else ["onnx", "tflite"]  # onnxruntime has no integer GRU
            results[name] = {}
            for label, mixed in (("before", False), ("after", True)):
                target = Path(tmp) / f"{name}-{label}"
                shutil.copytree(float_dir, target)
                results[name][label] = _measure(target, formats, streams, mixed)
            print(_line(name, results[name]), flush=True)
    save("mixed_precision", {"models": results, "gate": "relative error <= 6% (Silero-like: also decision "
                                  "agreement >= 98%)"})
    print()
    print(report(results))


def report(results: dict) -> str:
    """The before/after table and the Silero-like model's sensitivity tables (``quantize --report``)."""
    from lstm_edge.quantize.mixed import format_sensitivity

    return table(results) + "\n\n" + format_sensitivity(results["silero_like"]["after"]["sensitivity"])


def _cell(row: dict | None, size: bool = False) -> str:
    if row is None:
        return "-"
    if "error" in row:
        return "refused"
    text = f"{100 * row['relative_error']:.1f}%"
    if "decision_agreement" in row:
        text += f" ({100 * row['decision_agreement']:.1f}% agree)"
    if size:
        text += f", {100 * row['bytes'] / row['float_bytes']:.0f}% of float size"
    return text


def _line(name: str, result: dict) -> str:
    return "  ".join([f"{name:22s}"] + [f"{fmt} {label} {_cell(result[label].get(fmt)):>24s}"
                                        for fmt in BACKENDS for label in ("before", "after")])


def table(results: dict) -> str:
    """The README's markdown table."""
    lines = ["| model | ONNX all int8 | ONNX mixed | ONNX kept float | LiteRT all int8 | LiteRT mixed | "
             "LiteRT kept float |", "|---|---|---|---|---|---|---|"]
    for name, result in results.items():
        cells = [name]
        for fmt in BACKENDS:
            after = result["after"].get(fmt)
            kept = ", ".join(after.get("float_layers", [])) if after and "error" not in after else "-"
            after_cell = _cell(after, size=bool(kept and kept != "-"))
            if fmt == "tflite" and after and after.get("weight_scales") == "per-channel":
                after_cell += " (per-channel weights)"
            cells += [_cell(result["before"].get(fmt)), after_cell, kept or "none"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:] == ["--table"]:
        import json

        from _common import RESULTS

        print(report(json.loads((RESULTS / "mixed_precision.json").read_text())["models"]))
    else:
        main()
