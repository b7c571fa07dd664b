"""Build the C model library (``runtime/native``) into a per-user cache, once per source version.

The package directory may be read-only, so the shared library goes to ``$LSTM_EDGE_CACHE`` or
``$XDG_CACHE_HOME/lstm-edge`` (``~/.cache/lstm-edge``), named by a hash of the sources and the compiler command:
an edited source or another compiler gives a new file. A missing compiler is a BackendUnavailableError that says
what to install.

The push extension (``native_push.c``, a CPython module) is built the same way next to it when Python's headers are
there; without them (or with ``LSTM_EDGE_NATIVE_PUSH=ctypes``) a Stream pushes through ctypes, with the same results.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sysconfig
import tempfile
from pathlib import Path
from types import ModuleType

from lstm_edge.runtime.errors import BackendUnavailableError
from lstm_edge.runtime.paths import cache_dir

NATIVE_DIR = Path(__file__).resolve().parent / "native"
LIBRARY_SOURCES = ("lstm_edge_model.c", "lstm_edge_kernels.c")
HEADERS = ("lstm_edge_model.h", "lstm_edge_kernels.h", "lstm_edge_common.h")
CFLAGS = ("-std=c99", "-O3", "-fno-trapping-math", "-fPIC", "-shared")  # no-trapping-math: the gate loops vectorise
COMPILERS = ("cc", "gcc", "clang")
PUSH_SOURCE = Path(__file__).resolve().parent / "native_push.c"
PUSH_CFLAGS = ("-O2", "-fPIC", "-shared")
PUSH_MODULE = "_lstm_edge_push"
_push_module: list[ModuleType | None] = []  # [] until first asked, then [module] or [None]
push_unavailable = ""  # why the push extension is not used (empty when it is, or before it is first asked for)


def find_compiler() -> str | None:
    """The C compiler to use: ``$CC`` when set, else the first of cc, gcc, clang on PATH."""
    chosen = os.environ.get("CC")
    if chosen:
        return shutil.which(chosen)
    for name in COMPILERS:
        found = shutil.which(name)
        if found:
            return found
    return None


def source_hash(compiler: str) -> str:
    digest = hashlib.sha256()
    for name in (*LIBRARY_SOURCES, *HEADERS):
        digest.update(name.encode())
        digest.update((NATIVE_DIR / name).read_bytes())
    digest.update(" ".join((compiler, *CFLAGS)).encode())
    return digest.hexdigest()[:16]


def _compile(command: list[str], target: Path) -> subprocess.CompletedProcess[str]:
    """Run ``command`` (which writes ``target``'s name in a temporary directory) and move the result into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as work:
        built = Path(work) / target.name
        result = subprocess.run([part.replace("{out}", str(built)) for part in command], capture_output=True,
                                text=True, timeout=300)
        if result.returncode == 0:
            os.replace(built, target)  # atomic: concurrent first uses each build, the last rename wins
    return result


def shared_library() -> Path:
    """The path of the built library, compiling it first when this source version has no build yet."""
    compiler = find_compiler()
    if compiler is None:
        raise BackendUnavailableError("backend 'native' compiles its C library on first use and needs a C compiler, "
                                      "and none was found (looked for $CC, cc, gcc, clang); install one, e.g. "
                                      "`apt-get install gcc` or Xcode's command line tools")
    target = cache_dir() / f"liblstm_edge_model-{source_hash(compiler)}.so"
    if target.is_file():
        return target
    command = [compiler, *CFLAGS, "-o", "{out}", *(str(NATIVE_DIR / s) for s in LIBRARY_SOURCES), "-lm"]
    result = _compile(command, target)
    if result.returncode != 0:
        raise BackendUnavailableError(f"backend 'native': compiling the C library failed ({' '.join(command)}):\n"
                                      f"{result.stderr.strip()[:2000]}")
    return target


def push_extension() -> ModuleType | None:
    """The push extension module, built on first use; None (the reason in ``push_unavailable``) when it is turned
    off by ``LSTM_EDGE_NATIVE_PUSH=ctypes``, or Python's headers or the compiler are missing or fail."""
    global push_unavailable
    if os.environ.get("LSTM_EDGE_NATIVE_PUSH", "") == "ctypes":
        push_unavailable = "LSTM_EDGE_NATIVE_PUSH=ctypes"
        return None
    if _push_module:
        return _push_module[0]
    module, push_unavailable = _build_push_extension()
    _push_module.append(module)
    return module


def _build_push_extension() -> tuple[ModuleType | None, str]:
    compiler = find_compiler()
    include = sysconfig.get_paths().get("include", "")
    if compiler is None:
        return None, "no C compiler"
    if not include or not (Path(include) / "Python.h").is_file():
        return None, f"no Python.h in {include or 'the interpreter include path'} (install the python3-dev package)"
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    digest = hashlib.sha256(PUSH_SOURCE.read_bytes())
    digest.update(" ".join((compiler, *PUSH_CFLAGS, include, suffix)).encode())
    target = cache_dir() / f"{PUSH_MODULE}-{digest.hexdigest()[:16]}{suffix}"
    if not target.is_file():
        command = [compiler, *PUSH_CFLAGS, f"-I{include}", "-o", "{out}", str(PUSH_SOURCE)]
        result = _compile(command, target)
        if result.returncode != 0:
            return None, f"compiling {PUSH_SOURCE.name} failed: {result.stderr.strip()[:300]}"
    spec = importlib.util.spec_from_file_location(PUSH_MODULE, target)
    if spec is None or spec.loader is None:
        return None, f"{target} is not loadable as a Python extension"
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except ImportError as error:
        return None, f"{target}: {error}"
    return module, ""
