"""C weight files for the layer kinds beyond plain sequence stacks: step models (LSTMCell/GRUCell stacks, a step's
own window of past steps, a Silero-style STFT front end over raw samples), GELU, pooling over features, and mixed
precision (the layers an int8 ONNX file keeps float stay float in the int8 C file).

Each model is small and seeded; float C is compared with torch run step by step (within 1e-5 of the outputs'
magnitude), int8 C with the manifest's relative-error gate."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from lstm_edge.devices.mcu_build import McuBuildError, read_weight_file
from lstm_edge.export import export
from lstm_edge.export.c_export import (
    OP_ACT,
    OP_CONV,
    OP_GATHER,
    OP_LINEAR,
    OP_LSTM,
    OP_MUL,
    OP_POOL,
    Layer,
    Program,
    add_c_files,
    program_bytes,
    program_from_onnx,
)
from lstm_edge.runtime import StreamingModel
from lstm_edge.runtime.backends import native
from lstm_edge.runtime.errors import ExportError, ModelFileError
from lstm_edge.runtime.manifest import Manifest, file_entry

import vad_like
import zoo

FLOAT_TOL = 1e-5  # times max(1, largest |output|)
STEPS = 40


def relative_error(got: np.ndarray, expected: np.ndarray) -> float:
    return float(np.sqrt(np.mean((got - expected) ** 2)) / expected.std())


def float_close(got: np.ndarray, expected: np.ndarray) -> bool:
    return float(np.abs(got - expected).max()) <= FLOAT_TOL * max(1.0, float(np.abs(expected).max()))


class PooledStep(nn.Module):
    """A step over a raw window: zero padding, strided Conv1d, max-pooling (padded), average pooling (padding
    counted), a global average over features, a feature concat, an LSTMCell and a GELU head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 4, 5, stride=2, padding=2)
        self.max_pool = nn.MaxPool1d(3, stride=2, padding=1)
        self.avg_pool = nn.AvgPool1d(2, padding=1, count_include_pad=True)
        self.squash = nn.Conv1d(4, 6, 3)
        self.cell = nn.LSTMCell(4 * 5 + 6, 12)
        self.head = nn.Linear(12, 3)

    def initial_state(self, batch_size: int = 1):
        return torch.zeros(batch_size, 12), torch.zeros(batch_size, 12)

    def forward(self, x, state):  # x [1, 32]
        padded = nn.functional.pad(x, (3, 1))  # zeros over the samples: [1, 36]
        h = self.avg_pool(self.max_pool(torch.relu(self.conv(padded.unsqueeze(1)))))  # [1, 4, 5]
        mean = self.squash(h).mean(-1)  # [1, 6]
        h, c = self.cell(torch.cat([h.flatten(1), mean], dim=1), state)
        return nn.functional.gelu(self.head(h)), (h, c)


class PooledCRNN(nn.Module):
    """A causal Conv2d over (time, frequency), then max-pooling over frequency only, then an LSTM."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, kernel_size=(3, 3), padding=(0, 1))
        self.pool = nn.MaxPool2d((1, 2))
        self.lstm = nn.LSTM(4 * 8, 12, batch_first=True)
        self.head = nn.Linear(12, 3)

    def forward(self, x):
        h = self.pool(torch.relu(self.conv(nn.functional.pad(x.unsqueeze(1), (0, 0, 2, 0)))))
        return self.head(self.lstm(h.permute(0, 2, 1, 3).flatten(2))[0])


class StepConv2d(nn.Module):
    """A Conv2d within one step: no C layer (the C convolution has one feature axis besides time)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.cell = nn.LSTMCell(2 * 2 * 2, 8)

    def initial_state(self, batch_size: int = 1):
        return torch.zeros(batch_size, 8), torch.zeros(batch_size, 8)

    def forward(self, x, state):  # x [1, 16]
        h, c = self.cell(self.conv(x.reshape(1, 1, 4, 4)).flatten(1), state)
        return h, (h, c)


STEP_MODELS = {
    "cell_step": lambda: zoo.build("cell_step"),
    "grucell_step": lambda: zoo.build("grucell_step"),
    "context_step": lambda: zoo.build("context_step"),
    "vad_step": lambda: zoo.build("vad_step"),
    "pooled_step": lambda: (torch.manual_seed(0), PooledStep().eval(), torch.randn(1, 32))[1:],
    "silero_like": lambda: (torch.manual_seed(0), vad_like.SileroLike().eval(), torch.randn(1, 512) * 0.1)[1:],
}


@pytest.fixture(scope="module")
def step_dirs(tmp_path_factory):
    cache: dict[str, tuple] = {}

    def get(name: str):
        if name not in cache:
            model, example = STEP_MODELS[name]()
            out = tmp_path_factory.mktemp(name)
            export(model, example, out, formats=("onnx", "c"))
            cache[name] = (model, example, out)
        return cache[name]

    return get


def step_inputs(example: torch.Tensor, seed: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(example.shape, generator=generator) * float(example.std()) for _ in range(STEPS)]


def push_all_at_once(path: Path, steps: np.ndarray) -> np.ndarray:
    """``lem_stream_push`` of all steps in one call (the C stream runs them as frames of one chunk)."""
    import ctypes

    lib = native.library()
    _, model = native.load_c_model(path.read_bytes(), path.name)
    try:
        stream = lib.lem_stream_create(model, len(steps), ctypes.byref(ctypes.c_int(0)))
        x = np.ascontiguousarray(steps.reshape(len(steps), -1), np.float32)
        y = np.empty((len(steps), lib.lem_model_output_width(model)), np.float32)
        status = lib.lem_stream_push(stream, x.ctypes.data, len(steps), y.ctypes.data)
        lib.lem_stream_free(stream)
    finally:
        lib.lem_model_free(model)
    assert status == 0
    return y


@pytest.mark.parametrize("name", list(STEP_MODELS))
def test_step_model_in_c_matches_torch_step_by_step(step_dirs, name):
    model, example, model_dir = step_dirs(name)
    inputs = step_inputs(example, seed=1)
    expected, expected_state = zoo.step_reference(model, inputs)
    expected = np.stack(expected)
    manifest = Manifest.load(model_dir)
    for precision in ("float", "int8"):
        loaded = StreamingModel.load(model_dir, backend="native", precision=precision)
        stream = loaded.create_stream()
        got = np.stack([stream.push(x[0].numpy()) for x in inputs])
        assert got.shape == expected.shape and stream.frames == STEPS
        # the pure step (state threaded through Python) gives the C stream's outputs exactly
        state = loaded.initial_state()
        for t in range(5):
            y, state = loaded.step(inputs[t][0].numpy(), state)
            np.testing.assert_array_equal(y, got[t])
        # the C API pushing every step in one call (lstm-edge-run does) gives the same outputs bitwise
        np.testing.assert_array_equal(push_all_at_once(model_dir / f"model{'.int8' if precision == 'int8' else ''}.lec",
                                                       np.stack([x[0].numpy() for x in inputs])), got)
        if precision == "float":
            assert float_close(got, expected), float(np.abs(got - expected).max())
            for spec, value in zip(manifest.states, expected_state):
                assert float_close(stream.state[spec.name], value.reshape(spec.shape)), spec.name
        elif name == "silero_like":  # random weights: probabilities within 0.002 of 0.489, no spread to compare
            assert float(np.abs(got - expected).max()) <= 0.01  # (the trained one: tests/test_mixed_precision.py)
        else:
            assert relative_error(got, expected) <= manifest.tolerances["int8_relative_error"]


def test_step_model_files_stay_readable_by_older_readers_when_they_can(step_dirs):
    """A stack of LSTMCells needs no new layer: its files are version 1. A front end needs version 3."""
    versions = {name: int.from_bytes((step_dirs(name)[2] / "model.int8.lec").read_bytes()[4:8], "little")
                for name in ("cell_step", "vad_step")}
    assert versions == {"cell_step": 1, "vad_step": 3}


def test_the_stft_front_end_becomes_c_layers(step_dirs):
    """Structure of the Silero-style model: window, reflect pad and the real/imaginary split as gathers, |.|^2 as
    products, the strided STFT and encoder convolutions, the LSTMCell as one LSTM layer, the 1x1 head as linear."""
    _, _, model_dir = step_dirs("silero_like")
    program = program_from_onnx(model_dir / "model.onnx", Manifest.load(model_dir))
    kinds = [layer.type for layer in program.layers]
    assert kinds.count(OP_CONV) == 5 and kinds.count(OP_LSTM) == 1 and kinds.count(OP_LINEAR) == 1
    assert kinds.count(OP_GATHER) == 3 and kinds.count(OP_MUL) == 2
    stft = next(layer for layer in program.layers if layer.sources == ["stft/Conv"])
    assert stft.extra[:3] == [576 + 64, 256, 128]  # features, kernel and stride along the samples


def _tensor_dtypes(data: bytes) -> list[int]:
    """The dtype of every tensor record of a C weight file, in order (docs/manifest.md, "C weight files")."""
    (_, _, _, _, _, n_buffers, n_states, n_layers, _, payload, _, _) = struct.unpack_from("<12I", data, 4)
    pos = 64 + 4 * n_buffers
    sizes = []
    for _ in range(n_states):
        length = struct.unpack_from("<I", data, pos)[0]
        pos += 4 + (length + 3) // 4 * 4
        sizes.append(struct.unpack_from("<I", data, pos)[0])
        pos += 4
    for size in sizes:
        pos += 4 + (4 * size if struct.unpack_from("<I", data, pos)[0] else 0)
    dtypes = []
    counts = {1: 2, 2: 2, 3: 0, 4: 0, 5: 3, 6: 4, 7: 1, 8: 2, 9: 4, 10: 2, 11: 1, 12: 0, 13: 0, 14: 0}
    for _ in range(n_layers):
        kind = struct.unpack_from("<I", data, pos)[0]
        pos += 40 + (24 if kind == 10 else 0)
        for _ in range(counts[kind]):
            dtype, rows, cols = struct.unpack_from("<3I", data, pos)
            dtypes.append(dtype)
            pos += 12 + (rows * cols * 4 if dtype == 0 else (rows * cols + 3) // 4 * 4 + 4 * rows)
    assert pos <= 64 + payload
    return dtypes


def test_mixed_precision_layers_stay_float_in_the_int8_c_file(step_dirs, tmp_path):
    """The layers named float (mixed precision's names: the ONNX node without /model/) keep float32 matrices in the
    int8 file, which is then version 3 and runs closer to the float file than the all-int8 one."""
    model, example, model_dir = step_dirs("vad_step")
    manifest = Manifest.load(model_dir)
    program = program_from_onnx(model_dir / "model.onnx", manifest)
    all_int8 = program_bytes(program, "int8")
    mixed = program_bytes(program, "int8", float_layers=frozenset({"stft/Conv", "cell/MatMul"}))
    assert _tensor_dtypes(all_int8).count(0) + 2 == _tensor_dtypes(mixed).count(0)
    assert int.from_bytes(mixed[4:8], "little") == 3
    inputs = step_inputs(example, seed=2)
    expected = np.stack(zoo.step_reference(model, inputs)[0])
    errors = {}
    for label, data in (("all_int8", all_int8), ("mixed", mixed)):
        target = tmp_path / label
        shutil.copytree(model_dir, target)
        (target / "model.int8.lec").write_bytes(data)
        quantization = manifest.file("c", "int8").quantization
        manifest.with_file(file_entry(target, "model.int8.lec", "c", "int8", quantization=quantization)).save(target)
        stream = StreamingModel.load(target, backend="native", precision="int8").create_stream()
        errors[label] = relative_error(np.stack([stream.push(x[0].numpy()) for x in inputs]), expected)
    assert errors["mixed"] < errors["all_int8"], errors


def test_add_c_follows_the_float_layers_of_the_int8_onnx_file(step_dirs, tmp_path):
    """quantize writes the mix into the ONNX entry; add-c keeps those layers float in the C int8 file (and more
    when the C engine needs them to meet the same gate), records them, and the file passes verify's gates."""
    from lstm_edge.quantize import quantize
    from lstm_edge.quantize.parity import parity_report

    _, _, model_dir = step_dirs("silero_like")  # random weights: all int8 misses the gate, one conv stays float
    target = tmp_path / "mixed"
    shutil.copytree(model_dir, target)
    quantize(target, formats=("onnx",))
    onnx_kept = Manifest.load(target).file("onnx", "int8").quantization["float_layers"]
    manifest = add_c_files(target)
    c_kept = manifest.file("c", "int8").quantization.get("float_layers", [])
    assert onnx_kept, "the ONNX file kept no layer float: nothing to follow"
    assert all(layer in c_kept for layer in onnx_kept)
    info = subprocess.run([sys.executable, "-m", "lstm_edge", "info", str(target)], capture_output=True, text=True,
                          timeout=120).stdout.splitlines()
    c_line = next(i for i, line in enumerate(info) if line.strip().startswith("c/int8"))
    assert info[c_line + 1].strip().startswith(f"float layers: {c_kept[0]['name']}")
    failures = parity_report(target)["failures"]  # verify's gates, the C int8 file's included
    assert failures == [], failures
    dtypes = _tensor_dtypes((target / "model.int8.lec").read_bytes())
    program = program_from_onnx(target / "model.onnx", manifest)
    expected = []
    for layer in program.layers:
        names = layer.sources or [""] * len(layer.matrices)
        expected += [0 if layer.type not in (1, 5, 6, 9, 10) or name in {k["name"] for k in c_kept} else 1
                     for name in names] + [0] * len(layer.vectors)
    assert dtypes == expected


def test_gelu_and_pooling_over_frequency_in_sequence_models(tmp_path):
    for name, (model, example) in {"stacked_residual": zoo.build("stacked_residual"),
                                   "pooled_crnn": (torch.manual_seed(0), PooledCRNN().eval(),
                                                   torch.randn(1, 10, 16))[1:]}.items():
        out = export(model, example, tmp_path / name, formats=("c",))
        x = torch.randn(1, 50, example.shape[-1], generator=torch.Generator().manual_seed(3))
        expected, _ = zoo.torch_reference(model, x)
        got = StreamingModel.load(out, backend="native").create_stream().push(x[0].numpy())
        assert float_close(got, expected), name
        program = program_from_onnx(out / "model.onnx", Manifest.load(out)) if (out / "model.onnx").exists() else None
        if name == "pooled_crnn" and program is not None:
            assert any(layer.type == OP_POOL for layer in program.layers)


@pytest.mark.parametrize("activation, reference", [(6, torch.sqrt), (7, torch.erf),
                                                  (8, nn.functional.gelu)])
def test_new_activations_in_c_match_torch(activation, reference, tmp_path):
    """sqrt, erf and GELU (the ONNX Gelu op of newer opsets) as single C layers."""
    program = Program(0, 5, [5, 5], 1, [], [Layer(OP_ACT, 0, 1, params=[activation])])
    path = tmp_path / "act.lec"
    path.write_bytes(program_bytes(program, "float"))
    x = np.abs(np.random.default_rng(0).normal(size=(30, 5)) * 2).astype(np.float32) * (1 if activation == 6 else
                                                                                        np.sign(np.arange(5) - 2.5))
    x = x.astype(np.float32)
    expected = reference(torch.from_numpy(x)).numpy()
    assert float(np.abs(push_all_at_once(path, x) - expected).max()) <= 1e-6


def test_unsupported_layers_in_step_models_are_refused_by_name(tmp_path):
    torch.manual_seed(0)
    with pytest.raises(ExportError, match=re.escape("cannot convert layer 'conv' (ONNX Conv node '/model/conv/Conv'): "
                                                    "only a Conv1d within a step")):
        export(StepConv2d().eval(), torch.randn(1, 16), tmp_path / "conv2d", formats=("onnx", "c"))


def test_version_3_files_are_refused_by_the_cortex_m_build_and_future_versions_by_the_library(step_dirs):
    _, _, model_dir = step_dirs("vad_step")
    with pytest.raises(McuBuildError, match="version 3 .*reads versions 1 and 2 only"):
        read_weight_file(Path(model_dir) / "model.int8.lec")
    future = bytearray((Path(model_dir) / "model.lec").read_bytes())
    future[4:8] = (4).to_bytes(4, "little")
    with pytest.raises(ModelFileError, match="version 4"):
        native.load_c_model(bytes(future), "future.lec")
