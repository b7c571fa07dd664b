"""The LiteRT backend on tflite-runtime (the predecessor of ai-edge-litert), in a side venv with numpy < 2.

tflite-runtime 2.14.0 is its last release (Python <= 3.11, numpy 1.x only). The backend imports it when
ai-edge-litert is absent; this test proves that path on the shipped model directories, float and int8.
"""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CLIENT = r"""
import json, sys
import numpy as np
from lstm_edge.runtime import StreamingModel
from lstm_edge.runtime.manifest import Manifest

results = []
for model_dir in sys.argv[1:]:
    manifest = Manifest.load(model_dir)
    ref_in = np.load(f"{model_dir}/{manifest.reference['input']}")
    ref_out = np.load(f"{model_dir}/{manifest.reference['output']}")
    for precision in ("float", "int8"):
        model = StreamingModel.load(model_dir, backend="litert", precision=precision)
        stream = model.create_stream()
        got = np.concatenate([stream.push(ref_in[i:i + 7]) for i in range(0, 200, 7)])
        want = ref_out[:len(got)]
        results.append({"dir": model_dir, "precision": precision, "engine": model.engine,
                        "max_abs_diff": float(np.abs(got - want).max()),
                        "argmax_agreement": float((got.argmax(-1) == want.argmax(-1)).mean()),
                        "numpy": np.__version__})
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def side_python(tmp_path_factory) -> Path:
    if sys.version_info[:2] > (3, 11):
        raise RuntimeError("tflite-runtime 2.14.0 has wheels for Python <= 3.11 only; this suite runs on 3.11")
    env_dir = tmp_path_factory.mktemp("tflite-runtime-venv")
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    "tflite-runtime==2.14.0", "numpy<2"], check=True)
    return python


def test_shipped_models_run_on_tflite_runtime(side_python: Path) -> None:
    dirs = [str(ROOT / "models" / "kws" / "export"), str(ROOT / "models" / "text" / "lm" / "export")]
    done = subprocess.run([str(side_python), "-c", CLIENT, *dirs], capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(results) == 4
    for row in results:
        assert row["engine"].startswith("tflite-runtime 2.14"), row
        assert row["numpy"].startswith("1."), row
        if row["precision"] == "float":
            assert row["max_abs_diff"] <= 1e-4, row
        else:
            assert row["argmax_agreement"] >= 0.95, row
