"""Shared fixtures: every zoo model exported once per test session, in every format."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import zoo  # noqa: E402

FORMATS = ("onnx", "tflite")
from lstm_edge.runtime.backends import NAMES as BACKENDS  # noqa: E402


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """name -> (model, model_dir); exports lazily so a test asks only for what it uses."""
    from lstm_edge.export import export

    cache: dict[str, tuple] = {}

    def get(name: str):
        if name not in cache:
            model, example = zoo.build(name)
            out = tmp_path_factory.mktemp(name)
            export(model, example, out, formats=FORMATS, chunk_sizes=(10, 1))
            cache[name] = (model, out)
        return cache[name]

    return get
