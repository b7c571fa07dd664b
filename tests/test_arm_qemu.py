"""A bundle installs offline and streams on aarch64 Python 3.11, emulated with qemu-user, matching x86 outputs.

Needs `qemu-aarch64` (apt: qemu-user) and apt with arm64 lists (the rootfs builder adds the architecture and runs
`apt-get update` itself when root). The rootfs is cached in ~/.cache/lstm-edge/arm and the downloaded wheels in
~/.cache/lstm-edge/wheels; every run installs the fresh bundle into a new venv with its own install.sh, offline.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from lstm_edge.cli import main as cli_main
from lstm_edge.devices.bench import RESULT_FIELDS
from lstm_edge.devices.bundle import extract_bundle, make_bundle

pytestmark = pytest.mark.slow

QEMU_ENV = Path(__file__).resolve().parent.parent / "devices" / "arm" / "qemu_env.py"
TOLERANCE = 1e-5


def _load_qemu_env():
    spec = importlib.util.spec_from_file_location("lstm_edge_qemu_env", QEMU_ENV)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


qemu_env = _load_qemu_env()


from zoo import SmallKws  # noqa: E402


@pytest.fixture(scope="module")
def rootfs() -> Path:
    try:
        return qemu_env.build_rootfs(log=print)
    except qemu_env.QemuEnvError as err:
        pytest.fail(f"cannot build the emulated aarch64 environment: {err}")


@pytest.mark.parametrize("device,backend,engine", [
    ("generic-aarch64-linux", "onnx", "onnxruntime"),
    ("raspberry-pi-4", "litert", "ai-edge-litert"),
])
def test_bundle_installs_offline_and_matches_x86_under_qemu(rootfs, tmp_path, device, backend, engine):
    started = time.perf_counter()
    from lstm_edge.export import export

    torch.manual_seed(0)
    fmt = {"onnx": "onnx", "litert": "tflite"}[backend]
    model_dir = export(SmallKws().eval(), torch.randn(1, 10, 40), tmp_path / "kws", formats=(fmt,), name="kws")
    archive = make_bundle(model_dir, device, tmp_path / f"kws-{device}.tar.gz", python="3.11", backend=backend,
                          precision="float")
    board = extract_bundle(archive, tmp_path / "board")
    bundled = time.perf_counter()

    venv = tmp_path / "venv"
    python = qemu_env.write_wrapper(rootfs, tmp_path / "python3")
    host_env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env = {**host_env, "PYTHON": str(python), "LSTM_EDGE_VENV": str(venv),
           "LSTM_EDGE_EXEC_WRAPPER": " ".join(qemu_env.emulator_command(rootfs)),
           "LSTM_EDGE_PIP_ARGS": "--no-compile"}
    install = subprocess.run(["sh", str(board / "install.sh")], env=env, capture_output=True, text=True,
                             timeout=1200, cwd=tmp_path)
    assert install.returncode == 0, f"install.sh failed:\n{install.stdout[-3000:]}\n{install.stderr[-3000:]}"
    assert f"ok: kws on {backend} ({engine}" in install.stdout, install.stdout[-2000:]
    installed = time.perf_counter()

    features = np.random.default_rng(11).standard_normal((53, 40)).astype(np.float32)
    np.save(tmp_path / "input.npy", features)
    run = subprocess.run(["sh", str(board / "run.sh"), str(tmp_path / "input.npy"), "-o", str(tmp_path / "arm.npy"),
                          "--chunk", "7"], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, f"run.sh under qemu failed:\n{run.stdout}\n{run.stderr[-3000:]}"
    assert cli_main(["run", str(model_dir), str(tmp_path / "input.npy"), "-o", str(tmp_path / "x86.npy"),
                     "--backend", backend, "--chunk", "7"]) == 0
    arm, x86 = np.load(tmp_path / "arm.npy"), np.load(tmp_path / "x86.npy")
    assert arm.shape == x86.shape == (53, 12)
    diff = float(np.abs(arm - x86).max())
    assert diff <= TOLERANCE, f"aarch64 vs x86 outputs: expected max abs diff <= {TOLERANCE}, got {diff:.3g}"

    bench = subprocess.run([*qemu_env.emulator_command(rootfs), str(venv / "bin" / "python"), "-I", "-m", "lstm_edge",
                            "bench", str(board / "model"), "--json", "--seconds", "0.3"],
                           capture_output=True, text=True, timeout=600)
    assert bench.returncode == 0, f"bench under qemu failed:\n{bench.stderr[-3000:]}"
    report = json.loads(bench.stdout)
    assert report["machine"] == "aarch64" and report["python"].startswith("3.11")
    [result] = report["results"]
    assert set(RESULT_FIELDS) <= set(result) and result["chunks"] >= 50
    assert (result["backend"], result["precision"]) == (backend, "float") and engine.replace("-", "") in \
        result["engine"].replace("-", "")
    print(f"{device}/{backend}: export+bundle {bundled - started:.0f} s, install {installed - bundled:.0f} s, "
          f"run+bench {time.perf_counter() - installed:.0f} s, max diff {diff:.2g}")
