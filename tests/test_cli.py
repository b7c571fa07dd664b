"""The lstm-edge command line, run as a user would (subprocesses)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

COMMANDS = ["export", "run", "info", "quantize", "verify", "listen", "demo", "devices", "bundle", "bench"]


def cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lstm_edge", *args], capture_output=True, text=True, timeout=timeout)


def test_help_everywhere():
    top = cli("--help")
    assert top.returncode == 0
    for command in COMMANDS:
        assert command in top.stdout, command
        result = cli(command, "--help")
        assert result.returncode == 0 and "usage: lstm-edge " + command in result.stdout, command


MODEL_FILE = textwrap.dedent('''
    import torch
    from torch import nn

    class Tagger(nn.Module):
        def __init__(self, hidden=32):
            super().__init__()
            self.lstm = nn.LSTM(6, hidden, batch_first=True)
            self.head = nn.Linear(hidden, 3)

        def forward(self, x):
            return self.head(self.lstm(x)[0])

    def make(hidden=32):
        return Tagger(hidden)
''')


def test_export_run_info_from_a_file_factory_with_weights(tmp_path):
    (tmp_path / "tagger.py").write_text(MODEL_FILE)
    sys.path.insert(0, str(tmp_path))
    try:
        import tagger
    finally:
        sys.path.remove(str(tmp_path))
    torch.manual_seed(3)
    model = tagger.make(hidden=16).eval()
    torch.save(model.state_dict(), tmp_path / "w.pt")
    out = tmp_path / "out"
    result = cli("export", f"{tmp_path / 'tagger.py'}:make", "--factory-kwargs", '{"hidden": 16}', "--weights",
                 str(tmp_path / "w.pt"), "--example-shape", "1,10,6", "--labels", "a,b,c", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "lstm_h_in" in result.stdout and "sha256 ok" in result.stdout
    x = np.random.default_rng(0).standard_normal((45, 6)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    result = cli("run", str(out), str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy"), "--chunk", "7",
                 "--backend", "onnx")
    assert result.returncode == 0, result.stderr
    with torch.no_grad():
        expected = model(torch.from_numpy(x)[None])[0].numpy()
    assert np.abs(np.load(tmp_path / "y.npy") - expected).max() <= 1e-5
    info = cli("info", str(out), "--json")
    assert info.returncode == 0 and '"schema": "lstm-edge/manifest"' in info.stdout


def test_errors_are_one_clear_line_and_exit_1(tmp_path):
    result = cli("run", str(tmp_path), str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy"))
    assert result.returncode == 1
    assert "error:" in result.stderr and "manifest.json" in result.stderr and "Traceback" not in result.stderr
    result = cli("export", "no_such_module_xyz:make", "--example-shape", "1,4,4", "-o", str(tmp_path / "o"))
    assert result.returncode == 1 and "cannot import module" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("args, needle", [
    (["--chunk", "0"], "positive"),
])
def test_run_rejects_bad_options(exported, tmp_path, args, needle):
    _, model_dir = exported("feature_lstm")
    np.save(tmp_path / "x.npy", np.zeros((5, 20), np.float32))
    result = cli("run", str(model_dir), str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy"), *args)
    assert result.returncode == 1 and needle in result.stderr


def test_files_may_follow_options(capsys):
    """`listen MODEL --json FILE` reads FILE like `listen MODEL FILE --json`; other stray words stay errors."""
    from pathlib import Path

    from lstm_edge.cli import main

    kws = Path(__file__).resolve().parents[1] / "models" / "kws"
    assert main(["listen", str(kws / "export"), str(kws / "demo.wav"), "--json"]) == 0
    expected = capsys.readouterr().out
    assert expected.count('"label"') >= 3
    assert main(["listen", str(kws / "export"), "--json", str(kws / "demo.wav")]) == 0
    assert capsys.readouterr().out == expected
    with pytest.raises(SystemExit) as exit_info:
        main(["listen", str(kws / "export"), "--json", str(kws / "demo.wav"), "--bogus"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["info", str(kws / "export"), "stray"])
    assert exit_info.value.code == 2
