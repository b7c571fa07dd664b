"""The parts of a Linux bundle that runs the C library instead of Python: static programs for the board.

A board without a Python engine (32-bit Raspberry Pi OS: PyPI has no armv7l wheel of onnxruntime, LiteRT or
tflite-runtime) gets ``bin/lstm-edge-run`` and ``bin/lstm-edge-listen``, cross-compiled and statically linked by
``build-c`` for the board's architecture, the library and headers for an app of its own (``lib/``,
``include/``), the model's C weight file in ``model/``, and ``run.sh``. Nothing is installed: unpack and run. The
reference stream is stored as raw float32 next to the ``.npy`` arrays so that ``run.sh --self-test`` can check the
programs on the board with ``od`` and ``awk`` alone (no Python there).
"""

from __future__ import annotations

import platform
import shutil
import tempfile
from pathlib import Path

import numpy as np

from lstm_edge.devices.c_build import HEADERS, PROGRAMS, build_c
from lstm_edge.devices.errors import BundleError
from lstm_edge.devices.profiles import Profile
from lstm_edge.devices.render import render
from lstm_edge.runtime.manifest import Manifest, float_limit

# uname -m of a board -> build-c target (x86_64 boards: built by this machine's cc when it is one)
C_TARGETS = {"armv7l": "armv7", "aarch64": "aarch64", "x86_64": "native"}
RAW_REFERENCE = {"input": "reference/input.raw", "output": "reference/output.f32"}


def c_target_for(profile: Profile) -> str:
    """The ``build-c`` target that makes programs for ``profile``'s CPU."""
    target = C_TARGETS.get(profile.architecture)
    if target is None:
        raise BundleError(f"no C build target for {profile.name} ({profile.architecture}); targets exist for "
                          f"{sorted(C_TARGETS)}")
    if target == "native" and platform.machine() != "x86_64":
        raise BundleError(f"{profile.name} is an x86_64 board; its C programs are built with this machine's cc, "
                          f"which targets {platform.machine()}: build the bundle on an x86_64 machine")
    return target


def write_native_parts(root: Path, model_dir: Path, manifest: Manifest, profile: Profile,
                       values: dict[str, str]) -> dict[str, object]:
    """Build and copy the programs, library and headers into ``root``; write run.sh and README.md.

    Returns what BUNDLE.json records about the build (target, compiler, library code size, programs).
    """
    target = c_target_for(profile)
    with tempfile.TemporaryDirectory(prefix="lstm-edge-c-") as work:
        record = build_c(target, work)  # no model directory: only the chosen weight file goes into model/
        build = Path(work)
        for sub in ("bin", "lib", "include"):
            (root / sub).mkdir()
        for program in PROGRAMS:
            shutil.copy2(build / program, root / "bin" / program)
        shutil.copy2(build / "liblstm_edge.a", root / "lib" / "liblstm_edge.a")
        for header in HEADERS:
            shutil.copy2(build / header, root / "include" / header)
    values = {**values, **_reference_values(root / "model", model_dir, manifest),
              "C_TARGET": target, "COMPILER": str(record["compiler"]),
              "CODE_BYTES": str(record["library_size"]["text"])}
    (root / "run.sh").write_text(render("run-native.sh", values), encoding="utf-8")
    (root / "run.sh").chmod(0o755)
    (root / "README.md").write_text(render("README-native.md", values), encoding="utf-8")
    return {"c_target": target, "compiler": record["compiler"], "library_size": record["library_size"],
            "programs": [f"bin/{p}" for p in PROGRAMS]}


def _reference_values(model_out: Path, model_dir: Path, manifest: Manifest) -> dict[str, str]:
    """Write the reference stream as raw little-endian arrays for the board's self-test; the values it needs."""
    reference = dict(manifest.reference or {})
    if manifest.kind == "step" or not (reference.get("input") and reference.get("output")):
        return {"HAS_REFERENCE": "0", "FRAMES": "0", "OUT_WIDTH": "1", "FLOAT_LIMIT": "0", "INT8_LIMIT": "1",
                **{f"RAW_{k.upper()}": v for k, v in RAW_REFERENCE.items()}}
    inputs = np.load(model_dir / reference["input"], allow_pickle=False)
    outputs = np.load(model_dir / reference["output"], allow_pickle=False).astype("<f4")
    raw_inputs = inputs.astype("<i4" if inputs.dtype.kind in "iu" else "<f4")
    (model_out / "reference").mkdir(parents=True, exist_ok=True)
    (model_out / RAW_REFERENCE["input"]).write_bytes(np.ascontiguousarray(raw_inputs).tobytes())
    (model_out / RAW_REFERENCE["output"]).write_bytes(np.ascontiguousarray(outputs).tobytes())
    tolerances = dict(manifest.tolerances)
    return {"HAS_REFERENCE": "1", "FRAMES": str(len(outputs)), "OUT_WIDTH": str(outputs.shape[-1]),
            "FLOAT_LIMIT": repr(float_limit(tolerances, float(np.abs(outputs).max()))),
            "INT8_LIMIT": repr(float(tolerances.get("int8_argmax_agreement", 0.98))),
            **{f"RAW_{k.upper()}": v for k, v in RAW_REFERENCE.items()}}
