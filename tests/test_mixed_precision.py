"""Automatic mixed precision: the per-layer sensitivity, the float layers chosen to meet the gate, the refusal when
no mix does, and every zoo-style model within the relative-error gate on both formats."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from lstm_edge.export import export
from lstm_edge.export.c_export import add_c_files
from lstm_edge.quantize import quantize
from lstm_edge.quantize.mixed import stream_all
from lstm_edge.quantize.onnx_quant import count_onnx_ops
from lstm_edge.quantize.parity import parity_report
from lstm_edge.quantize.tflite_inspect import count_tflite_ops
from lstm_edge.runtime import StreamingModel
from lstm_edge.runtime.manifest import SCHEMA_FILE, Manifest

import vad_like
import zoo

BACKENDS = {"onnx": "onnx", "tflite": "litert"}


@pytest.fixture(scope="module")
def silero(tmp_path_factory):
    """A trained Silero-VAD-style model directory (float only) and held-out speech/noise streams (step inputs)."""
    out = tmp_path_factory.mktemp("silero-like")
    _, streams, labels = vad_like.trained_export(out)
    return out, streams, labels


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _speech_agreement(model_dir: Path, streams: list[np.ndarray]) -> dict[str, float]:
    agreement = {}
    for fmt, backend in BACKENDS.items():
        y_float, y_int8 = (stream_all(StreamingModel.load(model_dir, backend=backend, precision=p), streams, 1)
                           for p in ("float", "int8"))
        agreement[fmt] = float(np.mean((y_int8 >= 0.5) == (y_float >= 0.5)))
    return agreement


def test_silero_like_all_int8_is_refused_by_verify(silero, tmp_path):
    model_dir, streams, labels = silero
    target = _copy(model_dir, tmp_path / "all-int8")
    float_model = StreamingModel.load(target, backend="onnx")
    decisions = stream_all(float_model, streams, 1)[:, 0] >= 0.5
    assert np.mean(decisions == np.concatenate(labels)) >= 0.8  # the float model does detect speech
    quantize(target, mixed=False)
    report = parity_report(target)
    failed = {f.split(":")[0] for f in report["failures"] if "relative error" in f}
    assert failed == {"onnx/int8", "tflite/int8"}, report["failures"]  # no argmax gate: this one catches it


def test_silero_like_meets_its_task_gate_by_keeping_the_front_end_float(silero, tmp_path):
    model_dir, streams, _ = silero
    target = _copy(model_dir, tmp_path / "mixed")
    quantize(target, calibration=streams)
    manifest = Manifest.load(target)
    document = json.loads((target / "manifest.json").read_text())
    jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text())).validate(document)  # float_layers typed
    kept = {fmt: [layer["name"] for layer in manifest.file(fmt, "int8").quantization["float_layers"]]
            for fmt in BACKENDS}
    for fmt in BACKENDS:  # the STFT and the convolution reading its magnitudes, nothing else
        assert sorted(kept[fmt]) == ["encoder/encoder.0/Conv", "stft/Conv"], kept
    for fmt in BACKENDS:
        record = manifest.file(fmt, "int8").quantization
        assert record["mixed_precision"]["all_int8"]["relative_error"] > 0.06  # what mixed precision fixed
        assert record["mixed_precision"]["result"]["relative_error"] <= 0.06
        assert 0.5 <= record["mixed_precision"]["int8_weight_fraction"] < 0.7
    # structure: exactly the float layers stayed float Conv, every other weight layer is integer
    ops = count_onnx_ops(target / "model.int8.onnx")["ops"]
    assert ops.get("Conv", 0) == len(kept["onnx"]) and ops.get("ConvInteger", 0) == 6 - len(kept["onnx"])
    assert ops.get("MatMulInteger", 0) == 2 and "MatMul" not in ops
    buffers = count_tflite_ops(target / "model.int8.tflite")["weight_operand_buffers"]
    assert buffers == {"int8": 6, "float32": 2}, buffers
    assert all(value >= 0.98 for value in _speech_agreement(target, streams).values())
    # the C files follow the same mix: add-c keeps the ONNX file's float layers float in model.int8.lec
    c_kept = add_c_files(target).file("c", "int8").quantization["float_layers"]
    assert c_kept == manifest.file("onnx", "int8").quantization["float_layers"]
    y_float, y_int8 = (stream_all(StreamingModel.load(target, backend="native", precision=p), streams, 1)
                       for p in ("float", "int8"))
    assert float(np.mean((y_int8 >= 0.5) == (y_float >= 0.5))) >= 0.98
    report = parity_report(target)
    assert report["failures"] == []
    info = subprocess.run([sys.executable, "-m", "lstm_edge", "info", str(target)], capture_output=True, text=True,
                          timeout=120)
    assert info.returncode == 0 and "float layers: " in info.stdout and "encoder/encoder.0/Conv" in info.stdout


def test_quantize_report_and_refusal_name_the_layers(silero, tmp_path):
    model_dir, streams, _ = silero
    target = _copy(model_dir, tmp_path / "refused")
    calibration = tmp_path / "calibration.npz"
    np.savez(calibration, *streams)
    result = subprocess.run([sys.executable, "-m", "lstm_edge", "quantize", str(target), "--calibration",
                             str(calibration), "--max-float-fraction", "0.1", "--report", "--no-speed",
                             "--formats", "onnx"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAIL onnx: no mix of int8 and float")]
    assert len(failed) == 1 and "Layers that could not be quantized" in failed[0], result.stdout
    assert "stft/Conv" in failed[0] and "encoder/encoder.0/Conv" in failed[0]
    table = result.stdout.splitlines()
    header = next(i for i, line in enumerate(table) if "only int8" in line and "only float" in line)
    rows = [line.split() for line in table[header + 2:header + 10]]
    assert [row[0] for row in rows][:2] == ["stft/Conv", "encoder/encoder.0/Conv"]
    assert all(row[-1] == "refused" for row in rows)  # no file written
    assert not Manifest.load(target).has_file("onnx", "int8")
    analysis = json.loads((target / "sensitivity.json").read_text())["files"][0]
    assert analysis["refused"] and len(analysis["layers"]) == 8


ZOO = ("feature_lstm", "projected", "tokens_time_major", "stacked_residual", "causal_crnn", "depthwise_separable",
       "cell_step", "grucell_step", "last_state_classifier")


@pytest.mark.parametrize("name", ZOO)
def test_zoo_models_meet_the_relative_error_gate_on_both_formats(tmp_path, name):
    model, example = zoo.build(name)
    model_dir = export(model, example, tmp_path / name, formats=tuple(BACKENDS), chunk_sizes=(10, 1))
    quantize(model_dir)
    report = parity_report(model_dir)
    rows = {row["format"]: row for row in report["results"] if row["precision"] == "int8" and row["format"] in BACKENDS}
    assert set(rows) == set(BACKENDS)
    for fmt, row in rows.items():
        assert row["relative_error"] <= 0.06, (fmt, row["relative_error"])
        assert row["gated_relative_error"]
    assert not [f for f in report["failures"] if "relative error" in f]


def test_quantize_options_are_checked_before_any_work(silero, tmp_path):
    model_dir, _, _ = silero
    target = _copy(model_dir, tmp_path / "options")
    for options, message in ((["--report", "--mode", "static"], "--report: expected dynamic mode with mixed "
                              "precision (the per-layer analysis is its search), got mode 'static'"),
                             (["--max-float-fraction", "1.5"], "max_float_fraction: expected a fraction in [0, 1), "
                              "got 1.5")):
        result = subprocess.run([sys.executable, "-m", "lstm_edge", "quantize", str(target), "--no-speed", *options],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert result.stderr.strip().splitlines()[-1] == f"lstm-edge quantize: error: {message}", result.stderr
    assert [f.precision for f in Manifest.load(target).files] == ["float", "float"]
