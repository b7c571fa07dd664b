"""The State type, state validation, result checks, one stream per thread, and the backend registry."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from lstm_edge.cli import build_parser
from lstm_edge.runtime import (
    ConcurrentUseError,
    InputError,
    NonFiniteResultError,
    State,
    StreamingModel,
    backends,
)
from lstm_edge.runtime.backends.onnx import OnnxBackend
from lstm_edge.runtime.manifest import FORMATS, Manifest
from lstm_edge.runtime.values import GraphCheck, require_finite_result

import zoo
from conftest import ALL_BACKENDS


@pytest.fixture(params=ALL_BACKENDS)
def feature_model(exported, request):
    return StreamingModel.load(exported("feature_lstm")[1], backend=request.param)


def _x(frames: int) -> np.ndarray:
    return zoo.random_input("feature_lstm", frames)[0].numpy()


def test_state_is_a_mapping_by_manifest_name(feature_model):
    state = feature_model.initial_state()
    assert isinstance(state, State)
    assert tuple(state) == feature_model.state_names == tuple(s.name for s in feature_model.manifest.states)
    y, new_state = feature_model.step(_x(10), state)
    assert y.shape[0] == 10 and tuple(new_state) == tuple(state)
    assert not np.array_equal(new_state[state.names[0]], state[state.names[0]])  # the state moved
    # A plain dict of the same arrays gives the same result as the State the model made.
    y_dict, _ = feature_model.step(_x(10), {name: value for name, value in state.items()})
    np.testing.assert_array_equal(y, y_dict)


def test_step_chain_equals_stream(feature_model):
    x = _x(25)
    stream = feature_model.create_stream()
    expected = np.concatenate([stream.push(x[:7]), stream.push(x[7:])])
    state = feature_model.initial_state()
    y1, state = feature_model.step(x[:7], state)
    y2, state = feature_model.step(x[7:], state)
    np.testing.assert_array_equal(np.concatenate([y1, y2]), expected)
    for name in state:
        np.testing.assert_array_equal(state[name], stream.state[name])


@pytest.mark.parametrize("value, message", [
    (np.nan, "NaN/inf"),
    (np.inf, "NaN/inf"),
    ("text", "str"),
    (None, "NoneType"),
    (1e300, "float32 range"),
])
def test_bad_state_values_are_refused(feature_model, value, message):
    stream = feature_model.create_stream()
    stream.push(_x(5))
    before = stream.state
    name = feature_model.state_names[0]
    bad = dict(before)
    if isinstance(value, float):
        array = before[name].astype(np.float64)
        array.flat[0] = value
        bad[name] = array
    else:
        bad[name] = value
    with pytest.raises(InputError, match=message) as info:
        stream.state = bad
    assert "expected" in str(info.value) and "got" in str(info.value)
    with pytest.raises(InputError, match=message):
        feature_model.step(_x(3), bad)
    for key in before:
        np.testing.assert_array_equal(stream.state[key], before[key])


def test_state_names_and_shapes_are_checked(feature_model):
    state = dict(feature_model.initial_state())
    name = feature_model.state_names[0]
    with pytest.raises(InputError, match="state names"):
        feature_model.step(_x(3), {**state, "extra": state[name]})
    with pytest.raises(InputError, match="state names"):
        feature_model.step(_x(3), {k: v for k, v in state.items() if k != name})
    with pytest.raises(InputError, match=rf"state {name!r}"):
        feature_model.step(_x(3), {**state, name: state[name][..., :-1]})
    with pytest.raises(InputError, match="mapping"):
        feature_model.step(_x(3), tuple(state.values()))


def test_integer_and_float64_state_that_fits_is_accepted(feature_model):
    state = {name: value.astype(np.float64) for name, value in feature_model.initial_state().items()}
    state[feature_model.state_names[0]] = np.zeros_like(state[feature_model.state_names[0]], dtype=np.int64)
    y, _ = feature_model.step(_x(4), state)
    y_ref, _ = feature_model.step(_x(4), feature_model.initial_state())
    np.testing.assert_array_equal(y, y_ref)


def test_overflowing_input_never_poisons_the_state(feature_model):
    """Finite but huge inputs may overflow inside a graph; then the call is refused and the state kept."""
    stream = feature_model.create_stream()
    stream.push(_x(5))
    before = stream.state
    huge = np.full((3, _x(1).shape[1]), 1e30, np.float32)
    try:
        y = stream.push(huge)
    except NonFiniteResultError as err:
        assert "state kept" in str(err)
        assert stream.frames == 5
        for name in before:
            np.testing.assert_array_equal(stream.state[name], before[name])
    else:
        assert np.isfinite(y).all()
    assert all(np.isfinite(value).all() for value in stream.state.values())
    stream.push(_x(5))  # still usable


def test_result_checks_refuse_nonfinite_output_and_state():
    y, h = np.zeros((1, 2, 3), np.float32), np.zeros((2, 1, 4), np.float32)
    require_finite_result(y, [h], ["h"])
    bad_h = h.copy()
    bad_h[0, 0, 1] = np.inf
    with pytest.raises(NonFiniteResultError, match="'h' holds 1 NaN/inf"):
        require_finite_result(y, [bad_h], ["h"])
    check = GraphCheck.from_checks({"nonfinite_any": "nonfinite"})
    assert check is not None and check.covers_result
    x = np.ones((1, 2, 3), np.float32)
    check.verify(np.float32(np.inf), x, y, [h], ["h"])  # an overflowing sum of finite values passes the scan
    with pytest.raises(NonFiniteResultError):
        check.verify(np.float32(np.nan), x, y, [bad_h], ["h"])
    bad_x = x.copy()
    bad_x[0, 1, 2] = np.nan
    with pytest.raises(InputError, match="1 NaN/inf"):
        check.verify(np.float32(np.nan), bad_x, y, [h], ["h"])


def test_exported_onnx_checks_input_and_result_in_the_graph(exported):
    model_dir = exported("feature_lstm")[1]
    entry = Manifest.load(model_dir).file("onnx", "float")
    assert entry.checks == {"nonfinite_any": "nonfinite"}
    manifest = Manifest.load(model_dir)
    backend = OnnxBackend(model_dir / entry.path, manifest, 1, entry.checks)
    assert backend.checks_input_finite and backend.checks_result_finite


def test_one_stream_refuses_a_second_thread(feature_model):
    stream = feature_model.create_stream()
    started, release = threading.Event(), threading.Event()
    chunk = _x(6)

    class SlowChunk:
        """Array-like whose conversion blocks, so the first push is provably still running."""

        def __array__(self, dtype=None, copy=None):
            started.set()
            release.wait(10)
            return chunk

    results = []
    worker = threading.Thread(target=lambda: results.append(stream.push(SlowChunk())))
    worker.start()
    assert started.wait(10)
    with pytest.raises(ConcurrentUseError, match="one thread at a time"):
        stream.push(chunk)
    release.set()
    worker.join(10)
    assert len(results) == 1 and stream.frames == 6
    np.testing.assert_array_equal(results[0], feature_model.create_stream().push(chunk))


def test_onnx_fast_path_and_public_run_agree(exported):
    model_dir = exported("feature_lstm")[1]
    manifest = Manifest.load(model_dir)
    entry = manifest.file("onnx", "float")
    fast = OnnxBackend(model_dir / entry.path, manifest, 1, entry.checks, fast_path=True)
    public = OnnxBackend(model_dir / entry.path, manifest, 1, entry.checks, fast_path=False)
    assert fast.fast_path and not public.fast_path  # the installed onnxruntime is within the measured range
    x = _x(13)[None]
    states = list(manifest.initial_values())
    (y_fast, states_fast), (y_public, states_public) = fast.run(x, states), public.run(x, states)
    for a, b in zip([y_fast, *states_fast], [y_public, *states_public]):
        np.testing.assert_array_equal(a, b)
    bad = x.copy()
    bad[0, 3, 0] = np.nan
    for backend in (fast, public):
        with pytest.raises(InputError, match="1 NaN/inf"):
            backend.run(bad, states)


def test_registry_is_the_one_list_of_backends():
    assert set(backends.NAMES) == set(backends.REGISTRY) and set(backends.PREFERENCE) == set(backends.NAMES)
    assert sorted(r.format for r in backends.REGISTRY.values()) == sorted(FORMATS)
    for name, record in backends.REGISTRY.items():
        assert record.name == name and backends.for_format(record.format) is record
        if record.needs:  # no PyPI engine (native: a C compiler builds lstm-edge's own library)
            assert record.install_hint == record.needs and not record.pip_package
        else:
            assert record.pip_package in record.install_hint and f"lstm-edge[{record.extra}]" in record.install_hint
    parser = build_parser()
    subcommands = parser._subparsers._group_actions[0].choices
    for command in ("run", "listen", "bundle", "bench"):
        option = next(a for a in subcommands[command]._actions if "--backend" in a.option_strings)
        assert tuple(option.choices) == backends.NAMES
    with pytest.raises(InputError, match="expected one of"):
        backends.info("tensorrt")


def test_large_logits_export_and_verify_under_one_rule(tmp_path):
    """A model with outputs in the thousands passes export's self-check and then verify: one tolerance rule."""
    import torch

    from lstm_edge.export import export
    from lstm_edge.quantize.parity import parity_report
    from lstm_edge.runtime.manifest import float_limit

    torch.manual_seed(0)
    model = zoo.FeatureLSTM().eval()
    with torch.no_grad():
        model.out.weight.mul_(3000.0)
    out = export(model, torch.randn(1, 10, 20), tmp_path / "big", formats=("onnx",))
    manifest = Manifest.load(out)
    assert manifest.tolerances["float_rule"] == "scaled"
    report = parity_report(out)
    assert report["reference_peak"] > 100
    row = report["results"][0]
    assert row["max_abs_diff"] > manifest.tolerances["float_max_abs_diff"]  # an absolute 1e-4 would fail here
    assert row["max_abs_diff"] <= float_limit(manifest.tolerances, report["reference_peak"])
    assert report["failures"] == []
    assert float_limit({"float_max_abs_diff": 1e-4, "float_rule": "absolute"}, 5000.0) == 1e-4
