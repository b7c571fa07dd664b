"""Automatic mixed precision: which layers hurt under int8, and the fewest kept float that meet the model's gate.

Dynamic int8 holds on plain LSTM stacks but not on every model: an STFT written as a strided convolution, a first
convolution over raw features or a small output head can carry most of the error. For one float file this module

1. measures the int8 error of the whole file against the float file (same engine) on evaluation streams with the
   state carried: the calibration data when given, else the reference input stored at export (TFLite: per-tensor
   weight scales, and per-channel as well when per-tensor misses the gate; the smaller error is kept);
2. when that misses the gate (and always with ``report``), measures each layer quantized alone (everything else
   float), and (``report``) each layer kept float alone: the sensitivity table;
3. keeps layers float, the most harmful first, until the gate is met, then gives back to int8 every layer the gate
   does not need.

The gate is the manifest's ``int8_relative_error`` (rms of int8 - float over the float outputs' standard deviation)
and, for a binary detector (one output of ``semantics: probabilities``), ``int8_decision_agreement`` of the
``p >= 0.5`` decisions. A mix that keeps more than ``max_float_fraction`` of the weights float is not int8: the
file is refused (``MixedPrecisionError``) with the layers that int8 cannot hold.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from lstm_edge.quantize.config import INT8_NAMES, QuantizeConfig
from lstm_edge.quantize.layers import WeightLayer
from lstm_edge.runtime.backends import for_format
from lstm_edge.runtime.errors import QuantizationError
from lstm_edge.runtime.manifest import Manifest, ModelFile, file_entry
from lstm_edge.runtime.model import StreamingModel

REPORT_NAME = "sensitivity.json"


class MixedPrecisionError(QuantizationError):
    """No mix of int8 and float layers meets the gate within the float budget; ``analysis`` holds the table."""

    def __init__(self, message: str, analysis: dict[str, Any]) -> None:
        super().__init__(message)
        self.analysis = analysis


@dataclass(frozen=True)
class Gate:
    """What an int8 file must reach against its float file."""

    relative_error: float
    decision_agreement: float | None = None  # binary detectors only

    @classmethod
    def of(cls, manifest: Manifest) -> Gate:
        tolerances = manifest.tolerances
        binary = manifest.output.semantics == "probabilities" and manifest.output.shape[-1] == 1
        return cls(float(tolerances["int8_relative_error"]),
                   float(tolerances["int8_decision_agreement"]) if binary else None)

    def describe(self) -> str:
        text = f"relative error <= {100 * self.relative_error:g}%"
        if self.decision_agreement is not None:
            text += f", decision agreement (p >= 0.5) >= {100 * self.decision_agreement:g}%"
        return text


@dataclass(frozen=True)
class Measurement:
    relative_error: float
    decision_agreement: float | None = None

    def passes(self, gate: Gate) -> bool:
        if not self.relative_error <= gate.relative_error:  # NaN fails
            return False
        return gate.decision_agreement is None or (self.decision_agreement or 0.0) >= gate.decision_agreement

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"relative_error": self.relative_error}
        if self.decision_agreement is not None:
            out["decision_agreement"] = self.decision_agreement
        return out


def compare(float_outputs: np.ndarray, int8_outputs: np.ndarray, gate: Gate) -> Measurement:
    """int8 outputs against float ones: relative rms error, and decision agreement for binary detectors."""
    diff = np.asarray(int8_outputs, np.float64) - np.asarray(float_outputs, np.float64)
    spread = float(np.std(float_outputs)) or float(np.abs(float_outputs).max()) or 1.0
    error = float(np.sqrt(np.mean(diff ** 2)) / spread)
    agreement = None
    if gate.decision_agreement is not None:
        agreement = float(np.mean((int8_outputs >= 0.5) == (float_outputs >= 0.5)))
    return Measurement(error, agreement)


def stream_all(model: StreamingModel, sequences: Sequence[np.ndarray], chunk: int) -> np.ndarray:
    """Outputs of one stream per sequence (state carried within each), concatenated over time."""
    from lstm_edge.quantize.parity import stream_outputs

    outputs = [stream_outputs(model, sequence, chunk) for sequence in sequences]
    return np.concatenate([o.reshape(len(o), -1) for o in outputs])


class Trial:
    """Quantizes one float file with a given set of float layers and measures it, in a scratch model directory
    holding only that float file (so the runtime loads candidates exactly as it will load the result)."""

    def __init__(self, model_dir: Path, entry: ModelFile, manifest: Manifest, sequences: Sequence[np.ndarray],
                 config: QuantizeConfig, scratch: Path) -> None:
        from lstm_edge.quantize.formats import quantizer_for

        self.entry, self.config, self.sequences, self.scratch = entry, config, sequences, scratch
        self.quantizer = quantizer_for(entry.format)
        self.backend = for_format(entry.format).name
        shutil.copy2(model_dir / entry.path, scratch / entry.path)
        self.manifest = replace(manifest, files=(entry,))
        self.manifest.save(scratch)
        self.chunk = max(entry.chunk_sizes or (config.onnx_calibration_chunk,))
        self.gate = Gate.of(manifest)
        self.reference = stream_all(StreamingModel.load(scratch, backend=self.backend), sequences, self.chunk)
        self.out_name = INT8_NAMES[entry.format]
        self._seen: dict[tuple[str | None, frozenset[str]], tuple[Measurement, dict[str, Any]]] = {}

    def run(self, float_layers: Sequence[WeightLayer], granularity: str | None) -> tuple[Measurement, dict[str, Any]]:
        """Quantize with ``float_layers`` kept float; the measurement and the quantizer's record."""
        key = (granularity, frozenset(layer.name for layer in float_layers))
        if key not in self._seen:
            dst = self.scratch / self.out_name
            record = self.quantizer.quantize(self.scratch / self.entry.path, dst, self.config, None, self.manifest,
                                             self.entry, float_layers=float_layers, granularity=granularity)
            new_entry = file_entry(self.scratch, self.out_name, self.entry.format, "int8",
                                   chunk_sizes=self.entry.chunk_sizes, signatures=self.entry.signatures,
                                   quantization=record, checks=self.entry.checks)
            self.manifest.with_file(new_entry).save(self.scratch)
            model = StreamingModel.load(self.scratch, backend=self.backend, precision="int8")
            self._seen[key] = (compare(self.reference, stream_all(model, self.sequences, self.chunk), self.gate),
                               record)
        return self._seen[key]

    def write(self, float_layers: Sequence[WeightLayer], granularity: str | None, dst: Path) -> dict[str, Any]:
        """Quantize the chosen mix to ``dst`` (the quantizers are deterministic: the file measured by ``run``)."""
        return self.quantizer.quantize(self.scratch / self.entry.path, dst, self.config, None, self.manifest,
                                       self.entry, float_layers=float_layers, granularity=granularity)


@dataclass
class Analysis:
    """The sensitivity table of one file and the mix chosen from it."""

    format: str
    gate: Gate
    evaluation: str
    granularity: str | None = None
    all_int8: dict[str, Any] = field(default_factory=dict)
    layers: list[dict[str, Any]] = field(default_factory=list)
    float_layers: list[WeightLayer] = field(default_factory=list)
    result: dict[str, Any] = field(default_factory=dict)
    refused: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"format": self.format, "gate": self.gate.describe(), "evaluation": self.evaluation,
                "granularity": self.granularity, "all_int8": self.all_int8, "layers": self.layers,
                "float_layers": [layer.record() for layer in self.float_layers], "result": self.result,
                "refused": self.refused}


def choose(layers: Sequence[WeightLayer], measure: Callable[[Sequence[WeightLayer]], Measurement], gate: Gate,
           max_float_fraction: float, report: bool) -> tuple[list[WeightLayer], Measurement, list[dict[str, Any]],
                                                             str | None]:
    """The float layers to keep: greedy by the error each one makes quantized alone, then pruned.

    Returns (float layers, their measurement, the per-layer table, the refusal reason or None)."""
    everything = measure([])
    rows: dict[str, dict[str, Any]] = {layer.name: {"name": layer.name, "kind": layer.kind, "params": layer.params}
                                       for layer in layers}
    total = sum(layer.params for layer in layers) or 1
    if report or not everything.passes(gate):
        for layer in layers:  # the layer's own damage: quantized alone, everything else float
            rows[layer.name]["int8_alone"] = measure([o for o in layers if o is not layer]).to_dict()
    if report:
        for layer in layers:
            rows[layer.name]["float_alone"] = measure([layer]).to_dict()
    chosen: list[WeightLayer] = []
    current = everything
    if not everything.passes(gate):
        # the most harmful first: layers that interact (an STFT and the convolution reading its magnitudes) each
        # look harmless kept float alone, but each shows its damage quantized alone
        ranked = sorted(layers, key=lambda layer: -rows[layer.name]["int8_alone"]["relative_error"])
        for layer in ranked:
            if sum(c.params for c in chosen) + layer.params > max_float_fraction * total or len(chosen) + 1 == len(
                    layers):
                continue  # over the float budget, or nothing int8 left: try the next one
            chosen.append(layer)
            current = measure(chosen)
            if current.passes(gate):
                break
        if current.passes(gate):
            for layer in list(chosen):  # give back to int8 what the gate does not need
                trial = [c for c in chosen if c is not layer]
                measured = measure(trial)
                if measured.passes(gate):
                    chosen, current = trial, measured
    for layer in layers:
        rows[layer.name]["precision"] = "float" if layer in chosen else "int8"
    refused = None
    if not current.passes(gate):
        for layer in layers:  # which layers int8 cannot hold: quantized alone they already miss the gate
            if "int8_alone" not in rows[layer.name]:
                rows[layer.name]["int8_alone"] = measure([o for o in layers if o is not layer]).to_dict()
        culprits = [r for r in rows.values() if not Measurement(**r["int8_alone"]).passes(gate)]
        named = ", ".join(f"{r['name']} ({r['kind']}, {100 * r['int8_alone']['relative_error']:.1f}% when only it "
                          "is int8)" for r in culprits) or "none alone: the error builds up over several layers"
        refused = (f"no mix of int8 and float layers meets the gate ({gate.describe()}) with at most "
                   f"{100 * max_float_fraction:g}% of the weights float; all int8: "
                   f"{100 * everything.relative_error:.1f}%, best mix tried: {100 * current.relative_error:.1f}% "
                   f"with {', '.join(c.name for c in chosen) or 'nothing'} float. Layers that could not be "
                   f"quantized: {named}")
        for row in rows.values():
            row["precision"] = "refused"  # no file is written
    return chosen, current, list(rows.values()), refused


def name_after_onnx(layers: list[WeightLayer], onnx_layers: Sequence[WeightLayer]) -> list[WeightLayer]:
    """TFLite layers renamed after the ONNX layer holding the same weight values (in any layout, to 1e-5)."""
    candidates = []
    for layer in onnx_layers:
        for index, weight in enumerate(layer.weights):
            suffix = "" if len(layer.weights) == 1 else (" (input weights)", " (recurrent weights)")[index]
            candidates.append((layer.name + suffix, np.sort(np.asarray(weight, np.float32).ravel())))
    renamed, used = [], set()
    for layer in layers:
        name = layer.name
        if layer.weights and layer.weights[0] is not None:
            values = np.sort(np.asarray(layer.weights[0], np.float32).ravel())
            for candidate, reference in candidates:
                if candidate not in used and reference.shape == values.shape and np.allclose(reference, values,
                                                                                            atol=1e-5, rtol=0):
                    name = candidate
                    break
        used.add(name)
        renamed.append(replace(layer, name=name))
    return renamed


def quantize_mixed(model_dir: Path, entry: ModelFile, manifest: Manifest, dst: Path, config: QuantizeConfig,
                   sequences: Sequence[np.ndarray] | None, report: bool = False) -> tuple[dict[str, Any], Analysis]:
    """Write ``dst`` from the float ``entry`` with the fewest layers kept float that meet the gate; returns the
    manifest record (with ``float_layers`` and ``mixed_precision``) and the analysis. Raises
    ``MixedPrecisionError`` when no mix within the float budget meets the gate (``dst`` is then not written)."""
    from lstm_edge.quantize.formats import quantizer_for

    if sequences:
        evaluation = f"calibration data: {len(sequences)} streams, {sum(len(s) for s in sequences)} frames"
    else:
        sequences = [np.load(model_dir / manifest.reference["input"])] if manifest.reference else []
        evaluation = f"reference input: one stream of {len(sequences[0])} frames" if sequences else ""
    if not sequences:
        raise QuantizationError("mixed precision needs evaluation data: pass calibration data or re-export the "
                                "model directory with its reference input")
    quantizer = quantizer_for(entry.format)
    layers = quantizer.layers(model_dir / entry.path)
    if entry.format != "onnx" and manifest.has_file("onnx", "float"):
        layers = name_after_onnx(layers, quantizer_for("onnx").layers(model_dir / manifest.file("onnx",
                                                                                               "float").path))
    with tempfile.TemporaryDirectory(prefix="lstm-edge-mixed-") as tmp:
        trial = Trial(model_dir, entry, manifest, sequences, config, Path(tmp))
        analysis = Analysis(entry.format, trial.gate, evaluation)
        # weight-scale choice first (TFLite: per-tensor, then per-channel): the one with the smaller error wins
        granularity = quantizer.granularities[0]
        base = trial.run([], granularity)[0]
        for other in quantizer.granularities[1:] if not base.passes(trial.gate) else ():
            measured = trial.run([], other)[0]
            if measured.relative_error < base.relative_error:
                granularity, base = other, measured
        analysis.granularity = granularity
        analysis.all_int8 = base.to_dict()
        chosen, final, rows, refused = choose(layers, lambda float_layers: trial.run(float_layers, granularity)[0],
                                              trial.gate, config.max_float_fraction, report)
        analysis.layers, analysis.float_layers, analysis.result = rows, chosen, final.to_dict()
        if refused:
            analysis.refused = f"{entry.format}: {refused}"
            raise MixedPrecisionError(analysis.refused, analysis.to_dict())
        record = trial.write(chosen, granularity, dst)
    total = sum(layer.params for layer in layers) or 1
    record["float_layers"] = [layer.record() for layer in chosen]
    record["mixed_precision"] = {
        "gate": trial.gate.describe(), "evaluation": evaluation, "weight_scales": granularity,
        "all_int8": base.to_dict(), "result": final.to_dict(),
        "int8_weight_fraction": round(1 - sum(layer.params for layer in chosen) / total, 4)}
    return record, analysis


def format_sensitivity(analyses: Sequence[dict[str, Any]]) -> str:
    """The sensitivity table of each analysed file (``sensitivity.json``'s ``files``)."""
    def percent(measured: dict[str, Any] | None) -> str:
        return "-" if measured is None else f"{100 * measured['relative_error']:.2f}%"

    lines = []
    for analysis in analyses:
        lines.append(f"{analysis['format']}: int8 error by layer ({analysis['evaluation']}; gate: {analysis['gate']}; "
                     f"weight scales {analysis['granularity']})")
        header = f"  {'layer':40s} {'kind':17s} {'params':>8s} {'only int8':>10s} {'only float':>10s}  precision"
        lines += [header, "  " + "-" * (len(header) - 2)]
        for row in analysis["layers"]:
            lines.append(f"  {row['name'][:40]:40s} {row['kind']:17s} {row['params']:8d} "
                         f"{percent(row.get('int8_alone')):>10s} {percent(row.get('float_alone')):>10s}  "
                         f"{row['precision']}")
        kept = ", ".join(layer["name"] for layer in analysis["float_layers"]) or "none"
        result = analysis["result"]
        decisions = (f", decision agreement {100 * result['decision_agreement']:.2f}%"
                     if "decision_agreement" in result else "")
        lines.append(f"  all int8: {percent(analysis['all_int8'])}; kept float: {kept}; result: {percent(result)}"
                     f"{decisions}" + (" (REFUSED)" if analysis["refused"] else ""))
    lines.append("  only int8: error when only this layer is int8; only float: error when only this layer is float")
    return "\n".join(lines)
