"""Build the C model library (``runtime/native``) into a per-user cache, once per source version.

The package directory may be read-only, so the shared library goes to ``$LSTM_EDGE_CACHE`` or
``$XDG_CACHE_HOME/lstm-edge`` (``~/.cache/lstm-edge``), named by a hash of the sources and the compiler command:
an edited source or another compiler gives a new file. A missing compiler is a BackendUnavailableError that says
what to install.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from lstm_edge.runtime.errors import BackendUnavailableError

NATIVE_DIR = Path(__file__).resolve().parent / "native"
LIBRARY_SOURCES = ("lstm_edge_model.c", "lstm_edge_kernels.c")
HEADERS = ("lstm_edge_model.h", "lstm_edge_kernels.h")
CFLAGS = ("-std=c99", "-O3", "-fno-trapping-math", "-fPIC", "-shared")  # no-trapping-math: the gate loops vectorise
COMPILERS = ("cc", "gcc", "clang")


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


def cache_dir() -> Path:
    root = os.environ.get("LSTM_EDGE_CACHE")
    if root:
        return Path(root)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lstm-edge"


def source_hash(compiler: str) -> str:
    digest = hashlib.sha256()
    for name in (*LIBRARY_SOURCES, *HEADERS):
        digest.update(name.encode())
        digest.update((NATIVE_DIR / name).read_bytes())
    digest.update(" ".join((compiler, *CFLAGS)).encode())
    return digest.hexdigest()[:16]


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
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as work:
        built = Path(work) / target.name
        command = [compiler, *CFLAGS, "-o", str(built), *(str(NATIVE_DIR / s) for s in LIBRARY_SOURCES), "-lm"]
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
        if result.returncode != 0:
            raise BackendUnavailableError(f"backend 'native': compiling the C library failed ({' '.join(command)}):\n"
                                          f"{result.stderr.strip()[:2000]}")
        os.replace(built, target)  # atomic: concurrent first uses each build, the last rename wins
    return target
