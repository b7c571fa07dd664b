"""Bundles for boards without a Python engine: the C programs, cross-built and run under qemu like on the board.

The shipped keyword spotter (it has C weight files) is bundled for the 32-bit Pi profile (armv7, whose default is
the C runtime) and, asked for explicitly, for a 64-bit Pi; the bundle's own ``run.sh`` runs its self-test and the
demo recording under ``qemu-arm`` / ``qemu-aarch64`` (LSTM_EDGE_EXEC_WRAPPER), as a user would on the board.
"""

from __future__ import annotations

import json
import os
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

from lstm_edge.devices.bundle import extract_bundle, make_bundle
from lstm_edge.runtime import StreamingModel
from lstm_edge.runtime.kws import KeywordSpotter

ROOT = Path(__file__).resolve().parent.parent
KWS_DIR = ROOT / "models" / "kws" / "export"
DEMO_WAV = ROOT / "models" / "kws" / "demo.wav"
BOARDS = {"raspberry-pi-3-armv7": ("qemu-arm", "ARM, EABI5", None),
          "raspberry-pi-4": ("qemu-aarch64", "ARM aarch64", "native")}


@pytest.fixture(scope="module", params=sorted(BOARDS))
def bundle(request, tmp_path_factory):
    device = request.param
    wrapper, _, backend = BOARDS[device]
    out = tmp_path_factory.mktemp(device)
    archive = make_bundle(KWS_DIR, device, out / f"kws-{device}.tar.gz", backend=backend, log=lambda m: None)
    return device, extract_bundle(archive, out / "unpacked"), wrapper


def run_sh(root: Path, wrapper: str, args: list[str], stdin: bytes = b"") -> subprocess.CompletedProcess:
    env = {**os.environ, "LSTM_EDGE_EXEC_WRAPPER": wrapper}
    env.pop("LSTM_EDGE_PRECISION", None)
    return subprocess.run(["sh", str(root / "run.sh"), *args], input=stdin, capture_output=True, env=env,
                          timeout=300)


def test_bundle_holds_static_programs_for_the_board_and_no_wheels(bundle):
    device, root, _ = bundle
    info = json.loads((root / "BUNDLE.json").read_text())
    assert info["backend"] == "native" and info["precision"] == "int8" and info["python"] is None
    assert info["model_file"] == "model/model.int8.lec" and info["c"]["programs"] == ["bin/lstm-edge-run",
                                                                                         "bin/lstm-edge-listen"]
    assert not (root / "wheels").exists() and not (root / "install.sh").exists()
    for program in ("lstm-edge-run", "lstm-edge-listen"):
        kind = subprocess.run(["file", "-b", str(root / "bin" / program)], capture_output=True, text=True).stdout
        assert BOARDS[device][1] in kind and "statically linked" in kind, kind
    manifest = json.loads((root / "model" / "manifest.json").read_text())
    assert [f["path"] for f in manifest["files"]] == ["model.int8.lec"]
    assert (root / "lib" / "liblstm_edge.a").is_file() and (root / "include" / "lstm_edge_model.h").is_file()


def test_self_test_passes_on_the_board(bundle):
    _, root, wrapper = bundle
    result = run_sh(root, wrapper, ["--self-test"])
    lines = result.stdout.decode().splitlines()
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    assert lines[0].startswith("ok    checksums")
    frames = np.load(KWS_DIR / "reference" / "input.npy").shape[0]  # the shipped model's reference stream
    assert lines[1].startswith(f"ok    model: int8, {frames} frames, argmax agreement with float")
    agreement = float(lines[1].split("argmax agreement with float ")[1].split()[0])
    assert agreement >= 0.98


def test_listen_on_the_board_gives_the_detections_of_the_python_runtime(bundle):
    _, root, wrapper = bundle
    with wave.open(str(DEMO_WAV), "rb") as handle:
        pcm = np.frombuffer(handle.readframes(handle.getnframes()), dtype="<i2")
    expected = [d.to_dict() for d in
                KeywordSpotter(StreamingModel.load(KWS_DIR, backend="native", precision="int8")).detect(pcm)]
    result = run_sh(root, wrapper, ["listen"], pcm.tobytes())
    assert result.returncode == 0, result.stderr.decode()
    got = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert len(expected) >= 3 and [d["label"] for d in got] == [d["label"] for d in expected]  # 4 float, 3 int8
    for mine, theirs in zip(got, expected):
        assert abs(mine["start"] - theirs["start"]) < 1e-6 and abs(mine["end"] - theirs["end"]) < 1e-6
        assert abs(mine["score"] - theirs["score"]) <= 2e-4


def test_self_test_fails_on_a_modified_weight_file(bundle, tmp_path):
    _, root, wrapper = bundle
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-a", str(root), str(copy)], check=True)
    weights = copy / "model" / "model.int8.lec"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x40
    weights.write_bytes(bytes(data))
    result = run_sh(copy, wrapper, ["--self-test"])
    out = result.stdout.decode()
    assert result.returncode == 1 and "FAIL  checksums" in out


def test_run_sh_refuses_an_unknown_command(bundle):
    _, root, wrapper = bundle
    result = run_sh(root, wrapper, ["transcribe"])
    assert result.returncode == 2 and b"usage:" in result.stderr
