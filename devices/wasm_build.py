"""``lstm-edge build-c [MODEL_DIR] --target wasm -o OUT/``: the C library as WebAssembly and its JavaScript module.

Built with Debian's ``clang`` + ``lld`` (``wasm-ld``) + ``wasi-libc`` + ``libclang-rt-14-dev-wasm32`` as standalone
reactor modules (no Emscripten glue): the model, kernels, log-mel frontend and keyword detector of ``runtime/native``
and the flat entry points of ``runtime/native/wasm/lstm_edge_wasm.c``. The output folder is an ES-module package::

    lstm_edge.wasm           SIMD128 kernels (every current browser and Node.js)
    lstm_edge_portable.wasm  portable C kernels, for engines without SIMD128 (bitwise the same results)
    lstm-edge.mjs            the module: loadModel(url), model.createStream() / createSpotter(), push(chunk)
    asr.mjs                  SpeechRecognizer: the manifest's CTC decoder in JavaScript over the model
    resample.mjs             the deterministic resampler the page's AudioWorklet uses (any rate -> 16 kHz)
    wav.mjs, bench.mjs       WAV files to mono 16 kHz; the speed measurements of bench.html / bench_wasm.py
    package.json             {"name": "lstm-edge-wasm", "type": "module", "main": "lstm-edge.mjs"}
    model/                   the model directory's manifest.json and C weight files (when one is given)
    build.json               target, compiler, flags, module sizes, exports, files

The weights are not compiled in: the module fetches ``model/manifest.json`` and ``model.int8.lec`` (or
``model.lec``) at run time and checks their SHA-256 against the manifest.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from lstm_edge.devices.c_build import NATIVE_DIR, BuildError, run_tool
from lstm_edge.runtime.manifest import Manifest, check_file

WASM_DIR = NATIVE_DIR / "wasm"
SOURCES = (NATIVE_DIR / "lstm_edge_model.c", NATIVE_DIR / "lstm_edge_kernels.c", NATIVE_DIR / "lstm_edge_audio.c",
           WASM_DIR / "lstm_edge_wasm.c")
JS_FILES = ("lstm-edge.mjs", "asr.mjs", "resample.mjs", "wav.mjs", "bench.mjs")
# -fno-trapping-math as on the other targets; WebAssembly floats are IEEE single/double without fused multiply-add,
# so the float results are those of the portable C kernels on any engine.
CFLAGS = ("--target=wasm32-wasi", "-std=c99", "-O3", "-fno-trapping-math", "-Wall", "-Wextra")
# The C API the module calls directly (the lew_* entry points export themselves).
EXPORTS = ("lem_model_from_memory", "lem_model_free", "lem_last_error", "lem_status_string", "lem_kernel_name",
           "lem_model_input_kind", "lem_model_input_width", "lem_model_output_width", "lem_model_state_size",
           "lem_model_is_int8", "lem_model_metadata", "lem_model_bytes", "lem_stream_create", "lem_stream_free",
           "lem_stream_reset", "lem_stream_push", "lem_stream_push_ids", "lem_stream_get_state",
           "lem_stream_set_state", "le_status_string", "le_last_config_error", "le_frontend_free",
           "le_frontend_reset", "le_frontend_max_frames", "le_frontend_push_float", "le_frontend_push_int16",
           "le_detector_free", "le_detector_reset", "le_detector_max_detections")
LDFLAGS = ("-mexec-model=reactor", "-Wl,--strip-all", "-Wl,-z,stack-size=262144", "-Wl,--initial-memory=4194304",
           *(f"-Wl,--export={name}" for name in EXPORTS))
APT = "clang lld wasi-libc libclang-rt-14-dev-wasm32"
VARIANTS = {"lstm_edge.wasm": ("-msimd128",), "lstm_edge_portable.wasm": ()}


def _clang() -> str:
    clang = shutil.which("clang")
    if clang is None or shutil.which("wasm-ld") is None:
        raise BuildError(f"target wasm needs clang and wasm-ld, which are not installed; install them with: "
                         f"apt-get install {APT}")
    return clang


def build_module(out: Path, name: str, extra_flags: tuple[str, ...]) -> Path:
    """Compile and link one variant of the module into ``out / name``."""
    clang = _clang()
    module = out / name
    with tempfile.TemporaryDirectory() as work:
        objects = []
        for source in SOURCES:
            obj = Path(work) / source.name.replace(".c", ".o")
            run_tool([clang, *CFLAGS, *extra_flags, "-c", "-o", str(obj), str(source)])
            objects.append(str(obj))
        try:
            run_tool([clang, *CFLAGS, *extra_flags, *LDFLAGS, "-o", str(module), *objects])
        except BuildError as error:
            if "libclang_rt.builtins-wasm32" in str(error) or "wasi" in str(error).lower():
                raise BuildError(f"{error}\nthe WebAssembly C library or compiler runtime is missing; install it "
                                 f"with: apt-get install {APT}") from None
            raise
    return module


def copy_model(model_dir: str | Path, target: Path) -> list[str]:
    """The model directory's manifest and C weight files into ``target`` (checksums checked on the way)."""
    manifest = Manifest.load(model_dir)
    if not manifest.has_file("c", "float"):
        raise BuildError(f"{model_dir} has no C weight file; add it with: lstm-edge add-c {model_dir}")
    target.mkdir(parents=True, exist_ok=True)
    names = ["manifest.json"]
    shutil.copyfile(Path(model_dir) / "manifest.json", target / "manifest.json")
    for entry in manifest.files:
        if entry.format == "c":
            shutil.copyfile(check_file(model_dir, entry), target / entry.path)
            names.append(entry.path)
    return names


def build_wasm(out_dir: str | Path, model_dir: str | Path | None = None) -> dict[str, Any]:
    """Build both module variants and the JavaScript files into ``out_dir``; returns what build.json records."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sizes = {name: build_module(out, name, flags).stat().st_size for name, flags in VARIANTS.items()}
    for name in JS_FILES:
        shutil.copyfile(WASM_DIR / name, out / name)
    (out / "package.json").write_text(json.dumps({
        "name": "lstm-edge-wasm", "version": "0.1.0", "type": "module", "main": "lstm-edge.mjs",
        "exports": {".": "./lstm-edge.mjs", "./resample": "./resample.mjs"}, "license": "Apache-2.0",
        "files": [*JS_FILES, *VARIANTS]}, indent=2) + "\n")
    if model_dir is not None:
        copy_model(model_dir, out / "model")
    record = {"target": "wasm", "compiler": run_tool([_clang(), "--version"]).splitlines()[0],
              "cflags": list(CFLAGS), "variants": {name: list(flags) for name, flags in VARIANTS.items()},
              "module_bytes": sizes,
              "files": sorted(str(p.relative_to(out)) for p in out.rglob("*")
                              if p.is_file() and p.name != "build.json")}
    (out / "build.json").write_text(json.dumps(record, indent=2) + "\n")
    return record
