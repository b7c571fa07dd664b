"""Tests of the TFLite writer and the LiteRT backend on small seeded LSTM models.

Parity template: the model streamed chunk by chunk through the .tflite signatures, state carried, against torch
on the whole sequence; outputs and final state compared.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from ai_edge_litert.interpreter import Interpreter

from lstm_edge.export.graph_io import GraphIO
from lstm_edge.export.tflite_export import tflite_checks, write_tflite
from lstm_edge.runtime import StreamingModel as Model
from lstm_edge.runtime.backends import litert
from lstm_edge.runtime.errors import ExportError, InputError, ModelFileError
from lstm_edge.runtime.manifest import Manifest, StateSpec, TensorSpec, file_entry

STREAM_VS_WHOLE_ATOL = 1e-5
SHARED_WEIGHTS_MAX_RATIO = 1.5  # a 2-signature file vs a 1-signature file; two weight copies would be > 1.9x
FEATURES, HIDDEN, LAYERS, CLASSES = 40, 64, 2, 12
VOCAB, EMBED, TOKEN_HIDDEN, TOKEN_CLASSES = 50, 16, 32, 7
LENGTHS = (10, 1)
STATE_NAMES = ["lstm_h_in", "lstm_c_in"], ["lstm_h_out", "lstm_c_out"]


class FeatureLstm(torch.nn.Module):
    """Linear -> 2-layer LSTM -> Linear on [1, T, F] features, state as explicit tensors."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(FEATURES, HIDDEN)
        self.lstm = torch.nn.LSTM(HIDDEN, HIDDEN, LAYERS, batch_first=True)
        self.head = torch.nn.Linear(HIDDEN, CLASSES)

    def forward(self, x: torch.Tensor, h_in: torch.Tensor, c_in: torch.Tensor):
        y, (h_out, c_out) = self.lstm(self.proj(x), (h_in, c_in))
        return self.head(y), h_out, c_out


class TokenLstm(torch.nn.Module):
    """Embedding -> 2-layer LSTM -> Linear on [1, T] int64 token ids."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(VOCAB, EMBED)
        self.lstm = torch.nn.LSTM(EMBED, TOKEN_HIDDEN, LAYERS, batch_first=True)
        self.head = torch.nn.Linear(TOKEN_HIDDEN, TOKEN_CLASSES)

    def forward(self, ids: torch.Tensor, h_in: torch.Tensor, c_in: torch.Tensor):
        y, (h_out, c_out) = self.lstm(self.embed(ids), (h_in, c_in))
        return self.head(y), h_out, c_out


class StepLstm(FeatureLstm):
    """One frame per call: x is [1, F], y is [1, C]."""

    def forward(self, x: torch.Tensor, h_in: torch.Tensor, c_in: torch.Tensor):
        y, h_out, c_out = super().forward(x.unsqueeze(1), h_in, c_in)
        return y[:, 0], h_out, c_out


def _write(module: torch.nn.Module, example_x: torch.Tensor, states: tuple[torch.Tensor, ...], input_name: str,
           output_name: str, state_inputs: list[str], state_outputs: list[str], lengths: tuple[int, ...] | None,
           path: Path) -> dict[str, str]:
    """The writer, given its graph I/O record."""
    graph_io = GraphIO(example_x, tuple(states), input_name, output_name, tuple(state_inputs), tuple(state_outputs),
                       lengths)
    return write_tflite(module, graph_io, path)


def _zeros_state(hidden: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.zeros(LAYERS, 1, hidden), torch.zeros(LAYERS, 1, hidden)


def _write_model_dir(model_dir: Path, module: torch.nn.Module, example_x: torch.Tensor, hidden: int,
                     input_spec: TensorSpec, output_spec: TensorSpec, lengths: tuple[int, ...] | None,
                     kind: str = "sequence") -> Manifest:
    """Write ``model.tflite`` with the writer and a manifest describing it."""
    model_dir.mkdir(parents=True, exist_ok=True)
    state_in, state_out = STATE_NAMES
    signatures = _write(module, example_x, _zeros_state(hidden), input_spec.name, output_spec.name,
                              state_in, state_out, lengths, model_dir / "model.tflite")
    states = tuple(StateSpec(name, name + "_in", name + "_out", "float32", (LAYERS, 1, hidden))
                   for name in ("lstm_h", "lstm_c"))
    entry = file_entry(model_dir, "model.tflite", "tflite", "float", chunk_sizes=lengths, signatures=signatures,
                       checks=tflite_checks(example_x))
    manifest = Manifest(kind=kind, inputs=(input_spec,), outputs=(output_spec,), states=states, files=(entry,))
    manifest.save(model_dir)
    return manifest


@pytest.fixture(scope="module")
def feature_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[FeatureLstm, Path]:
    torch.manual_seed(0)
    module = FeatureLstm().eval()
    model_dir = tmp_path_factory.mktemp("feature")
    _write_model_dir(model_dir, module, torch.randn(1, 10, FEATURES), HIDDEN,
                     TensorSpec("x", "float32", (1, "T", FEATURES)), TensorSpec("y", "float32", (1, "T", CLASSES)),
                     LENGTHS)
    return module, model_dir


@pytest.fixture(scope="module")
def token_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[TokenLstm, Path]:
    torch.manual_seed(1)
    module = TokenLstm().eval()
    model_dir = tmp_path_factory.mktemp("token")
    _write_model_dir(model_dir, module, torch.randint(0, VOCAB, (1, 3)), TOKEN_HIDDEN,
                     TensorSpec("ids", "int64", (1, "T"), value_range=(0, VOCAB)),
                     TensorSpec("logits", "float32", (1, "T", TOKEN_CLASSES)), LENGTHS)
    return module, model_dir


def _torch_whole(module: torch.nn.Module, x: np.ndarray, hidden: int) -> tuple[np.ndarray, list[np.ndarray]]:
    with torch.no_grad():
        y, h, c = module(torch.from_numpy(x), *_zeros_state(hidden))
    return y.numpy(), [h.numpy(), c.numpy()]


def _stream_backend(backend, x: np.ndarray, chunks: list[int], hidden: int) -> tuple[np.ndarray, list[np.ndarray]]:
    states = [np.zeros((LAYERS, 1, hidden), np.float32) for _ in range(2)]
    pieces, start = [], 0
    for length in chunks:
        y, states = backend.run(x[:, start:start + length], states)
        pieces.append(y)
        start += length
    if start != x.shape[1]:
        raise ValueError(f"chunks cover {start} frames, expected {x.shape[1]}")
    return np.concatenate(pieces, axis=1), states


def _open(model_dir: Path, fast_path: bool = True) -> litert.LiteRTBackend:
    manifest = Manifest.load(model_dir)
    entry = manifest.file("tflite", "float")
    return litert.LiteRTBackend(model_dir / entry.path, manifest, entry, threads=1, fast_path=fast_path)


MIXED_CHUNKS = [10, 1, 1, 10, 1, 1, 1, 10, 1]  # 36 frames, T=10 and T=1 interleaved


def test_signature_names_are_the_manifest_names(feature_model: tuple[FeatureLstm, Path]) -> None:
    _, model_dir = feature_model
    manifest = Manifest.load(model_dir)
    assert manifest.files[0].signatures == {"10": "chunk_10", "1": "chunk_1"}
    signatures = Interpreter(model_path=str(model_dir / "model.tflite")).get_signature_list()
    assert set(signatures) == {"chunk_10", "chunk_1"}
    for names in signatures.values():
        assert sorted(names["inputs"]) == ["lstm_c_in", "lstm_h_in", "x"]
        assert sorted(names["outputs"]) == ["lstm_c_out", "lstm_h_out", "nonfinite", "y"]  # nonfinite: the finite check
    runner = Interpreter(model_path=str(model_dir / "model.tflite")).get_signature_runner("chunk_10")
    assert list(runner.get_input_details()["x"]["shape"]) == [1, 10, FEATURES]
    assert list(runner.get_output_details()["y"]["shape"]) == [1, 10, CLASSES]


def test_one_file_shares_weights_between_signatures(feature_model: tuple[FeatureLstm, Path], tmp_path: Path) -> None:
    module, model_dir = feature_model
    single = tmp_path / "single.tflite"
    signatures = _write(module, torch.randn(1, 10, FEATURES), _zeros_state(HIDDEN), "x", "y",
                              *STATE_NAMES, (1,), single)
    assert signatures == {"1": "chunk_1"}
    two = (model_dir / "model.tflite").stat().st_size
    one = single.stat().st_size
    weight_bytes = sum(p.numel() * 4 for p in module.parameters())
    assert weight_bytes > 0.5 * one, "the size check needs weights to dominate the file"
    assert two < SHARED_WEIGHTS_MAX_RATIO * one, f"2-signature file {two} B vs 1-signature file {one} B"


@pytest.mark.parametrize("fast_path", [True, False], ids=["wrapper-calls", "signature-runner"])
def test_feature_parity_streamed_vs_whole(feature_model: tuple[FeatureLstm, Path], fast_path: bool) -> None:
    module, model_dir = feature_model
    backend = _open(model_dir, fast_path)
    assert backend.lengths == (10, 1)
    # The installed ai-edge-litert is within the measured range, so the fast path is really the one tested.
    assert backend.fast_path is fast_path
    x = np.random.default_rng(0).standard_normal((1, sum(MIXED_CHUNKS), FEATURES)).astype(np.float32)
    want_y, want_states = _torch_whole(module, x, HIDDEN)
    for chunks in (MIXED_CHUNKS, [10] * 3 + [1] * 6, [1] * sum(MIXED_CHUNKS), [23, 13]):
        got_y, got_states = _stream_backend(backend, x, chunks, HIDDEN)
        assert np.abs(got_y - want_y).max() <= STREAM_VS_WHOLE_ATOL
        for got, want in zip(got_states, want_states):
            assert got.dtype == np.float32 and got.shape == want.shape
            assert np.abs(got - want).max() <= STREAM_VS_WHOLE_ATOL


def test_token_ids_parity(token_model: tuple[TokenLstm, Path]) -> None:
    module, model_dir = token_model
    runner = Interpreter(model_path=str(model_dir / "model.tflite")).get_signature_runner("chunk_10")
    ids_dtype = np.dtype(runner.get_input_details()["ids"]["dtype"])
    assert ids_dtype == np.int32, f"litert-torch now writes ids as {ids_dtype}; update the writer's docstring"
    backend = _open(model_dir)
    ids = np.random.default_rng(1).integers(0, VOCAB, (1, sum(MIXED_CHUNKS)), dtype=np.int64)
    want_y, want_states = _torch_whole(module, ids, TOKEN_HIDDEN)
    got_y, got_states = _stream_backend(backend, ids, MIXED_CHUNKS, TOKEN_HIDDEN)
    assert np.abs(got_y - want_y).max() <= STREAM_VS_WHOLE_ATOL
    for got, want in zip(got_states, want_states):
        assert np.abs(got - want).max() <= STREAM_VS_WHOLE_ATOL


def test_streaming_model_composes_any_length(feature_model: tuple[FeatureLstm, Path]) -> None:
    module, model_dir = feature_model
    model = Model.load(model_dir, backend="litert")
    assert model.backend == "litert" and model.engine.startswith("ai-edge-litert ")
    x = np.random.default_rng(2).standard_normal((1, 37, FEATURES)).astype(np.float32)
    want_y, _ = _torch_whole(module, x, HIDDEN)
    stream = model.create_stream()
    got = np.concatenate([stream.push(x[0, a:b]) for a, b in ((0, 23), (23, 24), (24, 37))], axis=0)
    assert np.abs(got - want_y[0]).max() <= STREAM_VS_WHOLE_ATOL


def test_streams_on_threads_match_sequential(feature_model: tuple[FeatureLstm, Path]) -> None:
    _, model_dir = feature_model
    model = Model.load(model_dir, backend="litert")
    rng = np.random.default_rng(3)
    inputs = [rng.standard_normal((31, FEATURES)).astype(np.float32) for _ in range(4)]

    def run_stream(x: np.ndarray) -> np.ndarray:
        stream = model.create_stream()
        return np.concatenate([stream.push(x[i:i + 1]) for i in range(10)] + [stream.push(x[10:])], axis=0)

    want = [run_stream(x) for x in inputs]
    got: list[np.ndarray | None] = [None] * len(inputs)

    def worker(i: int) -> None:
        for _ in range(20):
            got[i] = run_stream(inputs[i])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for g, w in zip(got, want):
        assert g is not None and np.array_equal(g, w)


def test_step_model_has_one_step_signature(tmp_path: Path) -> None:
    torch.manual_seed(4)
    module = StepLstm().eval()
    _write_model_dir(tmp_path, module, torch.randn(1, FEATURES), HIDDEN,
                     TensorSpec("x", "float32", (1, FEATURES)), TensorSpec("y", "float32", (1, CLASSES)),
                     None, kind="step")
    assert Manifest.load(tmp_path).files[0].signatures == {"step": "step"}
    model = Model.load(tmp_path, backend="litert")
    x = np.random.default_rng(4).standard_normal((12, FEATURES)).astype(np.float32)
    want_y, _ = _torch_whole(FeatureLstm.forward.__get__(module), x[np.newaxis], HIDDEN)
    stream = model.create_stream()
    got = np.stack([stream.push(frame) for frame in x])
    assert np.abs(got - want_y[0]).max() <= STREAM_VS_WHOLE_ATOL


def test_bad_file_raises_model_file_error(feature_model: tuple[FeatureLstm, Path], tmp_path: Path) -> None:
    _, model_dir = feature_model
    manifest = Manifest.load(model_dir)
    bad = tmp_path / "model.tflite"
    bad.write_bytes(b"not a flatbuffer" * 64)
    entry = file_entry(tmp_path, "model.tflite", "tflite", "float", chunk_sizes=LENGTHS,
                       signatures={"10": "chunk_10", "1": "chunk_1"})
    manifest.with_file(entry).save(tmp_path)
    with pytest.raises(ModelFileError, match=str(bad)):
        litert.open(tmp_path, manifest, entry, 1)
    with pytest.raises(ModelFileError, match="model.tflite"):
        Model.load(tmp_path, backend="litert")


def test_manifest_names_not_in_file_raise_model_file_error(feature_model: tuple[FeatureLstm, Path]) -> None:
    _, model_dir = feature_model
    manifest = Manifest.load(model_dir)
    renamed = StateSpec("lstm_h", "h_in", "h_out", "float32", (LAYERS, 1, HIDDEN))
    wrong = Manifest(kind="sequence", inputs=manifest.inputs, outputs=manifest.outputs,
                     states=(renamed, manifest.states[1]), files=manifest.files)
    with pytest.raises(ModelFileError, match="h_in"):
        litert.open(model_dir, wrong, manifest.files[0], 1)
    missing_signature = file_entry(model_dir, "model.tflite", "tflite", "float", chunk_sizes=(5, 1),
                                   signatures={"5": "chunk_5", "1": "chunk_1"})
    with pytest.raises(ModelFileError, match="chunk_5"):
        litert.open(model_dir, manifest, missing_signature, 1)


def test_wrong_state_count_raises_input_error(feature_model: tuple[FeatureLstm, Path]) -> None:
    _, model_dir = feature_model
    backend = _open(model_dir)
    states = [np.zeros((LAYERS, 1, HIDDEN), np.float32)]
    with pytest.raises(InputError, match="states: expected 2 arrays"):
        backend.run(np.zeros((1, 3, FEATURES), np.float32), states)


def test_writer_rejects_bad_arguments(tmp_path: Path) -> None:
    module = FeatureLstm().eval()
    example = torch.randn(1, 10, FEATURES)
    with pytest.raises(ExportError, match="Python identifiers"):
        _write(module, example, _zeros_state(HIDDEN), "x", "y", ["h-in", "c_in"], ["h_out", "c_out"],
                     LENGTHS, tmp_path / "m.tflite")
    with pytest.raises(ExportError, match="distinct positive ints"):
        _write(module, example, _zeros_state(HIDDEN), "x", "y", *STATE_NAMES, (10, 0), tmp_path / "m.tflite")
    with pytest.raises(ExportError, match="2 input and 2 output names"):
        _write(module, example, _zeros_state(HIDDEN), "x", "y", ["h_in"], ["h_out"], LENGTHS,
                     tmp_path / "m.tflite")


INT8_STATIC_MAX_ABS_DIFF = 0.05  # static int8 activations vs float; outputs here are within about +-0.2
INT8_STATIC_ARGMAX_AGREEMENT = 0.9


def test_int8_static_file_is_fed_and_read_in_float(feature_model: tuple[FeatureLstm, Path], tmp_path: Path) -> None:
    from ai_edge_quantizer import quantizer, recipe

    _, model_dir = feature_model
    rng = np.random.default_rng(6)

    def calibration(length: int) -> list[dict[str, np.ndarray]]:
        return [{"x": rng.standard_normal((1, length, FEATURES)).astype(np.float32),
                 "lstm_h_in": (0.3 * rng.standard_normal((LAYERS, 1, HIDDEN))).astype(np.float32),
                 "lstm_c_in": (0.5 * rng.standard_normal((LAYERS, 1, HIDDEN))).astype(np.float32)}
                for _ in range(20)]

    tool = quantizer.Quantizer(str(model_dir / "model.tflite"), recipe.static_wi8_ai8())
    result = tool.quantize(tool.calibrate({"chunk_10": calibration(10), "chunk_1": calibration(1)}, num_threads=1))
    result.export_model(str(tmp_path / "model_int8.tflite"), overwrite=True)
    manifest = Manifest.load(model_dir)
    float_entry = manifest.file("tflite", "float")
    int8_entry = file_entry(tmp_path, "model_int8.tflite", "tflite", "int8", chunk_sizes=LENGTHS,
                            signatures=float_entry.signatures, quantization={"mode": "static"},
                            checks=float_entry.checks)
    details = Interpreter(model_path=str(tmp_path / "model_int8.tflite")).get_signature_runner("chunk_1")
    assert np.dtype(details.get_input_details()["x"]["dtype"]) == np.int8
    assert np.dtype(details.get_output_details()["y"]["dtype"]) == np.int8

    quantized = litert.open(tmp_path, manifest, int8_entry, 1)
    x = rng.standard_normal((1, sum(MIXED_CHUNKS), FEATURES)).astype(np.float32)
    want_y, _ = _stream_backend(_open(model_dir), x, MIXED_CHUNKS, HIDDEN)
    got_y, got_states = _stream_backend(quantized, x, MIXED_CHUNKS, HIDDEN)
    assert got_y.dtype == np.float32 and all(s.dtype == np.float32 for s in got_states)
    assert np.abs(got_y - want_y).max() <= INT8_STATIC_MAX_ABS_DIFF
    assert (got_y.argmax(-1) == want_y.argmax(-1)).mean() >= INT8_STATIC_ARGMAX_AGREEMENT
