"""Causal convolutions, conv-front-end step models and many-to-one classifiers: export -> quantize -> verify ->
stream on both backends, against the unmodified torch model."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from test_parity import random_chunks, stream_in_chunks
from torch import nn

from lstm_edge.export import export
from lstm_edge.export.wrap import identifier
from lstm_edge.quantize import quantize
from lstm_edge.quantize.parity import parity_report
from lstm_edge.runtime import StreamingModel
from lstm_edge.runtime.errors import ExportError
from lstm_edge.runtime.manifest import ANSWER_SO_FAR, Manifest

import zoo
from conftest import BACKENDS, FORMATS

TOL = 1e-5
FRAMES = 90
CONVS = sorted(zoo.CONV_MODELS)
MANY_TO_ONE = sorted(zoo.MANY_TO_ONE_MODELS)
STEPS = sorted(zoo.FRONT_END_STEP_MODELS)
PRECISIONS = ("float", "int8")


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """name -> (model, model_dir, parity report): exported in both formats, quantized (dynamic) and verified once."""
    cache: dict[str, tuple] = {}

    def get(name: str):
        if name not in cache:
            model, example = zoo.build(name)
            out = export(model, example, tmp_path_factory.mktemp(name), formats=FORMATS, chunk_sizes=(10, 1))
            quantize(out)
            cache[name] = (model, out, parity_report(out))
        return cache[name]

    return get


def _conv_inputs(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each conv layer's input on the whole sequence (to check the carried context against)."""
    seen: dict[str, torch.Tensor] = {}
    handles = [module.register_forward_pre_hook(lambda m, args, path=path: seen.setdefault(path, args[0]))
               for path, module in model.named_modules() if isinstance(module, (nn.Conv1d, nn.Conv2d))]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return seen


# ------------------------------------------------------------------ causal convolutions
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", CONVS)
def test_conv_models_stream_in_random_chunks_like_torch_on_the_whole_sequence(pipeline, name, backend):
    model, model_dir, _ = pipeline(name)
    x = zoo.random_input(name, FRAMES, seed=21)
    with torch.no_grad():
        expected = model(x)[0].numpy()
    streaming = StreamingModel.load(model_dir, backend=backend)
    for seed in (1, 2, 3):
        stream = streaming.create_stream()
        got = stream_in_chunks(stream, x[0].numpy(), random_chunks(FRAMES, seed=seed, high=13))
        assert got.shape == expected.shape
        assert np.abs(got - expected).max() <= TOL, seed
    # the carried context of each causal conv is the last (k-1)*d frames of that layer's input
    manifest = Manifest.load(model_dir)
    contexts = {s.name: s for s in manifest.states if s.name.endswith("_context")}
    assert contexts, "a causal conv model carries its convolutions' context as state"
    conv_inputs = _conv_inputs(model, x)
    for path, full in conv_inputs.items():
        spec = contexts.get(f"{identifier(path)}_context")
        if spec is None:
            continue  # kernel 1 along time: no context
        frames = spec.shape[2]
        want = full[:, :, -frames:].numpy()
        assert np.abs(stream.state[spec.name] - want).max() <= TOL, path


@pytest.mark.parametrize("name", CONVS + MANY_TO_ONE + STEPS)
def test_int8_files_pass_the_parity_gates(pipeline, name):
    _, model_dir, report = pipeline(name)
    assert report["failures"] == []
    keys = {(r["format"], r["precision"]) for r in report["results"]}
    assert keys == {(f, p) for f in FORMATS for p in PRECISIONS}
    for result in report["results"]:
        if result["precision"] == "float":
            assert result["max_abs_diff"] <= TOL


@pytest.mark.parametrize("name", CONVS + ["vad_step"])
def test_onnx_int8_convolutions_became_integer(pipeline, name):
    _, model_dir, _ = pipeline(name)
    ops = [node.op_type for node in onnx.load(model_dir / "model.int8.onnx").graph.node]
    assert "ConvInteger" in ops and "Conv" not in ops


@pytest.mark.parametrize("name", ["depthwise_separable", "vad_step"])
def test_tflite_int8_depthwise_convolutions_give_the_same_output_every_run(pipeline, name):
    _, model_dir, _ = pipeline(name)
    manifest = Manifest.load(model_dir)
    quantization = manifest.file("tflite", "int8").quantization
    assert "depthwise" in quantization["notes"]
    shape = [10 if d == "T" else d for d in manifest.input.shape[1:]]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32) * 0.1
    runs = [StreamingModel.load(model_dir, backend="litert", precision="int8").create_stream().push(x)
            for _ in range(8)]
    assert np.isfinite(runs[0]).all()
    for run in runs[1:]:
        np.testing.assert_array_equal(run, runs[0])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("precision", PRECISIONS)
def test_int8_and_float_streams_do_not_depend_on_chunking(pipeline, backend, precision):
    _, model_dir, _ = pipeline("dilated_tcn")
    x = zoo.random_input("dilated_tcn", 60, seed=4)[0].numpy()
    model = StreamingModel.load(model_dir, backend=backend, precision=precision)
    whole = model.create_stream().push(x)
    # int8: dynamic quantization scales activations by each call's own range, so chunking moves the rounding
    tolerance = 1e-5 if precision == "float" else 5e-3
    for sizes in ([1] * 60, random_chunks(60, seed=8, high=17)):
        assert np.abs(stream_in_chunks(model.create_stream(), x, sizes) - whole).max() <= tolerance


def test_conv_context_is_a_named_state_in_manifest_onnx_and_tflite(pipeline):
    _, model_dir, _ = pipeline("causal_crnn")
    manifest = Manifest.load(model_dir)
    names = [s.name for s in manifest.states]
    assert names == ["lstm_h", "lstm_c", "conv_context", "conv2_context"]
    shapes = {s.name: s.shape for s in manifest.states}
    assert shapes["conv_context"] == (1, 1, 2, 16) and shapes["conv2_context"] == (1, 4, 1, 16)
    graph = onnx.load(model_dir / "model.onnx")
    assert [i.name for i in graph.graph.input] == ["x", *[s.input for s in manifest.states]]
    from ai_edge_litert.interpreter import Interpreter

    signatures = Interpreter(model_path=str(model_dir / "model.tflite")).get_signature_list()
    for key in ("chunk_10", "chunk_1"):
        assert sorted(signatures[key]["inputs"]) == sorted(["x", *[s.input for s in manifest.states]])


def test_conv2d_with_time_on_the_last_axis_streams(tmp_path):
    class TimeLast(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 3, kernel_size=(3, 4), dilation=(1, 2))  # (freq, time)
            self.lstm = nn.LSTM(3 * 6, 10, batch_first=True)

        def forward(self, x):  # x [1, T, 8]
            h = nn.functional.pad(x.transpose(1, 2).unsqueeze(1), (6, 0))  # [1, 1, F, T], time padded on the left
            h = self.conv(h)  # [1, 3, 6, T]
            return self.lstm(h.flatten(1, 2).transpose(1, 2))[0]

    torch.manual_seed(0)
    model = TimeLast().eval()
    out = export(model, torch.randn(1, 10, 8), tmp_path)
    state = next(s for s in Manifest.load(out).states if s.name == "conv_context")
    assert state.shape == (1, 1, 8, 6)
    x = torch.randn(1, 50, 8)
    with torch.no_grad():
        expected = model(x)[0].numpy()
    got = stream_in_chunks(StreamingModel.load(out, backend="onnx").create_stream(), x[0].numpy(),
                           random_chunks(50, seed=3, high=9))
    assert np.abs(got - expected).max() <= TOL


class SymmetricPad(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(8, 8, kernel_size=3)
        self.lstm = nn.LSTM(8, 8, batch_first=True)

    def forward(self, x):
        return self.lstm(self.conv(nn.functional.pad(x.transpose(1, 2), (1, 1))).transpose(1, 2))[0]


class PoolOverTime(nn.Module):
    def __init__(self):
        super().__init__()
        self.pool = nn.MaxPool1d(2)
        self.lstm = nn.LSTM(8, 8, batch_first=True)

    def forward(self, x):
        return self.lstm(self.pool(x.transpose(1, 2)).transpose(1, 2))[0]


@pytest.mark.parametrize("factory, needles", [
    (zoo.StridedConv, ["'conv'", "stride 2 over time"]),
    (zoo.SameConv, ["'conv'", "padding='same'", "F.pad(x, (2, 0))"]),
    (zoo.ConvOverTime, ["'conv'", "not causal", "padding=2 and drop the last 2"]),
    (SymmetricPad, ["'conv'", "not causal", "1 zero frames before and 1 after"]),
    (PoolOverTime, ["'pool'", "pools over time"]),
    (zoo.CellStateClassifier, ["many-to-one", "c_n"]),
])
def test_unstreamable_convolutions_are_refused_with_reason_and_fix(tmp_path, factory, needles):
    torch.manual_seed(0)
    with pytest.raises(ExportError) as info:
        export(factory().eval(), torch.randn(1, 10, 8), tmp_path)
    for needle in needles:
        assert needle in str(info.value)
    assert not (tmp_path / "manifest.json").exists()


# ------------------------------------------------------------------ many-to-one classifiers
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", MANY_TO_ONE)
def test_many_to_one_rows_are_the_answers_so_far(pipeline, name, backend):
    model, model_dir, _ = pipeline(name)
    manifest = Manifest.load(model_dir)
    assert manifest.output.per_frame == ANSWER_SO_FAR and manifest.output.shape[:2] == (1, "T")
    x = zoo.random_input(name, 40, seed=6)
    streaming = StreamingModel.load(model_dir, backend=backend)
    for seed in (1, 2):
        rows = stream_in_chunks(streaming.create_stream(), x[0].numpy(), random_chunks(40, seed=seed, high=12))
        assert rows.shape[0] == 40
        with torch.no_grad():
            assert np.abs(rows[-1] - model(x)[0].numpy()).max() <= TOL
            for t in range(40):
                assert np.abs(rows[t] - model(x[:, :t + 1])[0].numpy()).max() <= TOL, t


def test_many_to_one_is_marked_in_the_onnx_metadata(pipeline):
    _, model_dir, _ = pipeline("last_state_classifier")
    meta = {p.key: p.value for p in onnx.load(model_dir / "model.onnx").metadata_props}
    assert json.loads(meta["lstm_edge.output"])["per_frame"] == ANSWER_SO_FAR
    per_frame_model = json.loads((model_dir / "manifest.json").read_text())["outputs"][0]
    assert per_frame_model["per_frame"] == ANSWER_SO_FAR


# ------------------------------------------------------------------ step models with a conv front end
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", STEPS)
def test_front_end_step_models_match_torch_step_by_step(pipeline, name, backend):
    model, model_dir, _ = pipeline(name)
    _, example = zoo.build(name)
    generator = torch.Generator().manual_seed(12)
    inputs = [torch.randn(example.shape, generator=generator) * float(example.std()) for _ in range(40)]
    expected, expected_state = zoo.step_reference(model, inputs)
    stream = StreamingModel.load(model_dir, backend=backend).create_stream()
    for x, want in zip(inputs, expected):
        assert np.abs(stream.push(x[0].numpy()) - want).max() <= TOL
    for got, want in zip(stream.state.values(), expected_state):
        assert np.abs(got - want).max() <= TOL


class Spectrum(nn.Module):
    def forward(self, x):
        return torch.fft.rfft(x).abs()


class FftStep(nn.Module):
    """A step model with an op the ONNX exporter does not have (rfft), inside a layer named 'spectrum'."""

    def __init__(self):
        super().__init__()
        self.spectrum = Spectrum()
        self.cell = nn.LSTMCell(9, 8)

    def initial_state(self, batch_size: int = 1):
        return (torch.zeros(batch_size, 8), torch.zeros(batch_size, 8))

    def forward(self, x, state):
        h, c = self.cell(self.spectrum(x), state)
        return h, (h, c)


@pytest.mark.parametrize("verbose", [False, True])
def test_an_export_failure_is_one_readable_error_naming_the_layer(tmp_path, capfd, verbose):
    with pytest.raises(ExportError) as info:
        export(FftStep(), torch.randn(1, 16), tmp_path, verbose=verbose)
    message = str(info.value)
    assert message.startswith("torch.onnx.export failed in layer 'spectrum' (Spectrum)")
    assert "fft_rfft" in message
    out, err = capfd.readouterr()
    if verbose:
        assert "graph(" in err + message
    else:
        assert len(message.splitlines()) == 1 and "--verbose" in message
        assert "graph(" not in out + err and "%" not in out + err


FFT_MODEL_FILE = '''
import torch
from torch import nn


class Spectrum(nn.Module):
    def forward(self, x):
        return torch.fft.rfft(x).abs()


class FftStep(nn.Module):
    def __init__(self):
        super().__init__()
        self.spectrum = Spectrum()
        self.cell = nn.LSTMCell(9, 8)

    def initial_state(self, batch_size=1):
        return (torch.zeros(batch_size, 8), torch.zeros(batch_size, 8))

    def forward(self, x, state):
        h, c = self.cell(self.spectrum(x), state)
        return h, (h, c)


def make():
    return FftStep()
'''


def test_cli_export_failure_prints_one_line_and_the_dump_only_with_verbose(tmp_path, capfd):
    from lstm_edge.cli import main

    source = tmp_path / "fft_model.py"
    source.write_text(FFT_MODEL_FILE)
    command = ["export", f"{source}:make", "--example-shape", "1,16", "-o", str(tmp_path / "out")]
    assert main(command) == 1
    _, err = capfd.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    # The model has no weights to load, so the CLI first warns that it exports initial weights; then one error line.
    assert len(lines) == 2 and lines[0].startswith("warning: no --weights given")
    assert "layer 'spectrum' (Spectrum)" in lines[1] and lines[1].startswith("lstm-edge export")
    assert main([*command, "--verbose"]) == 1
    _, err = capfd.readouterr()
    assert "graph(" in err and "layer 'spectrum' (Spectrum)" in err


def test_a_conv_only_model_streams_and_its_float_conv_is_not_called_int8(tmp_path):
    from lstm_edge.quantize.onnx_quant import check_int8_structure
    from lstm_edge.runtime.errors import QuantizationError

    class ConvOnly(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv1d(6, 4, kernel_size=4, dilation=2)

        def forward(self, x):
            return self.conv(nn.functional.pad(x.transpose(1, 2), (6, 0))).transpose(1, 2)

    torch.manual_seed(0)
    model = ConvOnly().eval()
    out = export(model, torch.randn(1, 10, 6), tmp_path)
    assert [s.name for s in Manifest.load(out).states] == ["conv_context"]
    x = torch.randn(1, 33, 6)
    with torch.no_grad():
        expected = model(x)[0].numpy()
    got = stream_in_chunks(StreamingModel.load(out, backend="onnx").create_stream(), x[0].numpy(), [1, 5, 2, 25])
    assert np.abs(got - expected).max() <= TOL
    with pytest.raises(QuantizationError, match="1 Conv ops are still float"):
        check_int8_structure(out / "model.onnx", "dynamic")
