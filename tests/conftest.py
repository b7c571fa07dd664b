"""Shared fixtures: every zoo model exported once per test session, in every format."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

# Downloaded wheels and the aarch64 rootfs go to a folder the suite owns: LSTM_EDGE_TEST_CACHE when CI keeps one
# between runs, else a temporary folder removed at exit. Nothing is written to ~/.cache.
if os.environ.get("LSTM_EDGE_TEST_CACHE"):
    _CACHE = Path(os.environ["LSTM_EDGE_TEST_CACHE"])
else:
    _CACHE = Path(tempfile.mkdtemp(prefix="lstm-edge-test-cache-"))
    atexit.register(shutil.rmtree, _CACHE, True)
os.environ["LSTM_EDGE_WHEEL_CACHE"] = str(_CACHE / "wheels")
os.environ["LSTM_EDGE_ARM_CACHE"] = str(_CACHE / "arm")
os.environ["LSTM_EDGE_CACHE"] = str(_CACHE / "native")  # the native backend's compiled library

import zoo  # noqa: E402

FORMATS = ("onnx", "tflite")
from lstm_edge.runtime.backends import REGISTRY  # noqa: E402

# The backends of the formats every zoo model is exported to; the native backend (C weight files) runs the zoo
# models its C layers cover, NATIVE_MODELS, which the fixture also converts (tests/test_native.py covers the rest).
BACKENDS = tuple(name for name, record in REGISTRY.items() if record.format in FORMATS)
NATIVE_MODELS = ("feature_lstm", "gru", "learned_h0", "tokens_time_major", "projected", "causal_crnn", "dilated_tcn",
                 "depthwise_separable")
ALL_BACKENDS = (*BACKENDS, "native")


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """name -> (model, model_dir); exports lazily so a test asks only for what it uses."""
    from lstm_edge.export import export

    cache: dict[str, tuple] = {}

    def get(name: str):
        if name not in cache:
            model, example = zoo.build(name)
            out = tmp_path_factory.mktemp(name)
            export(model, example, out, formats=FORMATS + (("c",) if name in NATIVE_MODELS else ()),
                   chunk_sizes=(10, 1))
            cache[name] = (model, out)
        return cache[name]

    return get


@pytest.fixture(scope="session")
def small_kws_dir(tmp_path_factory):
    """A small keyword-spotting-shaped model (SmallKws, seeded) exported to ONNX, shared by device and bundle tests.
    Tests that change files copy it first."""
    import torch

    from lstm_edge.export import export

    torch.manual_seed(0)
    return export(zoo.SmallKws().eval(), torch.randn(1, 10, 40), tmp_path_factory.mktemp("small-kws"),
                  formats=("onnx",), name="kws")
