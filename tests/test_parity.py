"""Parity: every zoo model streamed in random chunks with state carried equals torch on the whole sequence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lstm_edge.runtime import StreamingModel

import zoo
from conftest import BACKENDS

OUTPUT_TOL = 1e-5  # max abs diff, outputs
STATE_TOL = 1e-5  # max abs diff, final state
FRAMES = 320


def random_chunks(total: int, seed: int, low: int = 1, high: int = 50) -> list[int]:
    rng = np.random.default_rng(seed)
    sizes = []
    while sum(sizes) < total:
        sizes.append(int(min(rng.integers(low, high + 1), total - sum(sizes))))
    return sizes


def stream_in_chunks(stream, x: np.ndarray, sizes: list[int]) -> np.ndarray:
    outputs, start = [], 0
    for size in sizes:
        outputs.append(stream.push(x[start:start + size]))
        start += size
    return np.concatenate(outputs)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(zoo.SEQUENCE_MODELS))
def test_sequence_parity_random_chunks(exported, name, backend):
    model, model_dir = exported(name)
    x = zoo.random_input(name, FRAMES, seed=3)
    expected_y, expected_state = zoo.torch_reference(model, x)
    streaming = StreamingModel.load(model_dir, backend=backend)
    stream = streaming.create_stream()
    got = stream_in_chunks(stream, x[0].numpy(), random_chunks(FRAMES, seed=5))
    assert got.shape == expected_y.shape
    assert np.abs(got - expected_y).max() <= OUTPUT_TOL
    state = stream.state
    assert set(state) == set(expected_state)
    for state_name, value in expected_state.items():
        assert np.abs(state[state_name] - value).max() <= STATE_TOL, state_name


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(zoo.STEP_MODELS))
def test_step_parity(exported, name, backend):
    model, model_dir = exported(name)
    _, example = zoo.build(name)
    generator = torch.Generator().manual_seed(11)
    inputs = [torch.randn(example.shape, generator=generator) for _ in range(64)]
    expected, expected_state = zoo.step_reference(model, inputs)
    stream = StreamingModel.load(model_dir, backend=backend).create_stream()
    for x, want in zip(inputs, expected):
        got = stream.push(x[0].numpy())
        assert np.abs(got - want).max() <= OUTPUT_TOL
    final = list(stream.state.values())
    assert len(final) == len(expected_state)
    for got, want in zip(final, expected_state):
        assert got.shape == want.shape
        assert np.abs(got - want).max() <= STATE_TOL


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["feature_lstm", "tokens_time_major", "projected", "learned_h0"])
def test_any_chunking_gives_the_same_output(exported, name, backend):
    _, model_dir = exported(name)
    x = zoo.random_input(name, 120, seed=8)[0].numpy()
    model = StreamingModel.load(model_dir, backend=backend)
    whole = model.create_stream().push(x)
    for sizes in ([1] * 120, [7] * 17 + [1], random_chunks(120, seed=9, high=30), [119, 1]):
        got = stream_in_chunks(model.create_stream(), x, sizes)
        assert np.abs(got - whole).max() <= 1e-6, sizes


@pytest.mark.parametrize("backend", BACKENDS)
def test_reset_equals_fresh_stream(exported, backend):
    _, model_dir = exported("learned_h0")
    x = zoo.random_input("learned_h0", 40)[0].numpy()
    model = StreamingModel.load(model_dir, backend=backend)
    stream = model.create_stream()
    first = stream.push(x)
    stream.push(x[:13])
    stream.reset()
    assert stream.frames == 0
    np.testing.assert_array_equal(stream.push(x), first)
    np.testing.assert_array_equal(model.create_stream().push(x), first)


@pytest.mark.parametrize("backend", BACKENDS)
def test_state_round_trip_resumes_exactly(exported, backend):
    _, model_dir = exported("feature_lstm")
    x = zoo.random_input("feature_lstm", 60)[0].numpy()
    model = StreamingModel.load(model_dir, backend=backend)
    original = model.create_stream()
    original.push(x[:25])
    saved = original.state
    continued = original.push(x[25:])
    resumed = model.create_stream()
    resumed.state = saved
    np.testing.assert_array_equal(resumed.push(x[25:]), continued)
    # the getter returns copies: mutating them does not touch the stream
    saved["lstm_h"][:] = 123.0
    assert not np.any(original.state["lstm_h"] == 123.0)


@pytest.mark.parametrize("name", ["feature_lstm", "tokens_time_major", "cell_step"])
def test_onnx_and_litert_agree_on_one_directory(exported, name):
    _, model_dir = exported(name)
    onnx_model = StreamingModel.load(model_dir, backend="onnx")
    litert_model = StreamingModel.load(model_dir, backend="litert")
    assert (onnx_model.engine.startswith("onnxruntime"), litert_model.backend) == (True, "litert")
    if onnx_model.manifest.kind == "step":
        _, example = zoo.build(name)
        inputs = [np.random.default_rng(i).standard_normal(example.shape[1:]).astype(np.float32) for i in range(20)]
        a = np.stack([s.push(x) for s in [onnx_model.create_stream()] for x in inputs])
        b = np.stack([s.push(x) for s in [litert_model.create_stream()] for x in inputs])
    else:
        x = zoo.random_input(name, 23, seed=4)[0].numpy()  # 23 frames = 2 x chunk_10 + 3 x chunk_1 on LiteRT
        a, b = onnx_model.create_stream().push(x), litert_model.create_stream().push(x)
    assert np.abs(a - b).max() <= 1e-5


def test_default_backend_is_reported(exported):
    _, model_dir = exported("feature_lstm")
    model = StreamingModel.load(model_dir)
    assert model.backend in ("onnx", "litert") and model.engine
    assert model.backend in model.describe() and model.engine in model.describe()
