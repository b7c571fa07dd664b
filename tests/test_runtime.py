"""Runtime contract: bad input is refused clearly and loses nothing; streams on one model are independent."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from lstm_edge.runtime import (
    BackendUnavailableError,
    InputError,
    ManifestError,
    ModelFileError,
    StreamingModel,
)

import zoo
from conftest import ALL_BACKENDS, BACKENDS


@pytest.fixture(params=ALL_BACKENDS)
def feature_model(exported, request):
    return StreamingModel.load(exported("feature_lstm")[1], backend=request.param)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((5,), np.float32), "rank"),
    (np.zeros((5, 20, 1), np.float32), "rank"),
    (np.zeros((5, 21), np.float32), "axis 1"),
    (np.zeros((0, 20), np.float32), "empty"),
    (np.zeros((5, 20), np.int32), "dtype"),
    (np.zeros((5, 20), np.complex64), "dtype"),
    (np.full((5, 20), np.nan, np.float32), "NaN"),
    (np.where(np.eye(5, 20) > 0, np.inf, 0).astype(np.float32), "NaN/inf"),
])
def test_bad_chunks_are_refused_and_the_stream_stays_usable(feature_model, bad, message):
    x = zoo.random_input("feature_lstm", 30)[0].numpy()
    reference = feature_model.create_stream()
    expected = np.concatenate([reference.push(x[:10]), reference.push(x[10:])])
    stream = feature_model.create_stream()
    first = stream.push(x[:10])
    with pytest.raises(InputError, match=message) as info:
        stream.push(bad)
    assert "expected" in str(info.value) and "got" in str(info.value)
    assert stream.frames == 10
    np.testing.assert_array_equal(np.concatenate([first, stream.push(x[10:])]), expected)


def test_float64_features_are_accepted(feature_model):
    x = zoo.random_input("feature_lstm", 12)[0].numpy()
    np.testing.assert_allclose(feature_model.create_stream().push(x.astype(np.float64)),
                               feature_model.create_stream().push(x), atol=1e-6)


def test_token_ids_are_checked(exported):
    model = StreamingModel.load(exported("tokens_time_major")[1], backend="onnx")
    stream = model.create_stream()
    stream.push(np.array([1, 2, 3], dtype=np.int32))
    with pytest.raises(InputError, match=r"\[0, 50\)"):
        stream.push(np.array([4, 50]))
    with pytest.raises(InputError, match="integer token ids"):
        stream.push(np.array([0.5, 1.0]))
    assert stream.frames == 3


def test_state_setter_validates(feature_model):
    stream = feature_model.create_stream()
    with pytest.raises(InputError, match="names"):
        stream.state = {"lstm_h": np.zeros((2, 1, 48), np.float32)}
    with pytest.raises(InputError, match=r"float32\[2, 1, 48\]"):
        stream.state = {"lstm_h": np.zeros((1, 1, 48)), "lstm_c": np.zeros((2, 1, 48))}


def test_step_model_input_shape_is_checked(exported):
    stream = StreamingModel.load(exported("cell_step")[1], backend="onnx").create_stream()
    with pytest.raises(InputError, match="axis 0"):
        stream.push(np.zeros(8, np.float32))
    assert stream.push(np.zeros(9, np.float32)).shape == (4,)


def _copy(model_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(model_dir, target)
    return target


def test_checksum_mismatch_is_refused(exported, tmp_path):
    model_dir = _copy(exported("feature_lstm")[1], tmp_path)
    data = bytearray((model_dir / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (model_dir / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="checksum mismatch"):
        StreamingModel.load(model_dir, backend="onnx")


def test_corrupt_file_with_matching_checksum_is_refused(exported, tmp_path):
    from lstm_edge.runtime.manifest import Manifest, file_entry

    model_dir = _copy(exported("feature_lstm")[1], tmp_path)
    (model_dir / "model.onnx").write_bytes(b"not an onnx graph")
    manifest = Manifest.load(model_dir)
    manifest.with_file(file_entry(model_dir, "model.onnx", "onnx", "float")).save(model_dir)
    with pytest.raises(ModelFileError, match="cannot load"):
        StreamingModel.load(model_dir, backend="onnx")


def test_missing_file_and_manifest_problems(exported, tmp_path):
    model_dir = _copy(exported("feature_lstm")[1], tmp_path)
    (model_dir / "model.onnx").unlink()
    with pytest.raises(ModelFileError, match="missing"):
        StreamingModel.load(model_dir, backend="onnx")
    with pytest.raises(ModelFileError, match="int8"):
        StreamingModel.load(_copy(exported("gru")[1], tmp_path / "g"), backend="onnx", precision="int8")
    with pytest.raises(ManifestError, match="no manifest.json"):
        StreamingModel.load(tmp_path, backend="onnx")
    manifest_path = model_dir / "manifest.json"
    data = json.loads(manifest_path.read_text())
    data["schema_version"] = 99
    manifest_path.write_text(json.dumps(data))
    with pytest.raises(ManifestError, match="expected <= 2.*got 99"):
        StreamingModel.load(model_dir, backend="onnx")
    manifest_path.write_text("{ not json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        StreamingModel.load(model_dir, backend="onnx")


def test_unknown_backend_and_precision(exported):
    model_dir = exported("feature_lstm")[1]
    with pytest.raises(InputError, match="backend"):
        StreamingModel.load(model_dir, backend="tensorrt")
    with pytest.raises(InputError, match="precision"):
        StreamingModel.load(model_dir, backend="onnx", precision="fp16")


@pytest.mark.parametrize("backend", BACKENDS)
def test_interleaved_streams_equal_separate_runs(exported, backend):
    model = StreamingModel.load(exported("stacked_residual")[1], backend=backend)
    a = zoo.random_input("stacked_residual", 90, seed=1)[0].numpy()
    b = zoo.random_input("stacked_residual", 90, seed=2)[0].numpy()
    alone_a, alone_b = model.create_stream().push(a), model.create_stream().push(b)
    stream_a, stream_b = model.create_stream(), model.create_stream()
    got_a, got_b = [], []
    for start in range(0, 90, 9):
        got_a.append(stream_a.push(a[start:start + 9]))
        got_b.append(stream_b.push(b[start:start + 9]))
    np.testing.assert_allclose(np.concatenate(got_a), alone_a, atol=1e-6, rtol=0)
    np.testing.assert_allclose(np.concatenate(got_b), alone_b, atol=1e-6, rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_eight_threads_give_the_sequential_results(exported, backend):
    model = StreamingModel.load(exported("feature_lstm")[1], backend=backend)
    inputs = [zoo.random_input("feature_lstm", 80, seed=s)[0].numpy() for s in range(8)]

    def run(x):
        stream = model.create_stream()
        return np.concatenate([stream.push(x[i:i + 5]) for i in range(0, len(x), 5)])

    sequential = [run(x) for x in inputs]
    results: list = [None] * 8
    errors = []

    def worker(index):
        try:
            for _ in range(3):
                results[index] = run(inputs[index])
        except Exception as err:  # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for got, want in zip(results, sequential):
        np.testing.assert_array_equal(got, want)


BLOCKER = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {blocked!r}:
            raise ImportError('blocked for this test: ' + name)
        return None
sys.meta_path.insert(0, Block())
"""


def test_runtime_works_where_torch_and_onnx_cannot_be_imported(exported, tmp_path):
    _, model_dir = exported("feature_lstm")
    x = zoo.random_input("feature_lstm", 33)[0].numpy()
    np.save(tmp_path / "x.npy", x)
    expected = StreamingModel.load(model_dir, backend="onnx").create_stream().push(x)
    code = BLOCKER.format(blocked={"torch", "onnx"}) + f"""
import numpy as np
try:
    import torch
    raise SystemExit('torch import was not blocked')
except ImportError:
    pass
from lstm_edge.runtime import StreamingModel
model = StreamingModel.load({str(model_dir)!r}, backend="onnx")
stream = model.create_stream()
x = np.load({str(tmp_path / 'x.npy')!r})
y = np.concatenate([stream.push(x[:10]), stream.push(x[10:])])
np.save({str(tmp_path / 'y.npy')!r}, y)
assert not any(m == 'torch' or m.startswith('torch.') or m == 'onnx' or m.startswith('onnx.') for m in sys.modules)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, atol=1e-6)


def test_missing_engine_names_the_install_command(exported):
    _, model_dir = exported("feature_lstm")
    code = BLOCKER.format(blocked={"onnxruntime"}) + f"""
from lstm_edge.runtime import StreamingModel, BackendUnavailableError
try:
    StreamingModel.load({str(model_dir)!r}, backend="onnx")
except BackendUnavailableError as err:
    print(err)
else:
    raise SystemExit("no error")
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "pip install" in result.stdout and "onnxruntime" in result.stdout
    assert BackendUnavailableError.__mro__[1].__name__ == "LstmEdgeError"
