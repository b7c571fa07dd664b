"""``lstm-edge web MODEL_DIR [--asr ASR_DIR] -o site/``: a static site that spots keywords (and transcribes speech)
from the microphone, offline.

The site is the WebAssembly build of the C runtime (``wasm_build``), the page of ``devices/web`` (HTML, an ES
module, an AudioWorklet that resamples the microphone to 16 kHz, a service worker and a web app manifest) and the
model directories' manifests and C weight files: the keyword spotter's, and with ``--asr`` a speech recognizer's
(its decoder runs in JavaScript, ``asr.mjs``). Any static file server serves it (``python -m http.server``);
browsers allow the microphone on ``https://`` and ``http://localhost`` pages only. Layout::

    index.html app.mjs style.css capture-worklet.js sw.js app.webmanifest icon.svg
    lstm-edge.mjs asr.mjs resample.mjs wav.mjs bench.mjs lstm_edge.wasm lstm_edge_portable.wasm package.json
    bench.html               speed on the device: model pushes and whole pipelines (benchmarks/bench_wasm.py)
    models/kws/manifest.json models/kws/model.int8.lec models/kws/model.lec
    models/asr/...           the same for the speech recognizer (--asr)
    demo.wav, asr-demo.wav   the models' demo recordings, when there are (the page's demo buttons, ?file=demo.wav)
    site.json                where the page finds the models and the demo recordings
    build.json               what was built (wasm_build's record) and the site's files
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from lstm_edge.devices.c_build import BuildError
from lstm_edge.devices.wasm_build import build_wasm, copy_model
from lstm_edge.runtime.errors import expected_got
from lstm_edge.runtime.manifest import Manifest

WEB_DIR = Path(__file__).resolve().parent / "web"
PAGE_FILES = ("index.html", "app.mjs", "style.css", "capture-worklet.js", "app.webmanifest", "icon.svg",
              "bench.html")


def find_demo_audio(model_dir: Path) -> Path | None:
    """``demo.wav`` in the model directory or the folder above it (the shipped models keep it there)."""
    for folder in (model_dir, model_dir.parent):
        if (folder / "demo.wav").is_file():
            return folder / "demo.wav"
    return None


def build_site(model_dir: str | Path, out_dir: str | Path, audio: str | Path | None = None,
               asr_dir: str | Path | None = None) -> dict[str, Any]:
    """Write the site for the keyword spotter in ``model_dir`` (and the speech recognizer in ``asr_dir``) into
    ``out_dir``; returns what build.json records."""
    model_dir = Path(model_dir)
    manifest = Manifest.load(model_dir)
    if not manifest.labels or manifest.frontend is None:
        raise BuildError(expected_got(f"{model_dir}", "a keyword-spotting model directory (labels and an audio "
                                      "frontend in manifest.json)", "a model without them"))
    out = Path(out_dir)
    record = build_wasm(out)
    for name in PAGE_FILES:
        shutil.copyfile(WEB_DIR / name, out / name)
    copy_model(model_dir, out / "models" / "kws")
    demo = Path(audio) if audio is not None else find_demo_audio(model_dir)
    if demo is not None:
        if not demo.is_file():
            raise BuildError(expected_got("--audio", "a WAV file", str(demo)))
        shutil.copyfile(demo, out / "demo.wav")
    settings: dict[str, Any] = {"kws": "models/kws/", "demo": "demo.wav" if demo else None}
    if asr_dir is not None:
        asr_dir = Path(asr_dir)
        asr = Manifest.load(asr_dir)
        if not isinstance(asr.extra, dict) or "asr" not in asr.extra or asr.frontend is None:
            raise BuildError(expected_got(f"--asr {asr_dir}", "a speech-recognizer model directory (extra.asr and "
                                          "an audio frontend in manifest.json)", "a model without them"))
        copy_model(asr_dir, out / "models" / "asr")
        asr_demo = find_demo_audio(asr_dir)
        if asr_demo is not None:
            shutil.copyfile(asr_demo, out / "asr-demo.wav")
        settings.update(asr="models/asr/", asr_demo="asr-demo.wav" if asr_demo else None)
    (out / "site.json").write_text(json.dumps(settings) + "\n")
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*")
                   if p.is_file() and p.name not in ("build.json", "sw.js"))
    digest = hashlib.sha256()
    for name in files:
        digest.update(name.encode() + b"\0" + (out / name).read_bytes())
    worker = (WEB_DIR / "sw.js").read_text()
    worker = worker.replace("__VERSION__", digest.hexdigest()[:16]).replace("__FILES__", json.dumps(["./", *files]))
    (out / "sw.js").write_text(worker)
    record = {**record, "site": {"model": str(model_dir), "asr": str(asr_dir) if asr_dir else None,
                                 "demo_audio": str(demo) if demo else None,
                                 "files": [*files, "sw.js"],
                                 "bytes": sum((out / name).stat().st_size for name in [*files, "sw.js"])}}
    (out / "build.json").write_text(json.dumps(record, indent=2) + "\n")
    return record
