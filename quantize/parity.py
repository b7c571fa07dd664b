"""Accuracy parity of every file in a model directory against the float torch model, and the gates on it.

The reference is what the exporter stored: an input and torch's float outputs on it. Each format x precision is
streamed over that input in chunks with the state carried (one long stream, so error growth over time shows),
and optionally over labelled evaluation clips for the task metric. Only the runtime is needed, not torch.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lstm_edge.quantize import text_parity
from lstm_edge.quantize.mixed import Gate, compare
from lstm_edge.quantize.tasks import mean_argmax
from lstm_edge.runtime.backends import engine_available, for_format
from lstm_edge.runtime.errors import InputError, ManifestError, expected_got
from lstm_edge.runtime.manifest import Manifest, ModelFile, float_limit, sha256_of
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


def features_of_audio(audio: np.ndarray, manifest: Manifest, where: str) -> list[np.ndarray]:
    """Model inputs of PCM clips [N, samples] (int16 or float), through the manifest's frontend."""
    if not manifest.frontend:
        raise InputError(expected_got(f"{where}: model inputs", "'inputs' [N, T, ...] (this model has no audio "
                                      "frontend in its manifest to turn 'audio' into features)", "'audio'"))
    audio = np.asarray(audio)
    if audio.ndim != 2:
        raise InputError(expected_got(f"{where}: 'audio' shape", "[N clips, samples]", list(audio.shape)))
    from lstm_edge.runtime.frontend import LogMelConfig, LogMelFrontend

    frontend = LogMelFrontend(LogMelConfig.from_dict(dict(manifest.frontend)))
    return [frontend.compute(clip) for clip in audio]


def load_eval(path: str | Path, manifest: Manifest) -> tuple[list[np.ndarray], np.ndarray]:
    """Labelled evaluation data: an .npz with ``labels`` [N] and ``inputs`` [N, T, ...] (model inputs) or ``audio``
    [N, samples] (int16/float PCM, turned into features with the manifest's frontend)."""
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: not a readable .npz ({err})") from None
    if "labels" not in data or not ({"inputs", "audio"} & set(data.files)):
        raise InputError(expected_got(f"{path}: arrays", "'labels' and 'inputs' or 'audio'", data.files))
    labels = np.asarray(data["labels"]).astype(np.int64)
    if "inputs" in data.files:
        return [np.asarray(x) for x in data["inputs"]], labels
    return features_of_audio(data["audio"], manifest, str(path)), labels


def parity_chunks(manifest: Manifest, frames: int) -> list[int]:
    """Chunk sizes parity is measured at: 1, the largest chunk size of any file, and one push of everything."""
    largest = max([size for f in manifest.files for size in (f.chunk_sizes or ())] or [10])
    return sorted({1, min(largest, frames), frames})


def parity_report(model_dir: str | Path, eval_data: str | Path | None = None, chunk: int = 10,
                  clip_predictor: Callable[[np.ndarray], int] | None = None,
                  chunk_sweep: Sequence[int] | None = None) -> dict[str, Any]:
    """Measure every file of the directory; write and return ``parity.json``.

    The main columns stream the reference in chunks of ``chunk``; ``chunk_sweep`` (default: 1, the largest chunk
    size and one whole push) repeats the argmax agreement and max diff per chunking, so chunking-dependence shows
    (``chunking_spread``: the largest difference between any two chunkings' outputs). ``clip_predictor`` turns one
    evaluation clip's outputs into a class (default: argmax of the mean output).
    """
    model_dir = Path(model_dir)
    manifest = Manifest.load(model_dir)
    ref_input, ref_output = _reference(model_dir, manifest)
    classifier = ref_output.ndim >= 2 and ref_output.shape[-1] > 1
    evaluation = load_eval(eval_data, manifest) if eval_data else None
    predict = clip_predictor or mean_argmax
    sweep = list(chunk_sweep) if chunk_sweep is not None else (
        parity_chunks(manifest, len(ref_input)) if manifest.kind == "sequence" else [])
    float_sizes = {f.format: f.bytes for f in manifest.files if f.precision == "float"}
    gate = Gate.of(manifest)
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
        measured_int8 = compare(ref_output.reshape(len(ref_output), -1), got.reshape(len(got), -1), gate)
        row["relative_error"] = measured_int8.relative_error
        if measured_int8.decision_agreement is not None:
            row["decision_agreement"] = measured_int8.decision_agreement
        row["gated_relative_error"] = relative_error_gated(entry, classifier)
        if entry.quantization and entry.quantization.get("float_layers"):
            row["float_layers"] = [layer["name"] for layer in entry.quantization["float_layers"]]
        by_chunk = {}
        outputs = {chunk: got}
        for size in sweep:
            outputs[size] = outputs[size] if size in outputs else stream_outputs(model, ref_input, size)
            measured: dict[str, float] = {"max_abs_diff": float(np.abs(outputs[size] - ref_output).max())}
            if classifier:
                measured["argmax_agreement"] = float((outputs[size].argmax(-1) == ref_output.argmax(-1)).mean())
            by_chunk[str(size)] = measured
        if by_chunk:
            row["by_chunk"] = by_chunk
            row["chunking_spread"] = float(max(np.abs(outputs[a] - outputs[b]).max() for a in outputs for b in outputs))
        if evaluation is not None:
            inputs, labels = evaluation
            predictions = [predict(stream_outputs(model, x, chunk)) for x in inputs]
            row["eval_accuracy"] = float(np.mean(np.asarray(predictions) == labels))
            row["eval_clips"] = int(len(labels))
        rows.append(row)
    report = {"model": manifest.name, "reference_frames": int(len(ref_input)), "chunk": chunk, "chunk_sweep": sweep,
              "reference_peak": float(np.abs(ref_output).max()),
              "tolerances": dict(manifest.tolerances), "eval_data": Path(eval_data).name if eval_data else None,
              "results": rows}
    report["failures"] = gate_failures(report)
    (model_dir / REPORT_NAME).write_text(json.dumps(report, indent=2) + "\n")
    return report


def relative_error_gated(entry: ModelFile, classifier: bool) -> bool:
    """Whether an int8 file is held to ``int8_relative_error``: files made by mixed precision (which chose their
    mix against it), and every file of a model with no argmax gate (a detector or regressor would otherwise pass
    unchecked). int8 classifiers quantized before mixed precision keep the argmax gate they were shipped under."""
    if entry.precision == "float":
        return False
    return not classifier or bool(entry.quantization and "mixed_precision" in entry.quantization)


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
        if row.get("gated_relative_error") and not row["relative_error"] <= tolerances["int8_relative_error"]:
            failures.append(f"{name}: relative error vs torch {100 * row['relative_error']:.2f}% > "
                            f"{100 * tolerances['int8_relative_error']:g}% (rms of the difference over the float "
                            "outputs' std)")
        decisions = row.get("decision_agreement")
        if decisions is not None and not decisions >= tolerances["int8_decision_agreement"]:
            failures.append(f"{name}: decision agreement (p >= 0.5) with torch {100 * decisions:.2f}% < "
                            f"{100 * tolerances['int8_decision_agreement']:g}%")
        agreement = row.get("argmax_agreement")
        if agreement is not None and not agreement >= tolerances["int8_argmax_agreement"]:
            failures.append(f"{name}: argmax agreement with torch {100 * agreement:.2f}% < "
                            f"{100 * tolerances['int8_argmax_agreement']:.2f}%")
        for size, measured in row.get("by_chunk", {}).items():
            swept = measured.get("argmax_agreement")
            if swept is not None and not swept >= tolerances["int8_argmax_agreement"]:
                failures.append(f"{name}: argmax agreement with torch at chunk {size} {100 * swept:.2f}% < "
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
              f"{'first10%':>9s} {'last10%':>9s} {'rel.err':>7s} {'argmax':>7s} {'accuracy':>8s}")
    lines = [header, "-" * len(header)]
    for row in report["results"]:
        if "error" in row:
            lines.append(f"{row['format']:7s} {row['precision']:9s} {row['error']}")
            continue
        ratio = f"{row['size_ratio']:.2f}" if row.get("size_ratio") is not None else "-"
        agreement = f"{100 * row['argmax_agreement']:.2f}%" if "argmax_agreement" in row else "-"
        accuracy = f"{100 * row['eval_accuracy']:.2f}%" if "eval_accuracy" in row else "-"
        relative = f"{100 * row['relative_error']:.2f}%" if "relative_error" in row else "-"
        lines.append(f"{row['format']:7s} {row['precision']:9s} {row['bytes'] / 1024:8.1f} {ratio:>6s} "
                     f"{row['max_abs_diff']:10.2e} {row['max_abs_diff_first_10pct']:9.2e} "
                     f"{row['max_abs_diff_last_10pct']:9.2e} {relative:>7s} {agreement:>7s} {accuracy:>8s}")
    lines.extend(f"{r['format']}/{r['precision']}: {r['bits_per_char']:.4f} bits/char on the reference text"
                 for r in report["results"] if r.get("bits_per_char") is not None)
    lines.extend(f"{r['format']}/{r['precision']}: decision agreement (p >= 0.5) {100 * r['decision_agreement']:.2f}%"
                 for r in report["results"] if r.get("decision_agreement") is not None and r["precision"] != "float")
    lines.extend(f"{r['format']}/{r['precision']}: kept float by mixed precision: {', '.join(r['float_layers'])}"
                 for r in report["results"] if r.get("float_layers"))
    lines.append(f"reference: torch float on {report['reference_frames']} frames, one stream, chunks of "
                 f"{report['chunk']}, state carried")
    for row in report["results"]:
        if row.get("by_chunk"):
            per_chunk = ", ".join(f"{size}: " + (f"{100 * m['argmax_agreement']:.2f}%" if "argmax_agreement" in m
                                                 else f"{m['max_abs_diff']:.2e}")
                                  for size, m in row["by_chunk"].items())
            lines.append(f"  {row['format']}/{row['precision']} by chunk size ({per_chunk}); outputs differ between "
                         f"chunkings by up to {row['chunking_spread']:.3g}")
    return "\n".join(lines)
