"""``lstm-edge build-c``: the C library, its headers and the two programs for this machine or an ARM board.

Cross builds use Debian's gcc cross packages (``gcc-aarch64-linux-gnu``, ``gcc-arm-linux-gnueabihf``) and link the
programs statically, so they run on any Linux of that architecture (and under ``qemu-aarch64`` / ``qemu-arm``
without a root filesystem). The output folder holds::

    liblstm_edge.a           model + kernels + audio frontend/detector (static library)
    lstm_edge_model.h        the model API (create from file or memory, streams, state)
    lstm_edge_audio.h        the log-mel frontend and keyword detector API
    lstm-edge-run            float32 frames on stdin -> float32 outputs on stdout
    lstm-edge-listen         16 kHz s16le PCM on stdin -> detections (JSON lines)
    model.lec, model.int8.lec   the model directory's C weight files (when a model directory is given)
    model_int8_lec.h         the int8 weight file as a ``const`` byte array, for firmware without a file system:
                             ``lem_model_from_memory(lem_model_int8_lec, sizeof lem_model_int8_lec, &status)``
    build.json               target, compiler, flags, code size of the library (``size``), files

``--target cortex-m4|cortex-m33|cortex-m55`` builds bare-metal firmware instead (``mcu_build``), ``--target wasm``
WebAssembly modules and their JavaScript module (``wasm_build``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lstm_edge.runtime.errors import LstmEdgeError, expected_got
from lstm_edge.runtime.manifest import Manifest, check_file

NATIVE_DIR = Path(__file__).resolve().parent.parent / "runtime" / "native"
LIBRARY_SOURCES = ("lstm_edge_model.c", "lstm_edge_kernels.c", "lstm_edge_audio.c")
HEADERS = ("lstm_edge_model.h", "lstm_edge_audio.h")
PROGRAMS = {"lstm-edge-run": ("lstm_edge_run.c",), "lstm-edge-listen": ("lstm_edge_listen.c",)}
CFLAGS = ("-std=c99", "-O3", "-fno-trapping-math", "-Wall", "-Wextra")  # no-trapping-math: gate loops vectorise


class BuildError(LstmEdgeError, RuntimeError):
    """The C library or its programs could not be built (missing compiler, compile error, missing C files)."""


@dataclass(frozen=True)
class CTarget:
    name: str
    prefix: str  # toolchain prefix ("" for this machine's cc)
    static: bool  # link the programs statically
    apt_package: str

    @property
    def cc(self) -> str:
        return f"{self.prefix}gcc" if self.prefix else "cc"


TARGETS = {
    "native": CTarget("native", "", False, "gcc"),
    "aarch64": CTarget("aarch64", "aarch64-linux-gnu-", True, "gcc-aarch64-linux-gnu"),
    "armv7": CTarget("armv7", "arm-linux-gnueabihf-", True, "gcc-arm-linux-gnueabihf"),
}


def _tool(target: CTarget, name: str) -> str:
    tool = shutil.which(f"{target.prefix}{name}") if target.prefix else shutil.which(name)
    if tool is None:
        package = target.apt_package if target.prefix else "binutils"
        raise BuildError(f"target {target.name} needs {target.prefix}{name}, which is not installed; install it "
                         f"with: apt-get install {package}")
    return tool


def run_tool(command: list[str], timeout: float = 600, error: type[BuildError] = BuildError) -> str:
    """Run a build or measuring tool; its output, or ``error`` with the command, exit code and what it said."""
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise error(f"{' '.join(command)} failed (exit {result.returncode}):\n"
                    f"{(result.stderr or result.stdout).strip()[:3000]}")
    return result.stdout


def static_library(cc: str, ar: str, flags: list[str] | tuple[str, ...], sources: list[Path], library: Path,
                   error: type[BuildError] = BuildError) -> Path:
    """Compile ``sources`` with ``cc flags`` and archive the objects into ``library`` (replaced if it exists)."""
    with tempfile.TemporaryDirectory() as work:
        objects = []
        for source in sources:
            obj = Path(work) / source.name.replace(".c", ".o")
            run_tool([cc, *flags, "-c", "-o", str(obj), str(source)], error=error)
            objects.append(str(obj))
        library.unlink(missing_ok=True)
        run_tool([ar, "rcs", str(library), *objects], error=error)
    return library


def code_size(target: CTarget, library: Path) -> dict[str, Any]:
    """text/data/bss bytes summed over the library's objects (binutils ``size``), and text per object."""
    out = run_tool([_tool(target, "size"), "--totals", str(library)])
    rows = [line.split() for line in out.splitlines()[1:] if line.strip()]
    total = [row for row in rows if row[5:6] == ["(TOTALS)"]][0]
    per_object = {row[5]: int(row[0]) for row in rows if len(row) > 5 and row[5].endswith(".o")}
    return {"text": int(total[0]), "data": int(total[1]), "bss": int(total[2]), "text_per_object": per_object}


def write_array_header(source: Path, target: Path, name: str) -> None:
    """``source``'s bytes as ``static const unsigned char name[]`` (aligned to 16 bytes with GCC and clang)."""
    data = source.read_bytes()
    rows = [", ".join(str(b) for b in data[i:i + 24]) for i in range(0, len(data), 24)]
    body = ",\n    ".join(rows)
    target.write_text(f"/* {source.name} ({len(data)} bytes), written by lstm-edge build-c. */\n"
                      f"#ifndef {name.upper()}_H\n#define {name.upper()}_H\n"
                      "#if defined(__GNUC__)\n__attribute__((aligned(16)))\n#endif\n"
                      f"static const unsigned char {name}[{len(data)}] = {{\n    {body}\n}};\n#endif\n")


def build_c(target_name: str, out_dir: str | Path, model_dir: str | Path | None = None) -> dict[str, Any]:
    """Build for ``target_name`` (native, aarch64, armv7, or a Cortex-M core: firmware, see ``mcu_build``) into
    ``out_dir``; returns what build.json records."""
    from lstm_edge.devices.mcu_build import MCU_TARGETS, build_mcu
    from lstm_edge.devices.wasm_build import build_wasm

    if target_name in MCU_TARGETS:
        return build_mcu(target_name, out_dir, model_dir)
    if target_name == "wasm":
        return build_wasm(out_dir, model_dir)
    if target_name not in TARGETS:
        raise BuildError(expected_got("target", f"one of {[*TARGETS, *MCU_TARGETS, 'wasm']}", repr(target_name)))
    target = TARGETS[target_name]
    cc = shutil.which(target.cc)
    if cc is None:
        raise BuildError(f"target {target.name} needs the C compiler {target.cc}, which is not installed; install it "
                         f"with: apt-get install {target.apt_package}")
    weights: list[Path] = []
    if model_dir is not None:
        manifest = Manifest.load(model_dir)
        if not manifest.has_file("c", "float"):
            raise BuildError(f"{model_dir} has no C weight file; add it with: lstm-edge add-c {model_dir}")
        weights = [check_file(model_dir, f) for f in manifest.files if f.format == "c"]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    library = static_library(cc, _tool(target, "ar"), CFLAGS, [NATIVE_DIR / source for source in LIBRARY_SOURCES],
                             out / "liblstm_edge.a")
    for header in HEADERS:
        shutil.copyfile(NATIVE_DIR / header, out / header)
    for program, sources in PROGRAMS.items():
        run_tool([cc, *CFLAGS, *(("-static",) if target.static else ()), "-o", str(out / program),
              *(str(NATIVE_DIR / s) for s in sources), str(library), "-lm"])
    for path in weights:
        shutil.copyfile(path, out / path.name)
        if path.name == "model.int8.lec":
            write_array_header(path, out / "model_int8_lec.h", "lem_model_int8_lec")
    record = {"target": target.name, "compiler": run_tool([cc, "--version"]).splitlines()[0], "cflags": list(CFLAGS),
              "static_programs": target.static, "library_size": code_size(target, library),
              "files": sorted(p.name for p in out.iterdir() if p.name != "build.json")}
    (out / "build.json").write_text(json.dumps(record, indent=2) + "\n")
    return record
