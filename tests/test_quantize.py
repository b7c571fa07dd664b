"""int8: structure (the LSTM really became integer), size, parity gates that pass good models and fail broken ones."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from lstm_edge.export import export
from lstm_edge.quantize import quantize
from lstm_edge.quantize.onnx_quant import check_int8_structure, count_onnx_ops
from lstm_edge.quantize.parity import parity_report
from lstm_edge.runtime import InputError, StreamingModel
from lstm_edge.runtime.errors import QuantizationError
from lstm_edge.runtime.manifest import Manifest, file_entry

import toy
import zoo


class Mid(torch.nn.Module):
    """~120k parameters, smooth enough that int8 keeps its decisions."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = torch.nn.Linear(40, 96)
        self.lstm = torch.nn.LSTM(96, 96, num_layers=2, batch_first=True)
        self.out = torch.nn.Linear(96, 12)

    def forward(self, x):
        return self.out(self.lstm(torch.relu(self.inp(x)))[0])


@pytest.fixture(scope="module")
def quantized_dir(tmp_path_factory):
    torch.manual_seed(0)
    model = toy.train(Mid())
    out = tmp_path_factory.mktemp("mid")
    export(model, torch.randn(1, 10, 40), out, formats=("onnx", "tflite"), reference_input=toy.reference_stream())
    quantize(out)
    return out


def test_dynamic_int8_is_integer_and_small(quantized_dir):
    manifest = Manifest.load(quantized_dir)
    float_file, int8_file = manifest.file("onnx", "float"), manifest.file("onnx", "int8")
    counts = count_onnx_ops(quantized_dir / int8_file.path)
    assert counts["ops"].get("DynamicQuantizeLSTM") == 2 and "LSTM" not in counts["ops"]
    assert counts["ops"].get("MatMulInteger") == 2 and "MatMul" not in counts["ops"]
    assert int8_file.bytes <= 0.35 * float_file.bytes
    assert int8_file.quantization["mode"] == "dynamic"
    assert int8_file.quantization["integer_ops"]["DynamicQuantizeLSTM"] == 2


def test_dynamic_tflite_int8_has_integer_weights(quantized_dir):
    from lstm_edge.quantize.tflite_inspect import count_tflite_ops

    manifest = Manifest.load(quantized_dir)
    entry = manifest.file("tflite", "int8")
    counts = count_tflite_ops(quantized_dir / entry.path)
    fully_connected = counts["ops"]["FULLY_CONNECTED"]
    assert fully_connected["count"] > 0 and fully_connected["int8_weights"] == fully_connected["count"]
    assert entry.chunk_sizes == (10, 1) and set(entry.signatures.values()) == {"chunk_10", "chunk_1"}
    for signature in counts["signatures"].values():
        assert set(signature["inputs"].values()) == {"float32"}  # dynamic: float state and features
    assert entry.bytes <= 0.45 * manifest.file("tflite", "float").bytes


def test_static_tflite_is_full_integer_and_the_runtime_hides_it(quantized_dir, tmp_path):
    from lstm_edge.quantize.tflite_inspect import count_tflite_ops

    target = _copy(quantized_dir, tmp_path / "static_tflite")
    calibration = [toy.make_sequences(1, 400, seed)[0][0] for seed in range(4)]
    quantize(target, calibration=calibration, mode="static", formats=["tflite"])
    entry = Manifest.load(target).file("tflite", "int8")
    assert entry.quantization["mode"] == "static" and entry.quantization["io_dtype"] in ("int16", "int16/int8")
    counts = count_tflite_ops(target / entry.path)
    for signature in counts["signatures"].values():
        assert set(signature["inputs"].values()) | set(signature["outputs"].values()) <= {"int8", "int16"}
        fc = signature["ops"]["FULLY_CONNECTED"]
        assert fc["int8_activations"] == fc["int8_weights"] == fc["count"] > 0
    # one signature (chunk_1): every chunking runs the same integer steps, and the file is smaller than dynamic
    assert entry.chunk_sizes == (1,) and entry.signatures == {"1": "chunk_1"} and set(counts["signatures"]) == {
        "chunk_1"}
    assert entry.bytes < Manifest.load(quantized_dir).file("tflite", "int8").bytes
    model = StreamingModel.load(target, backend="litert", precision="int8")
    x = np.load(target / "reference" / "input.npy")
    outputs = []
    for chunk in (7, 1, len(x)):
        stream = model.create_stream()
        outputs.append(np.concatenate([stream.push(x[i:i + chunk]) for i in range(0, len(x), chunk)]))
        assert outputs[-1].dtype == np.float32 and all(v.dtype == np.float32 for v in stream.state.values())
    assert np.array_equal(outputs[0], outputs[1]) and np.array_equal(outputs[0], outputs[2])
    reference = np.load(target / "reference" / "output.npy")
    assert (outputs[0].argmax(-1) == reference.argmax(-1)).mean() >= 0.95


def test_structure_check_refuses_a_file_that_stayed_float(quantized_dir):
    with pytest.raises(QuantizationError, match="LSTM ops are still float"):
        check_int8_structure(quantized_dir / "model.onnx", "dynamic")


def test_int8_streams_close_to_float(quantized_dir):
    report = parity_report(quantized_dir)
    rows = {(r["format"], r["precision"]): r for r in report["results"]}
    assert rows[("onnx", "float")]["max_abs_diff"] <= 1e-5
    assert rows[("tflite", "float")]["max_abs_diff"] <= 1e-5
    assert rows[("onnx", "int8")]["argmax_agreement"] >= 0.98
    assert rows[("tflite", "int8")]["argmax_agreement"] >= 0.98
    logit_scale = float(np.abs(np.load(quantized_dir / "reference" / "output.npy")).max())
    assert rows[("onnx", "int8")]["max_abs_diff"] < 0.1 * logit_scale
    assert report["failures"] == []
    assert json.loads((quantized_dir / "parity.json").read_text())["results"]


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _replace_file(model_dir: Path, relpath: str, graph: onnx.ModelProto, fmt: str, precision: str) -> None:
    onnx.save(graph, model_dir / relpath)
    manifest = Manifest.load(model_dir)
    old = manifest.file(fmt, precision)
    manifest.with_file(file_entry(model_dir, relpath, fmt, precision, quantization=old.quantization)).save(model_dir)


def _verify(model_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lstm_edge", "verify", str(model_dir)], capture_output=True,
                          text=True, timeout=300)


def test_verify_passes_a_good_directory(quantized_dir):
    result = _verify(quantized_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASS" in result.stdout


def test_verify_fails_when_the_state_is_zeroed_each_chunk(quantized_dir, tmp_path):
    broken = _copy(quantized_dir, tmp_path / "zeroed")
    manifest = Manifest.load(broken)
    graph = onnx.load(broken / "model.onnx")
    for state in manifest.states:
        zeros = numpy_helper.from_array(np.zeros(state.shape, np.float32), name=f"{state.name}_zeros")
        graph.graph.initializer.append(zeros)
        for node in graph.graph.node:
            for i, name in enumerate(node.input):
                if name == state.input:
                    node.input[i] = zeros.name
    _replace_file(broken, "model.onnx", graph, "onnx", "float")
    result = _verify(broken)
    assert result.returncode == 1
    assert "onnx/float: max abs diff" in result.stdout


def test_verify_fails_on_perturbed_int8_weights(quantized_dir, tmp_path):
    broken = _copy(quantized_dir, tmp_path / "perturbed")
    graph = onnx.load(broken / "model.int8.onnx")
    rng = np.random.default_rng(0)
    for index, tensor in enumerate(graph.graph.initializer):
        array = numpy_helper.to_array(tensor)
        if array.dtype == np.int8 and array.size > 1000:
            noisy = np.clip(array.astype(np.int32) + rng.integers(-40, 41, array.shape), -127, 127).astype(np.int8)
            graph.graph.initializer[index].CopyFrom(numpy_helper.from_array(noisy, tensor.name))
    _replace_file(broken, "model.int8.onnx", graph, "onnx", "int8")
    result = _verify(broken)
    assert result.returncode == 1
    assert "onnx/int8: argmax agreement" in result.stdout


def test_static_needs_calibration_and_says_what_it_means(quantized_dir, tmp_path):
    target = _copy(quantized_dir, tmp_path / "static")
    with pytest.raises(InputError, match="calibration"):
        quantize(target, mode="static")
    with pytest.raises(InputError, match="mode"):
        quantize(target, mode="fp8")
    rng = np.random.default_rng(1)
    quantize(target, calibration=[rng.standard_normal((200, 40)).astype(np.float32) for _ in range(3)],
             mode="static", formats=["onnx"])
    entry = Manifest.load(target).file("onnx", "int8")
    assert entry.quantization["mode"] == "static"
    assert any("no static integer LSTM" in note for note in entry.quantization["notes"])
    ops = entry.quantization["ops_after"]
    assert ops.get("QuantizeLinear", 0) > 0 and ops.get("DynamicQuantizeLSTM") == 2
    model = StreamingModel.load(target, backend="onnx", precision="int8")
    x = np.load(target / "reference" / "input.npy")
    y = np.concatenate([model.create_stream().push(x)])
    assert np.isfinite(y).all()


def test_onnx_gru_is_refused_rather_than_left_float(exported, tmp_path):
    model_dir = _copy(exported("gru")[1], tmp_path / "gru")
    with pytest.raises(QuantizationError, match="GRU ops are still float.*tflite"):
        quantize(model_dir, formats=["onnx"])  # its Linear would become integer, its GRU cannot
    assert not Manifest.load(model_dir).has_file("onnx", "int8")


def test_onnx_int8_step_model_loses_no_more_than_a_sequence_model(exported, tmp_path):
    """LSTMCell step models become plain MatMulInteger ops; with 7-bit weights (reduce_range) their error is as
    small as a fused LSTM's (benchmarks/bench_onnx_int8_options.py: full-range weights give 5-7% on both)."""
    errors = {}
    for name in ("cell_step", "feature_lstm"):
        model_dir = _copy(exported(name)[1], tmp_path / name)
        quantize(model_dir, formats=["onnx"])
        streams = [StreamingModel.load(model_dir, backend="onnx", precision=p).create_stream()
                   for p in ("float", "int8")]
        if name == "cell_step":
            inputs = [np.random.default_rng(i).standard_normal(9).astype(np.float32) for i in range(200)]
            y_float, y_int8 = (np.stack([s.push(x) for x in inputs]) for s in streams)
        else:
            x = zoo.random_input(name, 200)[0].numpy()
            y_float, y_int8 = (s.push(x) for s in streams)
        errors[name] = float(np.sqrt(np.mean((y_int8 - y_float) ** 2)) / y_float.std())
    assert errors["cell_step"] <= 0.02 and errors["feature_lstm"] <= 0.02, errors


def test_zoo_models_quantize_and_verify(exported, tmp_path):
    for name in ("feature_lstm", "projected", "tokens_time_major"):
        model_dir = _copy(exported(name)[1], tmp_path / name)
        quantize(model_dir)
        counts = count_onnx_ops(model_dir / "model.int8.onnx")
        assert "LSTM" not in counts["ops"] and counts["ops"].get("DynamicQuantizeLSTM", 0) >= 1, name
        x = zoo.random_input(name, 50)[0].numpy()
        y = StreamingModel.load(model_dir, backend="onnx", precision="int8").create_stream().push(x)
        assert np.isfinite(y).all()


def test_calibration_of_the_wrong_shape_or_too_short_is_refused(quantized_dir, tmp_path):
    target = _copy(quantized_dir, tmp_path / "calibration")
    rng = np.random.default_rng(3)
    with pytest.raises(InputError, match=r"calibration item 0 shape: expected \[T, 40\].*got \[16000\]"):
        quantize(target, calibration=[rng.integers(-300, 300, 16000).astype(np.int16)], mode="static")
    with pytest.raises(InputError, match=r"calibration item 1 shape: expected \[T, 40\].*got \[50, 39\]"):
        quantize(target, calibration=[np.zeros((50, 40), np.float32), np.zeros((50, 39), np.float32)],
                 mode="static")
    with pytest.raises(InputError, match="calibration length: expected at least 100 frames in total.*got 60 frames"):
        quantize(target, calibration=[np.zeros((30, 40), np.float32)] * 2, mode="static")
    assert not Manifest.load(target).has_file("onnx", "int8") or Manifest.load(target).file(
        "onnx", "int8").quantization["mode"] == "dynamic"  # the refused runs left the dynamic file as it was


def test_audio_only_npz_calibration_is_refused_without_a_frontend(quantized_dir, tmp_path):
    from lstm_edge.commands.quantize import load_calibration

    path = tmp_path / "audio.npz"
    np.savez(path, audio=np.zeros((3, 16000), np.int16))
    with pytest.raises(InputError, match="has no audio frontend.*got 'audio'"):
        load_calibration(str(path), str(quantized_dir))
    path = tmp_path / "inputs.npz"
    np.savez(path, inputs=np.zeros((3, 20, 40), np.float32))
    assert [x.shape for x in load_calibration(str(path), str(quantized_dir))] == [(20, 40)] * 3


def test_int8_onnx_imports_only_opset_domains_it_uses(quantized_dir):
    graph = onnx.load(quantized_dir / "model.int8.onnx")
    used = {node.domain for node in graph.graph.node} | {""}
    imported = {opset.domain for opset in graph.opset_import}
    assert imported <= used | {"ai.onnx"}, imported - used
    assert "com.microsoft" in imported  # DynamicQuantizeLSTM lives there


def test_parity_reports_every_chunking_and_takes_a_clip_predictor(quantized_dir, tmp_path):
    target = _copy(quantized_dir, tmp_path / "chunks")
    frames = len(np.load(target / "reference" / "input.npy"))
    rng = np.random.default_rng(4)
    eval_path = tmp_path / "eval.npz"
    np.savez(eval_path, inputs=rng.standard_normal((4, 30, 40)).astype(np.float32), labels=np.array([0, 1, 2, 3]))
    report = parity_report(target, eval_data=eval_path, clip_predictor=lambda logits: 2)
    assert report["chunk_sweep"] == [1, 10, frames]
    for row in report["results"]:
        assert set(row["by_chunk"]) == {"1", "10", str(frames)}
        assert row["eval_accuracy"] == 0.25  # the predictor says 2 for every clip: one of four labels
        if row["precision"] == "float":
            assert row["chunking_spread"] < 1e-4
        if row["format"] == "tflite" and row["precision"] == "int8":
            assert row["chunking_spread"] == 0.0  # fixed per-tensor scales: chunking cannot change the outputs


def test_verify_plot_writes_a_png(quantized_dir, tmp_path):
    target = _copy(quantized_dir, tmp_path / "plot")
    png = tmp_path / "parity.png"
    result = subprocess.run([sys.executable, "-m", "lstm_edge", "verify", str(target), "--plot", str(png)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert "by chunk size" in result.stdout


def test_bench_plot_writes_a_png(quantized_dir, tmp_path):
    png = tmp_path / "bench.png"
    result = subprocess.run([sys.executable, "-m", "lstm_edge", "bench", str(quantized_dir), "--seconds", "0.2",
                             "--plot", str(png)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_quantize_times_both_precisions_and_recommends_one(quantized_dir, tmp_path):
    target = _copy(quantized_dir, tmp_path / "speed")
    result = subprocess.run([sys.executable, "-m", "lstm_edge", "quantize", str(target)], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    for backend in ("onnx", "litert"):
        line = next(x for x in result.stdout.splitlines() if x.startswith(f"recommended for {backend}"))
        assert line.split(": ", 1)[1] in ("float", "int8", "depends on chunk size (see above)")
    slower = [x for x in result.stdout.splitlines() if "T=" in x and "int8" in x]
    assert len(slower) == 4  # two backends x T=1, T=10
    for row in slower:  # the SLOWER note is there exactly when the int8 time is the larger one
        float_us, int8_us = float(row.split("float")[1].split()[0]), float(row.split("int8")[1].split()[0])
        if int8_us != float_us:  # equal after rounding to 0.1 us: either note is right
            assert ("SLOWER" in row) == (int8_us > float_us), row
