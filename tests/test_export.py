"""Export: the ONNX contract (names, metadata, checker, dynamic T) and refusals of models that cannot stream."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from lstm_edge.export import export
from lstm_edge.runtime.errors import ExportError
from lstm_edge.runtime.manifest import Manifest, sha256_of

import zoo


def test_manifest_describes_names_shapes_and_checksums(exported):
    _, model_dir = exported("feature_lstm")
    manifest = Manifest.load(model_dir)
    data = json.loads((model_dir / "manifest.json").read_text())
    assert data["schema"] == "lstm-edge/manifest" and data["schema_version"] == 2
    assert manifest.kind == "sequence"
    assert manifest.input.shape == (1, "T", 20) and manifest.input.time_axis == 1
    assert manifest.output.shape == (1, "T", 7)
    assert [(s.name, s.input, s.output, s.shape) for s in manifest.states] == [
        ("lstm_h", "lstm_h_in", "lstm_h_out", (2, 1, 48)), ("lstm_c", "lstm_c_in", "lstm_c_out", (2, 1, 48))]
    onnx_file = manifest.file("onnx", "float")
    assert onnx_file.sha256 == sha256_of(model_dir / onnx_file.path)
    assert data["producer"]["torch"].startswith("2.13")


def test_learned_initial_state_is_recorded(exported):
    model, model_dir = exported("learned_h0")
    manifest = Manifest.load(model_dir)
    h = next(s for s in manifest.states if s.name == "lstm_h")
    np.testing.assert_allclose(h.initial_value(), model.h0.detach().numpy(), atol=1e-7)


@pytest.mark.parametrize("name", ["feature_lstm", "tokens_time_major", "projected", "gru", "cell_step"])
def test_onnx_file_passes_checker_and_carries_metadata(exported, name):
    _, model_dir = exported(name)
    graph = onnx.load(model_dir / "model.onnx")
    onnx.checker.check_model(graph, full_check=True)
    onnx.shape_inference.infer_shapes(graph, check_type=True, strict_mode=True)
    meta = {p.key: p.value for p in graph.metadata_props}
    manifest = Manifest.load(model_dir)
    states = json.loads(meta["lstm_edge.states"])
    assert [s["input"] for s in states] == [s.input for s in manifest.states]
    assert meta["lstm_edge.kind"] == manifest.kind
    assert [i.name for i in graph.graph.input] == ["x", *[s.input for s in manifest.states]]
    checks = list((manifest.file("onnx", "float").checks or {}).values())
    assert manifest.file("onnx", "float").checks == {"nonfinite_any": "nonfinite"}  # input (floats), output, state
    assert [o.name for o in graph.graph.output] == ["y", *[s.output for s in manifest.states], *checks]


@pytest.mark.parametrize("name", ["feature_lstm", "tokens_time_major", "projected", "stacked_residual", "gru"])
def test_onnx_runs_at_full_optimisation_for_other_lengths(exported, name):
    model, model_dir = exported(name)
    manifest = Manifest.load(model_dir)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(model_dir / "model.onnx"), options, providers=["CPUExecutionProvider"])
    lstm_ops = [n.op_type for n in onnx.load(model_dir / "model.onnx").graph.node if n.op_type in ("LSTM", "GRU")]
    assert lstm_ops, "the recurrent layers should be fused ONNX ops"
    for frames in (1, 37):  # the export example had 10
        x = zoo.random_input(name, frames, seed=frames)
        feed = {"x": x.numpy(), **{s.input: s.initial_value() for s in manifest.states}}
        y = session.run(["y"], feed)[0]
        expected, _ = zoo.torch_reference(model, x)
        assert np.abs(y[0] - expected).max() <= 1e-5


@pytest.mark.parametrize("name", sorted(zoo.REFUSED))
def test_unstreamable_models_are_refused_naming_the_layer(tmp_path, name):
    factory, needle = zoo.REFUSED[name]
    torch.manual_seed(0)
    with pytest.raises(ExportError) as info:
        export(factory().eval(), torch.randn(1, 10, 8), tmp_path)
    message = str(info.value)
    assert needle in message.lower() or needle in message
    if name in ("bidirectional", "conv_over_time", "attention"):
        assert "'lstm'" in message or "'conv'" in message or "'attn'" in message
    assert not (tmp_path / "manifest.json").exists()


def test_bidirectional_gru_is_refused(tmp_path):
    model = torch.nn.GRU(4, 8, bidirectional=True, batch_first=True)

    class Wrapper(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.gru = model

        def forward(self, x):
            return self.gru(x)[0]

    with pytest.raises(ExportError, match="'gru'.*bidirectional"):
        export(Wrapper(), torch.randn(1, 5, 4), tmp_path)


def test_bad_export_arguments(tmp_path):
    model, example = zoo.build("feature_lstm")
    with pytest.raises(ExportError, match="formats"):
        export(model, example, tmp_path, formats=("onnx", "coreml"))
    with pytest.raises(ExportError, match="includes 1"):
        export(model, example, tmp_path, formats=("onnx",), chunk_sizes=(10, 4))
    with pytest.raises(ExportError, match="labels"):
        export(model, example, tmp_path, labels=["a", "b"])
    with pytest.raises(ExportError, match="batch size"):
        export(model, torch.randn(2, 10, 20), tmp_path)
    with pytest.raises(ExportError, match="finite"):
        export(model, torch.full((1, 10, 20), float("nan")), tmp_path)
    with pytest.raises(ExportError, match="nn.Module"):
        export("not a model", example, tmp_path)


def test_initial_state_depending_on_input_is_refused(tmp_path):
    class InputDependent(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(4, 8, batch_first=True)

        def forward(self, x):
            h0 = x.mean(dim=(1, 2)).reshape(1, 1, 1).expand(1, 1, 8).contiguous()
            return self.lstm(x, (h0, torch.zeros_like(h0)))[0]

    with pytest.raises(ExportError, match="depends on the input"):
        export(InputDependent(), torch.randn(1, 6, 4), tmp_path)


def test_labels_are_recorded(tmp_path):
    model, example = zoo.build("gru")
    out = export(model, example, tmp_path, labels=["a", "b", "c"])
    assert Manifest.load(out).labels == ("a", "b", "c")
