"""The push extension (runtime/native_push.c): a native Stream's push as one C call.

It must be a pure speed-up: on the shipped keyword spotter, a stream pushed through it and one pushed through
ctypes (``LSTM_EDGE_NATIVE_PUSH=ctypes``) give bitwise the same outputs and state for every kind of chunk (the
C path's float32 arrays, and the Python path's conversions and copies), the same refusals with the state kept,
the same frame counts and reset; arrays returned earlier are never overwritten. (A second thread's push is refused
on every backend: tests/test_state_and_backends.py.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lstm_edge.runtime import InputError, StreamingModel, native_build

ROOT = Path(__file__).resolve().parent.parent
KWS_DIR = ROOT / "models" / "kws" / "export"


@pytest.fixture(scope="module")
def features() -> np.ndarray:
    return np.load(KWS_DIR / "reference" / "input.npy")


def load(precision: str = "int8") -> StreamingModel:
    return StreamingModel.load(KWS_DIR, backend="native", precision=precision)


def ctypes_stream(monkeypatch, model: StreamingModel):
    with monkeypatch.context() as patch:
        patch.setenv("LSTM_EDGE_NATIVE_PUSH", "ctypes")
        stream = model.create_stream()
    assert stream.engine.name == "native C stream (ctypes)"
    assert native_build.push_unavailable == "LSTM_EDGE_NATIVE_PUSH=ctypes"
    return stream


def chunk_kinds(x: np.ndarray) -> list[object]:
    """The same frames passed every way a caller might: C path first, then each conversion the Python push makes."""
    frozen = x[:3].copy()
    frozen.flags.writeable = False
    return [
        x[:1].copy(),                               # float32, one frame (the C path)
        x[1:11],                                    # a view, ten frames (C path, no copy)
        frozen,                                     # read-only (C reads it in place)
        np.repeat(x[3:8], 2, axis=1)[:, ::2],       # not contiguous: copied in Python
        x[8:12].astype(np.float64),                 # float64: converted
        x[12:14].astype(">f4"),                     # big-endian float32: converted
        x[14:16].tolist(),                          # nested lists
        np.asfortranarray(x[16:20]),                # Fortran order
    ]


@pytest.mark.parametrize("precision", ["int8", "float"])
def test_extension_and_ctypes_give_the_same_results_for_every_chunk(monkeypatch, features, precision):
    model = load(precision)
    fast, slow = model.create_stream(), ctypes_stream(monkeypatch, model)
    # Python.h is installed here: the extension is built
    assert fast.engine.name == "native C stream (extension)", native_build.push_unavailable
    for stream in (fast, slow):
        for chunk in chunk_kinds(features):
            stream.push(chunk)
    for a, b in zip(chunk_kinds(features[20:]), chunk_kinds(features[20:])):
        np.testing.assert_array_equal(fast.push(a), slow.push(b))
    for name, value in fast.state.items():
        np.testing.assert_array_equal(value, slow.state[name])
    assert fast.frames == slow.frames == 2 * sum(len(chunk) for chunk in chunk_kinds(features))  # type: ignore
    fast.reset()
    assert fast.frames == 0
    np.testing.assert_array_equal(fast.push(features[:5]), model.step(features[:5], model.initial_state())[0])


def test_refusals_are_the_python_ones_and_keep_the_state(monkeypatch, features):
    model = load()
    fast, slow = model.create_stream(), ctypes_stream(monkeypatch, model)
    nan = features[:4].copy()
    nan[2, 7] = np.nan
    bad_chunks = [nan, features[:0], features[:3, :39].copy(), features[:3, None, :].copy(),
                  features[:3].astype(np.int16), "not an array"]
    for stream in (fast, slow):
        stream.push(features[:9])
    before = fast.state
    for bad in bad_chunks:
        with pytest.raises(InputError) as fast_error:
            fast.push(bad)
        with pytest.raises(InputError) as slow_error:
            slow.push(bad)
        assert str(fast_error.value) == str(slow_error.value)
        for name, value in fast.state.items():
            np.testing.assert_array_equal(value, before[name])
    assert fast.frames == 9
    np.testing.assert_array_equal(fast.push(features[9:12]), slow.push(features[9:12]))


def test_returned_outputs_are_fresh_arrays_never_overwritten(features):
    """More single-frame pushes than one output block holds, and several chunk lengths in turn (more than the
    pusher keeps lists for): every returned array keeps its values and owns no memory another result shares."""
    model = load()
    stream = model.create_stream()
    whole = model.step(features, model.initial_state())[0]
    ys = [stream.push(features[t:t + 1]) for t in range(400)]
    kept = [y.copy() for y in ys]
    lengths = [1 + (i % 11) for i in range(30)]
    start, chunked = 400, []
    for length in lengths:
        chunked.append(stream.push(features[start:start + length]))
        start += length
    assert all(np.array_equal(a, b) for a, b in zip(ys, kept))
    assert np.abs(np.concatenate(ys + chunked) - whole[:start]).max() <= 1e-5
    assert not any(np.shares_memory(a, b) for a, b in zip(ys, ys[1:]))


def test_token_id_models_keep_the_python_push(exported):
    model = StreamingModel.load(exported("tokens_time_major")[1], backend="native")
    stream = model.create_stream()
    assert stream.engine.name == "native C stream (ctypes)"
    ids = np.array([1, 2, 3])
    np.testing.assert_array_equal(stream.push(ids), model.step(ids, model.initial_state())[0])
    assert stream.frames == 3


def test_without_python_headers_the_stream_keeps_the_ctypes_push(monkeypatch, tmp_path):
    """No Python.h (a board without python3-dev): the extension is not built, the reason says what to install."""
    monkeypatch.setattr(native_build.sysconfig, "get_paths", lambda: {"include": str(tmp_path)})
    module, reason = native_build._build_push_extension()
    assert module is None and "Python.h" in reason and "python3-dev" in reason
