"""The C runtime as WebAssembly: the build, its JavaScript module under Node.js, and the demo page in headless Chromium.

``lstm-edge build-c --target wasm`` (clang + wasi-libc) and ``lstm-edge web`` build the shipped keyword spotter;
Node.js runs the module's unit tests (``runtime/native/wasm/test``); Chromium (Debian's, driven by its chromedriver
through Selenium) opens the page served from localhost:

- ``?file=demo.wav`` streams the demo recording through the page's processing path (WAV parsing, 100 ms chunks,
  the WebAssembly spotter): its console lines equal ``lstm-edge listen --json`` on the same C weight file, exactly;
  then, with the server stopped, the service worker's copy runs the page again offline.
- ``?file=asr-demo.wav`` does the same for the speech recognizer (``--asr``, decoder in JavaScript): its final results
  equal ``lstm-edge transcribe --json``'s.
- ``?autostart`` takes the microphone: a fake capture device plays a demo recording (Chromium resamples it to the
  audio device's rate, the page's AudioWorklet back to 16 kHz), the page stops after the recording's duration (the
  fake device loops the file). Same keywords in the same order as ``listen --json``, times and scores close; the
  same utterances as ``transcribe --json`` at the same times (the texts of this small recognizer change with the
  resampled audio; see the tests for the tolerances).
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import subprocess
import sys
import threading
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

ROOT = Path(__file__).resolve().parent.parent
KWS_DIR = ROOT / "models" / "kws" / "export"
DEMO_WAV = ROOT / "models" / "kws" / "demo.wav"
ASR_DIR = ROOT / "models" / "asr" / "export"
ASR_WAV = ROOT / "models" / "asr" / "demo.wav"
NODE_TESTS = ROOT / "runtime" / "native" / "wasm" / "test"
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def cli(*args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "lstm_edge", *args], capture_output=True, text=True, env=ENV,
                            timeout=600)
    assert result.returncode == 0, result.stderr
    return result.stdout


def listen_json(precision: str) -> list[dict]:
    """``lstm-edge listen --json`` on the demo recording with the C runtime and the same weight file as the page."""
    out = cli("listen", str(KWS_DIR), str(DEMO_WAV), "--json", "--backend", "native", "--precision", precision)
    return [json.loads(line) for line in out.splitlines()]


def transcribe_json(precision: str) -> list[dict]:
    """``lstm-edge transcribe --json`` on the recognizer's demo recording, C runtime, the page's weight file."""
    out = cli("transcribe", str(ASR_DIR), str(ASR_WAV), "--json", "--backend", "native", "--precision", precision)
    return [json.loads(line) for line in out.splitlines()]


@pytest.fixture(scope="module")
def wasm_build(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wasm")
    record = json.loads(cli("build-c", str(KWS_DIR), "--target", "wasm", "-o", str(out)))
    assert record["target"] == "wasm" and record["compiler"].startswith("Debian clang")
    return out


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    cli("web", str(KWS_DIR), "--asr", str(ASR_DIR), "-o", str(out))
    return out


class Server:
    """The site over http://localhost (a secure context: getUserMedia and service workers work there)."""

    def __init__(self, root: Path) -> None:
        class Quiet(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=root))
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(params=["demo.wav"])
def browser(request, site) -> Iterator[tuple[webdriver.Chrome, Server]]:
    """Chromium on the site; its fake microphone plays ``request.param`` (a file of the site), looped."""
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=820,960", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                 f"--use-file-for-fake-audio-capture={site / request.param}",
                 "--autoplay-policy=no-user-gesture-required"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    server = Server(site)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)  # Debian's, no download
    try:
        yield driver, server
    finally:
        driver.quit()
        server.stop()


def wait_for(driver: webdriver.Chrome, states: tuple[str, ...], timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = driver.execute_script("return document.body.dataset.state")
        if state in states:
            return state
        time.sleep(0.1)
    status = driver.execute_script("return document.getElementById('status').textContent")
    raise AssertionError(f"the page stayed {state!r} ({status}); console: {driver.get_log('browser')}")


def console_json(driver: webdriver.Chrome) -> tuple[list[dict], list[dict]]:
    """The page's console.log lines that are detections and final transcripts, in order: Chrome reports them as
    'URL LINE:COL "JSON string"'."""
    detections, transcripts, errors = [], [], []
    for entry in driver.get_log("browser"):
        if entry["level"] == "SEVERE":
            errors.append(entry["message"])
        match = re.match(r'^\S+ \d+:\d+ (".*")$', entry["message"])
        if match:
            line = json.loads(json.loads(match.group(1)))
            if "label" in line:
                detections.append(line)
            elif "text" in line:
                transcripts.append(line)
    assert not errors, errors
    return detections, transcripts


def seconds(path: Path) -> float:
    with wave.open(str(path), "rb") as handle:
        return handle.getnframes() / handle.getframerate()


def test_build_writes_both_modules_and_the_package(wasm_build):
    record = json.loads((wasm_build / "build.json").read_text())
    assert set(record["module_bytes"]) == {"lstm_edge.wasm", "lstm_edge_portable.wasm"}
    assert record["variants"]["lstm_edge.wasm"] == ["-msimd128"]
    assert (wasm_build / "model" / "model.int8.lec").read_bytes() == (KWS_DIR / "model.int8.lec").read_bytes()
    assert json.loads((wasm_build / "package.json").read_text())["main"] == "lstm-edge.mjs"
    for name in record["module_bytes"]:
        assert (wasm_build / name).read_bytes()[:4] == b"\0asm"


def test_node_unit_tests_pass(wasm_build):
    tests = sorted(str(p) for p in NODE_TESTS.glob("*.test.mjs"))
    result = subprocess.run(["node", "--test", *tests], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "LSTM_EDGE_WASM_BUILD": str(wasm_build),
                                 "LSTM_EDGE_MODEL_DIR": str(KWS_DIR), "LSTM_EDGE_DEMO_WAV": str(DEMO_WAV),
                                 "LSTM_EDGE_ASR_DIR": str(ASR_DIR)})
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    passed = re.search(r"^# pass (\d+)$", result.stdout, re.M)
    assert passed and int(passed.group(1)) >= 19 and "# fail 0" in result.stdout


def test_web_refuses_a_model_without_c_weights(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    manifest = json.loads((KWS_DIR / "manifest.json").read_text())
    manifest["files"] = [f for f in manifest["files"] if f["format"] != "c"]
    (model / "manifest.json").write_text(json.dumps(manifest))
    for entry in manifest["files"]:
        (model / entry["path"]).write_bytes((KWS_DIR / entry["path"]).read_bytes())
    result = subprocess.run([sys.executable, "-m", "lstm_edge", "web", str(model), "-o", str(tmp_path / "site")],
                            capture_output=True, text=True, env=ENV)
    assert result.returncode != 0 and "has no C weight file; add it with: lstm-edge add-c" in result.stderr


def test_file_path_equals_listen_and_transcribe_json_and_works_offline(browser, site, tmp_path):
    driver, server = browser
    expected = listen_json("int8")
    assert len(expected) >= 3
    driver.get(f"http://localhost:{server.port}/index.html?file=demo.wav")
    assert wait_for(driver, ("done", "error")) == "done"
    assert console_json(driver)[0] == expected
    shown = driver.find_elements("css selector", "#detections li")
    assert len(shown) == len(expected) and driver.find_element("id", "last").text == expected[-1]["label"]

    expected_text = transcribe_json("int8")
    assert len(expected_text) >= 3
    before = int(driver.execute_script("return document.body.dataset.transcripts ?? '0'"))  # the recognizer heard
    driver.find_element("id", "asr-demo").click()  # the page's own button: asr-demo.wav through the same path
    assert wait_for(driver, ("done", "error")) == "done" and driver.execute_script(
        "return document.body.dataset.transcripts") == str(before + len(expected_text))
    assert console_json(driver)[1] == expected_text
    shown = driver.find_elements("css selector", "#transcripts li")[:len(expected_text)]  # newest first
    assert [item.text.split(" (")[0] for item in shown] == [r["text"] for r in reversed(expected_text)]
    driver.save_screenshot(str(tmp_path / "web-demo.png"))  # docs/web-demo.png is one of these
    assert (tmp_path / "web-demo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # offline: the service worker's cache serves the whole site once the server is gone
    driver.execute_async_script("navigator.serviceWorker.ready.then(() => arguments[arguments.length - 1]())")
    server.stop()
    driver.get(f"http://localhost:{server.port}/index.html?file=demo.wav&precision=int8")
    assert wait_for(driver, ("done", "error")) == "done"
    assert console_json(driver)[0] == expected


def capture_offset(heard: list[dict], expected: list[dict]) -> float:
    """How much earlier the page heard the recording than the file has it: the fake device starts capturing a
    little way into the file (0.01-0.07 s seen; more on a loaded machine; resampling may delay a little). The
    median start difference over the results of the same label/text, paired in order."""
    key = "label" if expected and "label" in expected[0] else "text"
    pairs = [(mine, theirs) for mine, theirs in zip(heard, expected) if mine[key] == theirs[key]] or list(
        zip(heard, expected))
    offset = float(np.median([theirs["start"] - mine["start"] for mine, theirs in pairs])) if pairs else 0.0
    assert -0.1 <= offset <= 0.5, f"capture started {offset:.3f} s into the file; expected -0.1 to 0.5 s"
    return offset


def test_microphone_path_hears_the_same_keywords(browser, tmp_path):
    """Float weights: the int8 model's scores sit closer to the threshold on this recording (3 keywords; float
    finds 4). After the capture offset, ends within 0.1 s (ten hops: Chromium resamples 16 kHz to the device
    rate and the page back, so 10 ms frames fall on other samples), spans overlapping, scores within 0.1 (seen:
    0.07 at most).
    Every keyword heard is one of ``listen --json``'s; each of its keywords scored clearly above the threshold (by
    0.05) is heard; one at the threshold ("left", 0.852 at 0.85) may go either way."""
    driver, server = browser
    expected = listen_json("float")
    threshold = json.loads((KWS_DIR / "manifest.json").read_text())["detector"]["threshold"]
    driver.get(f"http://localhost:{server.port}/index.html?autostart&precision=float&seconds={seconds(DEMO_WAV)}")
    assert wait_for(driver, ("done", "error"), timeout=90) == "done"
    heard = console_json(driver)[0]
    offset = capture_offset(heard, expected)

    def same(mine: dict, theirs: dict) -> bool:
        # the start is the onset look-back from where the smoothed score rose, which moves with the score's shape
        # for a keyword near the threshold (seen: "left" at 0.898 instead of 0.852): the two spans must overlap
        return (mine["label"] == theirs["label"] and mine["start"] + offset < theirs["end"]
                and theirs["start"] < mine["end"] + offset and abs(mine["end"] + offset - theirs["end"]) <= 0.1
                and abs(mine["score"] - theirs["score"]) <= 0.1)

    assert all(any(same(mine, theirs) for theirs in expected) for mine in heard), (heard, expected, offset)
    clear = [theirs for theirs in expected if theirs["score"] >= threshold + 0.05]
    assert len(clear) >= 3 and all(any(same(mine, theirs) for mine in heard) for theirs in clear), (heard, expected)
    rate = driver.execute_script("return document.getElementById('engine').dataset.inputRate")
    assert rate is not None and int(rate) > 0  # the worklet reported the device rate it resampled from
    driver.save_screenshot(str(tmp_path / "web-demo-microphone.png"))


@pytest.mark.parametrize("browser", ["asr-demo.wav"], indirect=True)
def test_microphone_path_transcribes_the_same_utterances(browser):
    """The same number of final results at the same times (overlapping spans, ends within 0.1 s, after the capture
    offset) as ``transcribe --json``. The texts are
    not compared one for one: this 26-character recognizer changes words with the resampled audio (seen over
    three runs: "thirty eight" heard as "two two eight", "pause the music" as "play music"), as its float and
    int8 weights already disagree on one utterance of this recording. At least half must match."""
    driver, server = browser
    expected = transcribe_json("float")
    driver.get(f"http://localhost:{server.port}/index.html?autostart&precision=float&seconds={seconds(ASR_WAV)}")
    assert wait_for(driver, ("done", "error"), timeout=90) == "done"
    heard = console_json(driver)[1]
    assert len(heard) == len(expected) >= 3, (heard, expected)
    offset = capture_offset(heard, expected)
    for mine, theirs in zip(heard, expected):  # overlapping spans, ends within 0.1 s (onsets move, as above)
        assert mine["start"] + offset < theirs["end"] and theirs["start"] < mine["end"] + offset, (mine, theirs)
        assert abs(mine["end"] + offset - theirs["end"]) <= 0.1, (mine, theirs, offset)
    assert sum(mine["text"] == theirs["text"] for mine, theirs in zip(heard, expected)) * 2 >= len(expected)
