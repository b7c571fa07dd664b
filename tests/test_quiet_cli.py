"""Third-party log lines and progress bars stay off a CLI user's stderr unless ``--verbose``."""

from __future__ import annotations

import shutil
import subprocess
import sys

from lstm_edge.recipes.kws.model import shipped_model_dir

ASSETS = shipped_model_dir()


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lstm_edge", *args], capture_output=True, text=True, timeout=900)


def foreign_lines(stderr: str, own_prefixes: tuple[str, ...]) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith(own_prefixes)]


def test_listen_on_litert_prints_only_its_own_lines():
    args = ("listen", str(ASSETS / "export"), str(ASSETS / "demo.wav"), "--backend", "litert")
    quiet = cli(*args)
    assert quiet.returncode == 0, quiet.stderr
    assert [line for line in quiet.stderr.splitlines() if "detection(s); " not in line] == [], quiet.stderr
    assert "detection(s); kws-lstm on litert" in quiet.stderr and "XNNPACK" not in quiet.stderr
    verbose = cli("--verbose", *args)
    assert "XNNPACK" in verbose.stderr  # the engine's line is really there, and only --verbose shows it


def test_quantize_tflite_prints_no_bars_or_library_logs(exported, tmp_path):
    _, model_dir = exported("feature_lstm")
    copy = shutil.copytree(model_dir, tmp_path / "m")
    result = cli("quantize", str(copy), "--formats", "tflite")
    assert result.returncode in (0, 1), result.stderr
    assert "Traceback" not in result.stderr
    assert foreign_lines(result.stderr, ("lstm-edge", "note:", "warning:")) == [], result.stderr
