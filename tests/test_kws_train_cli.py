"""``lstm-edge kws-train``: a tiny end-to-end run for two custom phrases leaves a model directory ``listen`` uses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lstm_edge.runtime.manifest import Manifest


@pytest.mark.slow
def test_kws_train_two_phrases_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "my-kws"
    result = subprocess.run(
        [sys.executable, "-m", "lstm_edge.cli", "kws-train", "--keywords", "hey pi", "Lights  on", "-o", str(out),
         "--train-per-class", "6", "--eval-per-class", "2", "--stream-minutes", "0.2", "--stream-keywords", "1",
         "--minutes", "0.2", "--max-epochs", "1"],
        capture_output=True, text=True, timeout=900)
    assert result.returncode in (0, 1), result.stderr  # 1: a parity gate failed on the barely trained model
    for step in ("synthesising", "training", "threshold", "exporting", "parity gates", "test voices, onnx/int8",
                 "done"):
        assert step in result.stdout, (step, result.stdout)
    manifest = Manifest.load(out)
    assert list(manifest.labels or []) == ["_silence_", "_unknown_", "hey pi", "lights on"]
    summary = json.loads((out / "training" / "summary.json").read_text())
    validation = json.loads((out / "training" / "detection_validation.json").read_text())
    assert (manifest.detector or {})["threshold"] == summary["threshold"] == validation["chosen"]["threshold"]
    assert not (out / "data").exists()  # removed unless --keep-data
    listened = subprocess.run([sys.executable, "-m", "lstm_edge.cli", "listen", str(out),
                               str(out / "training" / "demo.wav"), "--json"],
                              capture_output=True, text=True, timeout=300)
    assert listened.returncode == 0, listened.stderr
    for line in listened.stdout.splitlines():
        assert json.loads(line)["label"] in ("hey pi", "lights on")
