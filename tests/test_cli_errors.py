"""Bad input to export, run, info and quantize: one clear line on stderr, exit 1, no traceback, no output file."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from test_cli import MODEL_FILE


def cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lstm_edge", *args], capture_output=True, text=True, timeout=600,
                          cwd=cwd)


def one_clear_error(result: subprocess.CompletedProcess, needle: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and needle in errors[0], result.stderr


@pytest.fixture()
def tagger(tmp_path):
    (tmp_path / "tagger.py").write_text(MODEL_FILE)
    return tmp_path


def export_args(tmp_path, *extra: str) -> list[str]:
    return ["export", "tagger:make", "--example-shape", "1,10,6", "-o", str(tmp_path / "out"), *extra]


def test_export_finds_a_module_in_the_current_directory_and_warns_about_random_weights(tagger):
    result = cli(*export_args(tagger), cwd=tagger)
    assert result.returncode == 0, result.stderr
    assert "warning: no --weights given" in result.stderr and "RANDOM" in result.stderr


def test_export_leaves_sys_path_as_it_was(tagger, monkeypatch):
    from lstm_edge.commands.core import _load_factory

    monkeypatch.chdir(tagger)
    before = list(sys.path)
    factory = _load_factory("tagger:make")
    assert callable(factory) and sys.path == before
    factory = _load_factory(f"{tagger / 'tagger.py'}:make")
    assert callable(factory) and sys.path == before


def test_export_weights_errors(tagger):
    sys.path.insert(0, str(tagger))
    try:
        import tagger as module
    finally:
        sys.path.remove(str(tagger))
    model = module.make(hidden=16)
    torch.save(model.state_dict(), tagger / "small.pt")
    torch.save(model, tagger / "pickled.pt")
    torch.save({"model": model.state_dict(), "epoch": 3}, tagger / "checkpoint.pt")

    one_clear_error(cli(*export_args(tagger, "--weights", "small.pt"), cwd=tagger), "does not fit the model")
    one_clear_error(cli(*export_args(tagger, "--weights", "pickled.pt"), cwd=tagger), "a whole pickled module?")
    one_clear_error(cli(*export_args(tagger, "--weights", "checkpoint.pt", "--factory-kwargs", '{"hidden": 16}'),
                        cwd=tagger), "--weights-key model")
    one_clear_error(cli(*export_args(tagger, "--weights", "checkpoint.pt", "--weights-key", "nope"), cwd=tagger),
                    "--weights-key 'nope': expected a key of the checkpoint")
    assert not (tagger / "out").exists()
    result = cli(*export_args(tagger, "--weights", "checkpoint.pt", "--weights-key", "model",
                              "--factory-kwargs", '{"hidden": 16}'), cwd=tagger)
    assert result.returncode == 0 and "warning" not in result.stderr, result.stderr


def test_export_refuses_a_name_with_newlines(tagger):
    result = cli(*export_args(tagger, "--name", "kws\nExecStartPre=/bin/sh -c id"), cwd=tagger)
    one_clear_error(result, "model name: expected 1-64 characters")
    assert not (tagger / "out").exists()


@pytest.mark.parametrize("payload, needle", [
    (lambda p: np.save(p, np.float32(3.0)), "a 0-d array"),
    (lambda p: np.savez(p, x=np.zeros((5, 20), np.float32)), "an .npz archive"),
])
def test_run_refuses_0d_and_npz_inputs(exported, tmp_path, payload, needle):
    _, model_dir = exported("feature_lstm")
    path = tmp_path / "input.npy"
    with open(path, "wb") as handle:
        payload(handle)
    result = cli("run", str(model_dir), str(path), "-o", str(tmp_path / "y.npy"), "--backend", "onnx")
    one_clear_error(result, needle)
    assert not (tmp_path / "y.npy").exists()


def test_info_exits_1_on_a_checksum_mismatch(exported, tmp_path):
    _, model_dir = exported("feature_lstm")
    copy = shutil.copytree(model_dir, tmp_path / "m")
    assert cli("info", str(copy)).returncode == 0
    onnx_file = next(copy.glob("*.onnx"))
    onnx_file.write_bytes(onnx_file.read_bytes() + b"x")
    result = cli("info", str(copy))
    assert "CHECKSUM MISMATCH" in result.stdout
    one_clear_error(result, f"mismatch or a missing file for ['{onnx_file.name}']")


def test_quantize_exits_1_when_a_parity_gate_fails(exported, tmp_path):
    _, model_dir = exported("feature_lstm")
    copy = shutil.copytree(model_dir, tmp_path / "m")
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["tolerances"] = {key: (0.0 if isinstance(value, float) else value)  # no int8 model meets these
                              for key, value in manifest["tolerances"].items()}
    (copy / "manifest.json").write_text(json.dumps(manifest))
    result = cli("quantize", str(copy), "--formats", "onnx")
    assert result.returncode == 1 and "FAIL" in result.stdout, result.stdout + result.stderr
    assert "Traceback" not in result.stderr


KWS_DIR = Path(__file__).resolve().parents[1] / "models" / "kws"
ASR_DIR = Path(__file__).resolve().parents[1] / "models" / "asr"


def test_export_error_for_a_pickled_module_is_one_plain_line(tagger):
    sys.path.insert(0, str(tagger))
    try:
        import tagger as module
    finally:
        sys.path.remove(str(tagger))
    torch.save(module.make(hidden=16), tagger / "pickled.pt")
    result = cli(*export_args(tagger, "--weights", "pickled.pt"), cwd=tagger)
    one_clear_error(result, "(the class tagger.Tagger: a whole pickled module?); save model.state_dict() instead")
    assert "\x1b" not in result.stderr and len(result.stderr.splitlines()) == 1, result.stderr


@pytest.mark.parametrize("command, model_dir", [("listen", KWS_DIR), ("transcribe", ASR_DIR)])
def test_audio_commands_with_standard_input_closed(command, model_dir):
    shell = f'"{sys.executable}" -m lstm_edge {command} "{model_dir / "export"}" - <&-'
    result = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, timeout=300)
    one_clear_error(result, "standard input: expected an open input ('-' reads it), got a closed one")


@pytest.mark.parametrize("command, model_dir", [("listen", KWS_DIR), ("transcribe", ASR_DIR)])
def test_audio_commands_name_a_directory_given_as_audio(command, model_dir, tmp_path):
    one_clear_error(cli(command, str(model_dir / "export"), str(tmp_path)),
                    f"{tmp_path}: expected an audio file, got a directory")


def test_listen_finishes_the_whole_samples_before_refusing_an_odd_trailing_byte():
    from lstm_edge.runtime.audio import load_mono

    audio, _ = load_mono(KWS_DIR / "demo.wav", 16000)
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    args = [sys.executable, "-m", "lstm_edge", "listen", str(KWS_DIR / "export"), "-", "--json"]
    whole = subprocess.run(args, input=pcm, capture_output=True, timeout=300)
    odd = subprocess.run(args, input=pcm + b"\x01", capture_output=True, timeout=300)
    assert whole.returncode == 0 and whole.stdout.count(b"\n") >= 3, whole.stderr
    assert odd.stdout == whole.stdout  # every detection of the whole samples, the last ones (flush) included
    one_clear_error(subprocess.CompletedProcess(odd.args, odd.returncode, odd.stdout.decode(), odd.stderr.decode()),
                    "expected 16-bit samples (an even number of bytes), got one trailing byte")


def test_a_command_line_argparse_cannot_parse_exits_2_and_bad_input_exits_1(tmp_path):
    unknown = cli("listen", str(tmp_path), "--no-such-option")
    assert unknown.returncode == 2 and "error: unrecognized arguments: --no-such-option" in unknown.stderr
    missing = cli("listen")
    assert missing.returncode == 2 and "the following arguments are required: model_dir" in missing.stderr
    assert cli("listen", str(tmp_path), "x.wav").returncode == 1  # an argument that parses, naming bad input


def test_the_cache_follows_xdg_cache_home(monkeypatch, tmp_path):
    from lstm_edge.runtime.paths import cache_dir

    monkeypatch.delenv("LSTM_EDGE_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir("native") == tmp_path / "lstm-edge" / "native"
    monkeypatch.setenv("LSTM_EDGE_CACHE", str(tmp_path / "own"))
    assert cache_dir("native") == tmp_path / "own" / "native"
