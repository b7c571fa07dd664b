"""The wheels of a device bundle: lstm-edge (runtime only) built from the source tree, and its dependencies
downloaded for the board's platform and Python."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import lstm_edge
from lstm_edge.devices.errors import BundleError
from lstm_edge.devices.profiles import Profile
from lstm_edge.runtime import backends
from lstm_edge.runtime.errors import expected_got
from lstm_edge.runtime.paths import cache_dir

DEFAULT_WHEEL_CACHE = Path(os.environ.get("LSTM_EDGE_WHEEL_CACHE") or cache_dir("wheels"))
# Host-side parts and training assets: the device wheel holds the runtime, the CLI and device tools only.
HOST_ONLY = ("models", "recipes", "export", "quantize", "demo.py")
DEVICE_EXTRAS = ("onnx", "litert", "mic")  # the extras a board's install.sh may ask for
# Inside devices/: what only makes bundles or web sites (a board runs them, it does not make them)
BUNDLE_MAKING = ("templates", "bundle.py", "native_bundle.py", "render.py", "wheels.py", "choice.py", "web",
                 "web_site.py", "wasm_build.py")
# Inside runtime/native/: sources built on a host for other targets (Cortex-M firmware, WebAssembly and its modules)
CROSS_BUILT = ("mcu", "wasm")

Log = Callable[[str], None]


def _ignore_for_device(folder: str, names: list[str]) -> set[str]:
    skipped = {n for n in names if n in ("__pycache__", ".pytest_cache") or n.endswith((".pyc", ".egg-info"))}
    if Path(folder).name == "lstm_edge":
        skipped |= {n for n in names if n in HOST_ONLY}
    if Path(folder).name == "devices":
        skipped |= {n for n in names if n in BUNDLE_MAKING}
    if Path(folder).name == "native":
        skipped |= {n for n in names if n in CROSS_BUILT}
    return skipped


def _device_pyproject() -> str:
    """The runtime wheel's pyproject.toml: the installed distribution's name, version, Python range, runtime
    dependencies and device-side extras (read from its metadata, so they cannot drift from pyproject.toml)."""
    meta = metadata.metadata("lstm-edge")
    python_range = meta["Requires-Python"] if "Requires-Python" in meta else ">=3.10"
    base: list[str] = []
    extras: dict[str, list[str]] = {name: [] for name in DEVICE_EXTRAS}
    for requirement in meta.get_all("Requires-Dist") or []:
        spec, _, marker = requirement.partition(";")
        found = re.search(r'extra\s*==\s*"([^"]+)"', marker)
        if not found:
            base.append(spec.strip())
        elif found.group(1) in extras:
            extras[found.group(1)].append(spec.strip())
    lines = ['[build-system]', 'requires = ["setuptools>=61"]', 'build-backend = "setuptools.build_meta"', '',
             '[project]', 'name = "lstm-edge"', f'version = {json.dumps(meta["Version"])}',
             'description = "lstm-edge, the device runtime: stream exported LSTM models with named state"',
             f'requires-python = {json.dumps(python_range)}',
             f'dependencies = {json.dumps(base)}', '', '[project.optional-dependencies]']
    lines += [f'{name} = {json.dumps(specs)}' for name, specs in extras.items()]
    lines += ['', '[project.scripts]', 'lstm-edge = "lstm_edge.cli:main"', '',
              '[tool.setuptools.packages.find]', 'include = ["lstm_edge*"]', '',
              '[tool.setuptools.package-data]', '"*" = ["*.json", "*.c", "*.h", "LICENSE*", "README*"]']
    return "\n".join(lines) + "\n"


def build_own_wheel(dest: Path, log: Log = print) -> Path:
    """Build the device wheel (runtime, CLI and device tools; no models, recipes or host-side tools) from the
    installed lstm_edge package into ``dest``: a regular install and an editable one alike."""
    package = Path(lstm_edge.__file__).resolve().parent
    log(f"building the lstm-edge device wheel from {package}")
    with tempfile.TemporaryDirectory(prefix="lstm-edge-wheel-") as tmp:
        source = Path(tmp) / "src"
        # copytree follows the source tree's folder links (lstm_edge/runtime -> ../runtime ...)
        shutil.copytree(package, source / "lstm_edge", ignore=_ignore_for_device)
        (source / "pyproject.toml").write_text(_device_pyproject())
        # setuptools from this Python when it has one (no download), else pip's isolated build fetches it
        isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
        result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation,
                                 "--disable-pip-version-check", "-q", "-w", tmp, str(source)],
                                capture_output=True, text=True)
        wheels = list(Path(tmp).glob("lstm_edge-*.whl"))
        if result.returncode != 0 or len(wheels) != 1:
            raise BundleError(f"building the device wheel with pip failed (exit {result.returncode}): "
                              f"{result.stderr[-1500:]}")
        dest.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy2(wheels[0], dest))


def download_wheels(profile: Profile, python: str, backend: str, cache_dir: Path, log: Log = print) -> list[Path]:
    """numpy, the engine, their dependencies and pip, for ``profile``'s platform and ``python``; cached.

    A cache folder is reused as it is once complete; delete it to pick up newer releases.
    """
    key = f"{profile.architecture}-glibc{profile.glibc}-cp{python.replace('.', '')}-{backend}-soxr"
    folder = Path(cache_dir) / key
    done = folder / ".complete"
    if not done.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        platforms = [arg for tag in profile.pip_platforms() for arg in ("--platform", tag)]
        requirements = ["numpy>=1.22", backends.info(backend).pip_package, "soxr>=0.3", "pip"]
        log(f"downloading wheels for {key} into {folder}")
        result = subprocess.run([sys.executable, "-m", "pip", "download", "--only-binary=:all:", *platforms,
                                 "--python-version", python, "--implementation", "cp", "--disable-pip-version-check",
                                 "-q", "-d", str(folder), *requirements], capture_output=True, text=True)
        if result.returncode != 0:
            raise BundleError(f"pip download for {key} failed (exit {result.returncode}); PyPI must be reachable "
                              f"or the cache filled: {result.stderr[-1500:]}")
        done.write_text(json.dumps({"requirements": requirements, "platforms": profile.pip_platforms()}) + "\n")
    wheels = sorted(folder.glob("*.whl"))
    names = {w.name.split("-")[0].lower().replace("_", "-") for w in wheels}
    engine = backends.info(backend).pip_package
    missing = [n for n in ("numpy", engine, "soxr", "pip") if n not in names]
    if missing:
        raise BundleError(expected_got(f"wheels in {folder}", f"numpy, {engine}, soxr and pip",
                                       f"{sorted(names)} (missing {missing}); delete the folder to download again"))
    return wheels
