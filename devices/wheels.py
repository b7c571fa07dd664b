"""The wheels of a device bundle: lstm-edge (runtime only) built from the source tree, and its dependencies
downloaded for the board's platform and Python."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
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
# Inside devices/: what only makes bundles (a board runs bundles, it does not make them)
BUNDLE_MAKING = ("templates", "bundle.py", "native_bundle.py", "render.py", "wheels.py", "choice.py")

Log = Callable[[str], None]


def _ignore_for_device(root: Path):
    base = shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", "tests",
                                  "data", ".cache", "benchmarks")

    def ignore(folder: str, names: list[str]) -> set[str]:
        skipped = set(base(folder, names))
        if Path(folder).resolve() in (root.resolve(), (root / "lstm_edge").resolve()) or \
                Path(folder).name == "lstm_edge":
            skipped |= {n for n in names if n in HOST_ONLY}
        if Path(folder).name == "devices":
            skipped |= {n for n in names if n in BUNDLE_MAKING}
        return skipped
    return ignore


def project_root() -> Path | None:
    """The source tree lstm-edge is installed from (editable install), or None."""
    root = Path(lstm_edge.__file__).resolve().parent.parent
    pyproject = root / "pyproject.toml"
    if pyproject.is_file() and re.search(r'^name\s*=\s*"lstm-edge"', pyproject.read_text(), re.MULTILINE):
        return root
    return None


def build_own_wheel(dest: Path, log: Log = print) -> Path:
    """Build the lstm-edge wheel from the installed source tree into ``dest``."""
    root = project_root()
    if root is None:
        raise BundleError("cannot find the lstm-edge source tree (not an editable install): "
                          "pass wheel=PATH (`--wheel`) with a built lstm-edge wheel")
    log(f"building the lstm-edge wheel from {root}")
    with tempfile.TemporaryDirectory(prefix="lstm-edge-wheel-") as tmp:
        # Build from a clean copy: an in-tree build would reuse (and leave) build/ and *.egg-info in the tree.
        source = Path(tmp) / "src"
        shutil.copytree(root, source, ignore=_ignore_for_device(root))
        result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                                 "--disable-pip-version-check", "-q", "-w", tmp, str(source)],
                                capture_output=True, text=True)
        wheels = list(Path(tmp).glob("lstm_edge-*.whl"))
        if result.returncode != 0 or len(wheels) != 1:
            raise BundleError(f"`pip wheel {root}` failed (exit {result.returncode}): {result.stderr[-1500:]}")
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
