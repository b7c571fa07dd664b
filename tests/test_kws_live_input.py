"""``lstm-edge listen MODEL -``: raw PCM piped into a real subprocess, detections printed while the pipe is open."""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time

import numpy as np
import pytest

from lstm_edge.recipes.kws.model import shipped_model_dir
from lstm_edge.runtime.audio import iter_pcm_s16le, load_mono
from lstm_edge.runtime.errors import LstmEdgeError
from lstm_edge.runtime.frontend import LogMelConfig
from lstm_edge.runtime.kws import KeywordSpotter

ASSETS = shipped_model_dir()
EXPORTED = ASSETS / "export"


def _listen(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "lstm_edge.cli", "listen", str(EXPORTED), *args],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))


def _demo_pcm() -> bytes:
    audio, _ = load_mono(ASSETS / "demo.wav", 16000)
    return np.round(np.clip(audio, -1, 32767 / 32768) * 32768).astype("<i2").tobytes()


def _read_line(process: subprocess.Popen, timeout_s: float) -> bytes:
    """One stdout line of a running process, or b"" when none came within the timeout."""
    selector = selectors.DefaultSelector()
    assert process.stdout is not None
    selector.register(process.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if selector.select(timeout=0.2):
            return process.stdout.readline()
    return b""


def test_listen_from_stdin_prints_detections_while_the_pipe_is_still_open():
    pcm = _demo_pcm()
    process = _listen("-", "--json", "--backend", "onnx")
    assert process.stdin is not None
    try:
        process.stdin.write(pcm)
        process.stdin.flush()
        # The pipe stays open: the first detection must arrive now, not at end of input.
        first = _read_line(process, timeout_s=60)
        assert first, "no detection printed while the input was still open"
        assert process.poll() is None
        process.stdin.close()
        assert process.stdout is not None and process.stderr is not None
        rest, errors = process.stdout.read(), process.stderr.read().decode()
        process.wait(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, errors
    piped = [json.loads(line) for line in (first + rest).decode().splitlines()]
    from_file = subprocess.run([sys.executable, "-m", "lstm_edge.cli", "listen", str(EXPORTED),
                                str(ASSETS / "demo.wav"), "--json", "--backend", "onnx"],
                               capture_output=True, text=True, timeout=120)
    assert from_file.returncode == 0, from_file.stderr
    assert piped == [json.loads(line) for line in from_file.stdout.splitlines()]
    assert len(piped) >= 4  # the demo's detections at the manifest threshold (tests/test_kws.py)
    truth = {event["label"] for event in json.loads((ASSETS / "demo.json").read_text())["events"]}
    assert {d["label"] for d in piped} <= truth | {"_unknown_"}


def test_listen_needs_an_input_and_refuses_a_file_with_mic():
    result = subprocess.run([sys.executable, "-m", "lstm_edge.cli", "listen", str(EXPORTED)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "expected an input" in result.stderr and "Traceback" not in result.stderr
    result = subprocess.run([sys.executable, "-m", "lstm_edge.cli", "listen", str(EXPORTED), "x.wav", "--mic"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "both a file and --mic" in result.stderr


class _Trickle:
    """A pipe that hands out a few bytes per read (odd sizes), like a slow arecord."""

    def __init__(self, data: bytes, step: int) -> None:
        self.data, self.step = data, step

    def read1(self, size: int) -> bytes:
        piece, self.data = self.data[:min(size, self.step)], self.data[min(size, self.step):]
        return piece


def test_raw_pcm_chunks_are_whole_whatever_the_pipe_delivers():
    samples = (np.arange(1003) - 500).astype("<i2")
    data = samples.tobytes() + b"\x01"  # half a sample at the end: every whole one first, then an error
    chunks = []
    with pytest.raises(ValueError, match="even number of bytes"):
        for chunk in iter_pcm_s16le(_Trickle(data, step=7), chunk_samples=160):  # type: ignore[arg-type]
            chunks.append(chunk)
    assert [c.size for c in chunks] == [160] * 6 + [43]
    np.testing.assert_array_equal(np.concatenate(chunks), samples.astype(np.float32) / 32768.0)
    with pytest.raises(ValueError, match="expected a positive number"):
        list(iter_pcm_s16le(_Trickle(data, 7), 0))  # type: ignore[arg-type]


def test_a_spotter_without_a_model_takes_posteriors_only():
    spotter = KeywordSpotter(None, labels=["_silence_", "_unknown_", "go"],
                             frontend=LogMelConfig().to_dict())
    stream = spotter.create_stream()
    posteriors = np.tile([0.9, 0.05, 0.05], (300, 1))
    posteriors[100:160] = [0.0, 0.02, 0.98]
    found = stream.push_posteriors(posteriors) + stream.flush()
    assert [d.label for d in found] == ["go"] and 0.95 < found[0].start + 0.5 and found[0].end < 2.0
    with pytest.raises(LstmEdgeError, match="no model"):
        stream.push(np.zeros(1600, np.float32))
    with pytest.raises(ValueError, match=r"expected \[T, 3\]"):
        stream.push_posteriors(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="a model, or labels and a frontend"):
        KeywordSpotter(None)
