"""The C runtime as WebAssembly in headless Chromium and in Node.js, next to the same C built natively.

For the shipped keyword spotter and speech recognizer, int8 and float weights:

* model push, microseconds per call of 1 and 10 frames: ``bench.mjs`` (the site's ``bench.html`` in Chromium, the
  same module in Node.js) and the native C library through the Python ``native`` backend (its C extension push);
* whole pipeline over the demo recording in 100 ms pushes, as real-time factor (processing / audio seconds):
  keyword spotter = frontend + model + detector (native: the C program ``lstm-edge-listen``, all C, over the
  recording repeated 10 times); recognizer = frontend + model + the manifest's decoder (WebAssembly: JavaScript
  decoder; native: C model, frontend and decoder in Python).

Targets (issue): keyword spotter RTF <= 0.01 in Chromium, recognizer <= 0.1. One run, side by side, on whatever
load the machine has (recorded). Run: python benchmarks/bench_wasm.py [--rounds N]
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from _common import interleaved_medians, save

ROOT = Path(__file__).resolve().parent.parent
KWS_DIR = ROOT / "models" / "kws" / "export"
ASR_DIR = ROOT / "models" / "asr" / "export"


def node_run(site: Path, rounds: int) -> dict:
    script = ("const b = await import('./bench.mjs'); console.log(JSON.stringify(await b.benchmark({kws: "
              f"'models/kws/', asr: 'models/asr/', kwsAudio: 'demo.wav', asrAudio: 'asr-demo.wav', rounds: {rounds}"
              "})));")
    out = subprocess.run(["node", "--input-type=module", "-e", script], cwd=site, capture_output=True, text=True,
                         check=True, timeout=900)
    return json.loads(out.stdout)


def chromium_run(site: Path, rounds: int) -> dict:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=site))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        driver.get(f"http://localhost:{server.server_address[1]}/bench.html?rounds={rounds}")
        deadline = time.monotonic() + 900
        while driver.execute_script("return document.body.dataset.state") == "running":
            if time.monotonic() > deadline:
                raise TimeoutError("bench.html did not finish in 15 minutes")
            time.sleep(0.5)
        if driver.execute_script("return document.body.dataset.state") != "done":
            raise RuntimeError(driver.find_element("id", "status").text)
        return json.loads(driver.find_element("id", "result").text)
    finally:
        driver.quit()
        server.shutdown()


def native_run(work: Path, repeats: int) -> dict:
    from lstm_edge.devices.c_build import build_c
    from lstm_edge.runtime import StreamingModel
    from lstm_edge.runtime.asr import SpeechRecognizer
    from lstm_edge.runtime.audio import load_mono

    out: dict = {}
    for name, model_dir in (("kws", KWS_DIR), ("asr", ASR_DIR)):
        entry: dict = {"push_us": {}, "rtf": {}}
        for precision in ("int8", "float"):
            model = StreamingModel.load(model_dir, backend="native", precision=precision)
            width = model.manifest.inputs[0].shape[-1]
            streams = {t: model.create_stream() for t in (1, 10)}
            inputs = {t: np.sin(np.arange(t * width, dtype=np.float32) * 0.37).reshape(t, width) for t in (1, 10)}
            times = interleaved_medians({f"T={t}": functools.partial(streams[t].push, inputs[t]) for t in (1, 10)},
                                        repeats)
            entry["push_us"][precision] = times
            entry["engine"] = model.describe().rsplit(",", 1)[0]  # without the precision
        out[name] = entry
    build = build_c("native", work / "native", KWS_DIR)
    pcm, _ = load_mono(ROOT / "models" / "kws" / "demo.wav", 16000)
    audio = np.tile((pcm * 32768).round().astype("<i2") if pcm.dtype != np.int16 else pcm, 10)
    for precision in ("int8", "float"):
        samples = []
        for _ in range(5):
            began = time.perf_counter()
            subprocess.run([str(work / "native" / "lstm-edge-listen"), "--precision", precision, str(work / "native")],
                           input=audio.tobytes(), capture_output=True, check=True)
            samples.append(time.perf_counter() - began)
        out["kws"]["rtf"][precision] = float(np.median(samples)) / (len(audio) / 16000)
    out["kws"]["pipeline"] = f"lstm-edge-listen ({build['compiler']}), whole C program incl. start-up"
    speech, _ = load_mono(ROOT / "models" / "asr" / "demo.wav", 16000)
    for precision in ("int8", "float"):
        recognizer = SpeechRecognizer(StreamingModel.load(ASR_DIR, backend="native", precision=precision))
        samples = []
        for _ in range(3):
            began = time.perf_counter()
            recognizer.transcribe(speech)
            samples.append(time.perf_counter() - began)
        out["asr"]["rtf"][precision] = float(np.median(samples)) / (len(speech) / 16000)
    out["asr"]["pipeline"] = "C model (native backend), numpy frontend, Python decoder"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--repeats", type=int, default=3000, help="native pushes per measurement")
    args = parser.parse_args()
    from lstm_edge.devices.web_site import build_site

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        build_site(KWS_DIR, work / "site", asr_dir=ASR_DIR)
        load_before = os.getloadavg()
        results = {"chromium": chromium_run(work / "site", args.rounds), "node": node_run(work / "site", args.rounds),
                   "native": native_run(work, args.repeats)}
        load_after = os.getloadavg()

    print(f"load average before/after: {load_before[0]:.1f} / {load_after[0]:.1f} (2 cores)")
    print(f"{'':12s} {'push T=1 us':>28s} {'push T=10 us':>28s} {'pipeline RTF':>30s}")
    print(f"{'':12s} {'chromium/node/native':>28s} {'chromium/node/native':>28s} {'chromium/node/native':>30s}")
    for name in ("kws", "asr"):
        for precision in ("int8", "float"):
            cells = []
            for key in ("T=1", "T=10"):
                values = [results[e][name]["push_us"][precision][key] for e in ("chromium", "node", "native")]
                cells.append(f"{values[0]:7.1f} {values[1]:7.1f} {values[2]:6.1f} x{values[0] / values[2]:4.1f}")
            rtf = [results[e][name]["rtf"][precision] for e in ("chromium", "node", "native")]
            cells.append(f"{rtf[0]:.4f} {rtf[1]:.4f} {rtf[2]:.4f} x{rtf[0] / rtf[2]:5.1f}")
            print(f"{name} {precision:7s} " + "  ".join(f"{c:>28s}" for c in cells))
    for name, target in (("kws", 0.01), ("asr", 0.1)):
        rtf = results["chromium"][name]["rtf"]["int8"]
        print(f"{name} int8 in Chromium: RTF {rtf:.4f} (target <= {target}: {'met' if rtf <= target else 'NOT met'})")
    path = save("wasm", {"rounds": args.rounds, "load_average": {"before": load_before, "after": load_after},
                         **results})
    print(f"saved {path}")


if __name__ == "__main__":
    main()
