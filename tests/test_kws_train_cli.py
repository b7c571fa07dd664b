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
    assert result.returncode == 0, result.stderr  # int8 off its gate on a barely trained model ships float
    for step in ("test voices: mbrola:us1", "synthesising", "training", "threshold", "exporting", "parity gates",
                 "test voices, onnx/float", "phrase", "apart", "done"):
        assert step in result.stdout, (step, result.stdout)
    manifest = Manifest.load(out)
    assert list(manifest.labels or []) == ["_silence_", "_unknown_", "hey pi", "lights on"]
    summary = json.loads((out / "training" / "summary.json").read_text())
    validation = json.loads((out / "training" / "detection_validation.json").read_text())
    assert (manifest.detector or {})["threshold"] == summary["threshold"] == validation["chosen"]["threshold"]
    # int8 ships only when it passed its gates; otherwise the run says so and the directory holds float files only
    assert sorted({f.precision for f in manifest.files}) == sorted(summary["precisions"])
    assert summary["precisions"] == ["float", "int8"] or (summary["notes"] and "float files only" in result.stdout)
    assert not (out / "data").exists()  # removed unless --keep-data
    listened = subprocess.run([sys.executable, "-m", "lstm_edge.cli", "listen", str(out),
                               str(out / "training" / "demo.wav"), "--json"],
                              capture_output=True, text=True, timeout=300)
    assert listened.returncode == 0, listened.stderr
    for line in listened.stdout.splitlines():
        assert json.loads(line)["label"] in ("hey pi", "lights on")
