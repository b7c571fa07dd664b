"""Accuracy parity of every file in a model directory against the float torch model, and the gates on it.

The reference is what the exporter stored: an input and torch's float outputs on it. Each format x precision is
streamed over that input in chunks with the state carried (one long stream, so error growth over time shows),
and optionally over labelled evaluation clips for the task metric. Only the runtime is needed, not torch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from lstm_edge.quantize import text_parity
from lstm_edge.runtime.backends import engine_available, for_format
from lstm_edge.runtime.errors import InputError, ManifestError
from lstm_edge.runtime.manifest import Manifest, float_limit, sha256_of
from lstm_edge.runtime.model import StreamingModel

REPORT_NAME = "parity.json"


def _reference(model_dir: Path, manifest: Manifest) -> tuple[np.ndarray, np.ndarray]:
    ref = manifest.reference
    if not ref:
        raise ManifestError("this model directory has no reference outputs (re-export it with this lstm-edge)")
    arrays = []
    for key in ("input", "output"):
        path = model_dir / ref[key]
        if not path.is_file() or sha256_of(path) != ref[f"{key}_sha256"]:
            raise ManifestError(f"{path}: reference {key} is missing or does not match its sha256")
        arrays.append(np.load(path, allow_pickle=False))
    return arrays[0], arrays[1]


def stream_outputs(model: StreamingModel, data: np.ndarray, chunk: int) -> np.ndarray:
    """Outputs of one stream over ``data`` (pushed ``chunk`` frames at a time, or step by step)."""
    stream = model.create_stream()
    if model.manifest.kind == "step":
        return np.stack([stream.push(row) for row in data])
    return np.concatenate([stream.push(data[i:i + chunk]) for i in range(0, len(data), chunk)])


def load_eval(path: str | Path, manifest: Manifest) -> tuple[list[np.ndarray], np.ndarray]:
    """Labelled evaluation data: an .npz with ``labels`` [N] and ``inputs`` [N, T, ...] (model inputs) or ``audio``
    [N, samples] (int16/float PCM, turned into features with the manifest's frontend)."""
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: not a readable .npz ({err})") from None
    if "labels" not in data or not ({"inputs", "audio"} & set(data.files)):
        raise InputError(f"{path}: expected arrays 'labels' and 'inputs' or 'audio', got {data.files}")
    labels = np.asarray(data["labels"]).astype(np.int64)
    if "inputs" in data.files:
        return [np.asarray(x) for x in data["inputs"]], labels
    if not manifest.frontend:
        raise InputError(f"{path}: holds audio, but the model has no frontend in its manifest")
    from lstm_edge.runtime.frontend import LogMelConfig, LogMelFrontend

    frontend = LogMelFrontend(LogMelConfig.from_dict(dict(manifest.frontend)))
    return [frontend.compute(clip) for clip in data["audio"]], labels


def clip_prediction(logits: np.ndarray, manifest: Manifest) -> int:
    """The class of one clip: the manifest's ``extra.clip_rule`` when it has one (keyword spotting), else the
    argmax of the mean output over the clip."""
    rule = manifest.extra.get("clip_rule")
    if rule:
        from lstm_edge.runtime.kws import clip_prediction as rule_prediction

        return rule_prediction(logits, rule)
    return int(np.argmax(logits.mean(axis=0)))


def parity_report(model_dir: str | Path, eval_data: str | Path | None = None, chunk: int = 10) -> dict[str, Any]:
    """Measure every file of the directory; write and return ``parity.json``."""
    model_dir = Path(model_dir)
    manifest = Manifest.load(model_dir)
    ref_input, ref_output = _reference(model_dir, manifest)
    classifier = ref_output.ndim >= 2 and ref_output.shape[-1] > 1
    evaluation = load_eval(eval_data, manifest) if eval_data else None
    float_sizes = {f.format: f.bytes for f in manifest.files if f.precision == "float"}
    rows = []
    for entry in manifest.files:
        backend = for_format(entry.format).name
        row: dict[str, Any] = {"format": entry.format, "precision": entry.precision, "backend": backend,
                               "file": entry.path, "bytes": entry.bytes,
                               "size_ratio": entry.bytes / float_sizes[entry.format] if entry.format in float_sizes
                               else None}
        if not engine_available(backend):
            row["error"] = f"engine for backend {backend!r} not installed"
            rows.append(row)
            continue
        model = StreamingModel.load(model_dir, backend=backend, precision=entry.precision)
        row["engine"] = model.engine
        got = stream_outputs(model, ref_input, chunk)
        diff = np.abs(got - ref_output).reshape(len(got), -1).max(axis=1)
        tenth = max(len(diff) // 10, 1)
        row.update({"frames": int(len(got)), "max_abs_diff": float(diff.max()),
                    "max_abs_diff_first_10pct": float(diff[:tenth].max()),
                    "max_abs_diff_last_10pct": float(diff[-tenth:].max())})
        row["error_growth"] = row["max_abs_diff_last_10pct"] / max(row["max_abs_diff_first_10pct"], 1e-12)
        row.update(text_parity.row_metrics(manifest, ref_input, got))
        if classifier:
            row["argmax_agreement"] = float((got.argmax(-1) == ref_output.argmax(-1)).mean())
        if evaluation is not None:
            inputs, labels = evaluation
            predictions = [clip_prediction(stream_outputs(model, x, chunk), manifest) for x in inputs]
            row["eval_accuracy"] = float(np.mean(np.asarray(predictions) == labels))
            row["eval_clips"] = int(len(labels))
        rows.append(row)
    report = {"model": manifest.name, "reference_frames": int(len(ref_input)), "chunk": chunk,
              "reference_peak": float(np.abs(ref_output).max()),
              "tolerances": dict(manifest.tolerances), "eval_data": Path(eval_data).name if eval_data else None,
              "results": rows}
    report["failures"] = gate_failures(report)
    (model_dir / REPORT_NAME).write_text(json.dumps(report, indent=2) + "\n")
    return report


def gate_failures(report: Mapping[str, Any]) -> list[str]:
    """Each way the report falls outside the manifest's tolerances, as a sentence."""
    tolerances = report["tolerances"]
    failures = []
    float_accuracy = {r["format"]: r.get("eval_accuracy") for r in report["results"] if r["precision"] == "float"}
    for row in report["results"]:
        name = f"{row['format']}/{row['precision']}"
        if "error" in row:
            failures.append(f"{name}: {row['error']}")
            continue
        if row["precision"] == "float":
            limit = float_limit(tolerances, report["reference_peak"])
            if not row["max_abs_diff"] <= limit:
                failures.append(f"{name}: max abs diff vs torch {row['max_abs_diff']:.3g} > {limit:.3g} "
                                f"({tolerances.get('float_rule', 'scaled')} rule)")
            continue
        agreement = row.get("argmax_agreement")
        if agreement is not None and not agreement >= tolerances["int8_argmax_agreement"]:
            failures.append(f"{name}: argmax agreement with torch {100 * agreement:.2f}% < "
                            f"{100 * tolerances['int8_argmax_agreement']:.2f}%")
        reference_accuracy = float_accuracy.get(row["format"])
        if row.get("eval_accuracy") is not None and reference_accuracy is not None:
            drop = reference_accuracy - row["eval_accuracy"]
            if not drop <= tolerances["int8_accuracy_drop"] + 1e-9:
                failures.append(f"{name}: accuracy {100 * row['eval_accuracy']:.2f}% is {100 * drop:.2f} points "
                                f"below float ({100 * reference_accuracy:.2f}%); allowed "
                                f"{100 * tolerances['int8_accuracy_drop']:.2f}")
    return failures + text_parity.gate_failures(report)


def format_table(report: Mapping[str, Any]) -> str:
    """The report as a fixed-width table."""
    header = (f"{'format':7s} {'precision':9s} {'size KB':>8s} {'ratio':>6s} {'max|diff|':>10s} "
              f"{'first10%':>9s} {'last10%':>9s} {'argmax':>7s} {'accuracy':>8s}")
    lines = [header, "-" * len(header)]
    for row in report["results"]:
        if "error" in row:
            lines.append(f"{row['format']:7s} {row['precision']:9s} {row['error']}")
            continue
        ratio = f"{row['size_ratio']:.2f}" if row.get("size_ratio") is not None else "-"
        agreement = f"{100 * row['argmax_agreement']:.2f}%" if "argmax_agreement" in row else "-"
        accuracy = f"{100 * row['eval_accuracy']:.2f}%" if "eval_accuracy" in row else "-"
        lines.append(f"{row['format']:7s} {row['precision']:9s} {row['bytes'] / 1024:8.1f} {ratio:>6s} "
                     f"{row['max_abs_diff']:10.2e} {row['max_abs_diff_first_10pct']:9.2e} "
                     f"{row['max_abs_diff_last_10pct']:9.2e} {agreement:>7s} {accuracy:>8s}")
    lines.extend(f"{r['format']}/{r['precision']}: {r['bits_per_char']:.4f} bits/char on the reference text"
                 for r in report["results"] if r.get("bits_per_char") is not None)
    lines.append(f"reference: torch float on {report['reference_frames']} frames, one stream, chunks of "
                 f"{report['chunk']}, state carried")
    return "\n".join(lines)
