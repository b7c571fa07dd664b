"""int8 TFLite quantization: structure (which ops and I/O became integer) and streaming closeness to float.

The float file is the exporter's: Linear 40->64, LSTM 64x2, Linear 64->12, signatures chunk_10 and chunk_1.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from lstm_edge.export import export
from lstm_edge.quantize.tflite_inspect import count_tflite_ops, fc_bias_mismatches
from lstm_edge.quantize.tflite_quant import quantize_tflite
from lstm_edge.runtime.errors import QuantizationError

STREAM_FRAMES = 200
CHUNK = 10
DYNAMIC_MAX_ABS_DIFF = 1e-2  # int8 weights, float activations
STATIC_MAX_ABS_DIFF = 2e-2  # int8 activations too: y spans ~0.3 with a step of ~1e-3
STATIC_STATE_MAX_ABS_DIFF = 0.1  # carried c spans ~1.7 (int8 step ~7e-3); measured up to 0.09 at T=1
DYNAMIC_MAX_SIZE_RATIO = 0.45


class SmallLSTM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(40, 64)
        self.lstm = nn.LSTM(64, 64, num_layers=2, batch_first=True)
        self.out = nn.Linear(64, 12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.lstm(self.inp(x))
        return self.out(y)


class FileStream:
    """Streams a .tflite signature with state carried in float; int8 I/O is quantized/dequantized per tensor."""

    def __init__(self, path: Path, signature: str, x_name: str, states: list[tuple[str, str]], y_name: str) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=str(path))
        self.runner = self.interpreter.get_signature_runner(signature)
        self.inputs = self.runner.get_input_details()
        self.outputs = self.runner.get_output_details()
        self.x_name, self.states, self.y_name = x_name, states, y_name

    def _to_file(self, name: str, value: np.ndarray) -> np.ndarray:
        detail = self.inputs[name]
        if detail["dtype"] == np.float32:
            return value.astype(np.float32)
        scale, zero = detail["quantization"]
        info = np.iinfo(detail["dtype"])
        return np.clip(np.rint(value / scale) + zero, info.min, info.max).astype(detail["dtype"])

    def _from_file(self, name: str, value: np.ndarray) -> np.ndarray:
        detail = self.outputs[name]
        if detail["dtype"] == np.float32:
            return value
        scale, zero = detail["quantization"]
        return (value.astype(np.float32) - zero) * np.float32(scale)

    def run(self, x: np.ndarray, chunk: int) -> tuple[np.ndarray, list[dict[str, np.ndarray]]]:
        """Outputs over ``x`` [1, T, F] and the float feed of every chunk (state as carried)."""
        state = {state_in: np.zeros(self.inputs[state_in]["shape"], np.float32) for state_in, _ in self.states}
        ys, feeds = [], []
        for start in range(0, x.shape[1], chunk):
            feed = {self.x_name: x[:, start:start + chunk], **state}
            feeds.append({name: value.copy() for name, value in feed.items()})
            out = self.runner(**{name: self._to_file(name, value) for name, value in feed.items()})
            ys.append(self._from_file(self.y_name, out[self.y_name]))
            state = {state_in: self._from_file(state_out, out[state_out]) for state_in, state_out in self.states}
        return np.concatenate(ys, axis=1), feeds


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict:
    torch.manual_seed(0)
    model = SmallLSTM().eval()
    out = tmp_path_factory.mktemp("tflite_quant")
    export(model, torch.randn(1, CHUNK, 40), out, formats=("tflite",), chunk_sizes=(CHUNK, 1))
    manifest = json.loads((out / "manifest.json").read_text())
    entry = next(f for f in manifest["files"] if f["format"] == "tflite")
    names = {
        "x_name": manifest["inputs"][0]["name"],
        "y_name": manifest["outputs"][0]["name"],
        "states": [(s["input"], s["output"]) for s in manifest["states"]],
    }
    return {"dir": out, "float": out / entry["path"], "signatures": entry["signatures"], "names": names}


def _stream(path: Path, exported: dict, chunk: int, x: np.ndarray) -> tuple[np.ndarray, list[dict[str, np.ndarray]]]:
    return FileStream(path, exported["signatures"][str(chunk)], **exported["names"]).run(x, chunk)


@pytest.fixture(scope="module")
def test_stream() -> np.ndarray:
    return np.random.default_rng(1).standard_normal((1, STREAM_FRAMES, 40)).astype(np.float32)


@pytest.fixture(scope="module")
def calibration(exported: dict) -> dict[str, list[dict[str, np.ndarray]]]:
    """Feeds recorded by streaming sequences through the float file: state as a stream carries it.

    Sequences as long as the test stream: c accumulates, so its range grows with the sequence length, and a
    state range never reached during calibration is clipped later (4 x 100 frames clipped c at 0.70 of 0.88).
    """
    rng = np.random.default_rng(2)
    feeds: dict[str, list[dict[str, np.ndarray]]] = {}
    for chunk in (CHUNK, 1):
        key = exported["signatures"][str(chunk)]
        feeds[key] = []
        for _ in range(4):
            x = rng.standard_normal((1, STREAM_FRAMES, 40)).astype(np.float32)
            feeds[key] += _stream(exported["float"], exported, chunk, x)[1]
    return feeds


def test_dynamic_int8_weights_float_io_close_to_float(exported: dict, test_stream: np.ndarray) -> None:
    out = exported["dir"] / "model_dynamic.tflite"
    record = quantize_tflite(exported["float"], out, "dynamic", None)
    assert record["mode"] == "dynamic" and record["io_dtype"] == "float32"
    assert record["recipe"] == "dynamic_wi8_afp32" and record["tool"].startswith("ai-edge-quantizer ")
    assert record["weight_granularity"] == "tensorwise"

    facts, float_facts = count_tflite_ops(out), count_tflite_ops(exported["float"])
    assert set(facts["signatures"]) == set(exported["signatures"].values())
    for key, sig in facts["signatures"].items():
        fc = sig["ops"]["FULLY_CONNECTED"]
        assert fc["count"] > 0 and fc["int8_weights"] == fc["count"], (key, fc)
        assert set(sig["inputs"].values()) == {"float32"} and set(sig["outputs"].values()) == {"float32"}, sig
    # One int8 buffer per float weight matrix: the signatures still share their weights.
    assert facts["weight_operand_buffers"] == {"int8": sum(float_facts["weight_operand_buffers"].values())}
    assert float_facts["weight_operand_buffers"] == {"float32": 6}
    # Size without tensor names (debug strings, identical in both files and long in exported graphs).
    size = out.stat().st_size - _name_bytes(out)
    float_size = exported["float"].stat().st_size - _name_bytes(exported["float"])
    assert size <= DYNAMIC_MAX_SIZE_RATIO * float_size, (size, float_size)

    for chunk in (CHUNK, 1):
        y_float, _ = _stream(exported["float"], exported, chunk, test_stream)
        y_int8, _ = _stream(out, exported, chunk, test_stream)
        diff = float(np.max(np.abs(y_int8 - y_float)))
        assert diff <= DYNAMIC_MAX_ABS_DIFF, f"chunk {chunk}: max |dynamic - float| {diff:.3g}"


def test_static_int8_io_state_not_clipped_and_close_to_float(exported: dict, test_stream: np.ndarray,
                                                             calibration: dict) -> None:
    out = exported["dir"] / "model_static.tflite"
    record = quantize_tflite(exported["float"], out, "static", calibration,
                             states=exported["names"]["states"])
    assert record["recipe"].startswith("static_wi8_ai16") and record["weight_granularity"] == "tensorwise"
    assert record["calibration_chunks"] == sum(len(v) for v in calibration.values())

    # Full integer: int8 x int8 matmuls, int16 everywhere else, the carried state int16 at the signature.
    facts = count_tflite_ops(out)
    assert set(facts["signatures"]) == set(exported["signatures"].values())
    for key, sig in facts["signatures"].items():
        for state_in, state_out in exported["names"]["states"]:
            assert sig["inputs"][state_in] == "int16" and sig["outputs"][state_out] == "int16", sig
        assert set(sig["inputs"].values()) | set(sig["outputs"].values()) <= {"int8", "int16"}, sig
        fc = sig["ops"]["FULLY_CONNECTED"]
        assert fc["int8_weights"] == fc["int8_activations"] == fc["count"] > 0, (key, fc)
        assert sig["ops"]["LOGISTIC"]["int8_activations"] == 0, (key, sig["ops"]["LOGISTIC"])
        float_ops = {op: c for op, c in sig["ops"].items() if c["integer"] != c["count"]}
        assert not float_ops, (key, float_ops)
    assert facts["weight_operand_buffers"] == {"int8": 6}
    assert fc_bias_mismatches(out, exported["float"]) == []
    _assert_signature_outputs_are_graph_outputs(out)

    # The int8 range of every state input covers what the stream carried during calibration (no clipping).
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(out))
    for key, feeds in calibration.items():
        details = interpreter.get_signature_runner(key).get_input_details()
        for state_in, _ in exported["names"]["states"]:
            data = np.stack([feed[state_in] for feed in feeds])
            scale, zero = details[state_in]["quantization"]
            info = np.iinfo(details[state_in]["dtype"])
            low, high = (info.min - zero) * scale, (info.max - zero) * scale
            assert low - scale / 2 <= data.min() and data.max() <= high + scale / 2, \
                (key, state_in, (low, high), (float(data.min()), float(data.max())))
            assert record["state_ranges"][key][state_in[:-3]][state_in]["scale"] == pytest.approx(scale)

    for chunk in (CHUNK, 1):
        y_float, float_feeds = _stream(exported["float"], exported, chunk, test_stream)
        y_int8, int8_feeds = _stream(out, exported, chunk, test_stream)
        diff = float(np.max(np.abs(y_int8 - y_float)))
        assert diff <= STATIC_MAX_ABS_DIFF, f"chunk {chunk}: max |static - float| {diff:.3g}"
        key = exported["signatures"][str(chunk)]
        for state_in, _ in exported["names"]["states"]:
            low, high = record["state_ranges"][key][state_in[:-3]][state_in]["range"]
            carried = np.stack([feed[state_in] for feed in float_feeds])
            int8_carried = np.stack([feed[state_in] for feed in int8_feeds])
            inside = (carried >= low) & (carried <= high)
            assert inside.mean() >= 0.99, f"chunk {chunk}: {state_in} outside [{low:.3g}, {high:.3g}] " \
                                          f"{1 - inside.mean():.2%} of the time"
            state_diff = float(np.max(np.abs(int8_carried - carried)))
            assert state_diff <= STATIC_STATE_MAX_ABS_DIFF, f"chunk {chunk}: {state_in} drifted by {state_diff:.3g}"


def _assert_signature_outputs_are_graph_outputs(path: Path) -> None:
    """A signature output that is not its subgraph's output reads memory the interpreter reuses."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(path.read_bytes(), 0)
    for sig in model.signatureDefs:
        outputs = set(int(i) for i in model.subgraphs[sig.subgraphIndex].outputs)
        assert {m.tensorIndex for m in sig.outputs} <= outputs, sig.signatureKey


def test_bias_check_finds_a_bias_quantized_for_another_scale(exported: dict, calibration: dict,
                                                              tmp_path: Path) -> None:
    """The check behind the static refusal: a bias whose integers were packed for another input scale (what a
    buffer shared across signatures gets when it is quantized twice) no longer dequantizes to the float bias."""
    from ai_edge_litert import schema_py_generated as schema

    out = exported["dir"] / "model_static.tflite"
    if not out.exists():
        quantize_tflite(exported["float"], out, "static", calibration, states=exported["names"]["states"])
    raw = bytearray(out.read_bytes())
    model = schema.ModelT.InitFromPackedBuf(bytes(raw), 0)
    subgraph = model.subgraphs[0]
    fc = next(op for op in subgraph.operators
              if model.operatorCodes[op.opcodeIndex].builtinCode == schema.BuiltinOperator.FULLY_CONNECTED)
    buffer = model.buffers[subgraph.tensors[fc.inputs[2]].buffer]
    # Small files keep buffers inline, large ones after the flatbuffer by offset.
    data = bytes(np.asarray(buffer.data, np.uint8)) if buffer.data is not None else bytes(
        raw[buffer.offset:buffer.offset + buffer.size])
    start = raw.find(data)
    assert len(data) > 0 and start > 0 and raw.find(data, start + 1) == -1
    raw[start:start + len(data)] = (np.frombuffer(data, np.int32) * 3).astype(np.int32).tobytes()
    corrupted = tmp_path / "corrupted.tflite"
    corrupted.write_bytes(bytes(raw))
    found = fc_bias_mismatches(corrupted, exported["float"])
    assert found and "do not dequantize to the float bias" in found[0]


def test_refusals_say_expected_and_got(exported: dict, calibration: dict, tmp_path: Path) -> None:
    out = tmp_path / "refused.tflite"
    with pytest.raises(QuantizationError, match="expected 'dynamic' or 'static', got 'int4'"):
        quantize_tflite(exported["float"], out, "int4", None)
    one_signature = {key: feeds for key, feeds in calibration.items() if key == exported["signatures"]["1"]}
    with pytest.raises(QuantizationError, match="calibrated signatures"):
        quantize_tflite(exported["float"], out, "static", one_signature, states=exported["names"]["states"])
    bad_shape = {key: [{**feeds[0], "x": feeds[0]["x"][:, :1]}] if key == exported["signatures"][str(CHUNK)]
                 else feeds for key, feeds in calibration.items()}
    with pytest.raises(QuantizationError, match=r"shape of 'x': expected \[1, 10, 40\], got \[1, 1, 40\]"):
        quantize_tflite(exported["float"], out, "static", bad_shape, states=exported["names"]["states"])
    assert not out.exists()


def _name_bytes(path: Path) -> int:
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(path.read_bytes(), 0)
    return sum(len(tensor.name or b"") for subgraph in model.subgraphs for tensor in subgraph.tensors)
