"""SpeechRecognizer and ``lstm-edge transcribe`` on the shipped model, with speech synthesised in the test by a
voice of the test split (never seen in training)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.io import wavfile

from lstm_edge.recipes.asr.synth import Request, synthesize
from lstm_edge.runtime.asr import IdleReset, RecognizerSettings, SpeechRecognizer
from lstm_edge.runtime.errors import ManifestError
from lstm_edge.runtime.model import StreamingModel

MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / "asr" / "export"
KWS_DIR = Path(__file__).resolve().parent.parent / "models" / "kws" / "export"
SENTENCES = {"call four two seven": "en-us-nyc+f3", "set the volume to thirty": "en-gb-x-rp+m2"}
RATE = 16000


def spoken(text: str, voice: str, lead: float = 0.4, trail: float = 1.2) -> np.ndarray:
    speech = synthesize(Request("espeak", voice, text, rate=160, pitch=50))
    speech = speech * (0.5 / np.max(np.abs(speech)))
    audio = np.concatenate([np.zeros(int(lead * RATE)), speech, np.zeros(int(trail * RATE))])
    audio += np.random.default_rng(0).normal(size=audio.size) * 1e-3
    return np.round(audio * 32767).astype(np.int16)


@pytest.fixture(scope="module")
def recognizer() -> SpeechRecognizer:
    return SpeechRecognizer(StreamingModel.load(MODEL_DIR, backend="onnx", precision="float"))


@pytest.fixture(scope="module")
def wav_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("asr") / "call.wav"
    wavfile.write(path, RATE, spoken("call four two seven", SENTENCES["call four two seven"]))
    return path


@pytest.mark.parametrize("text", sorted(SENTENCES))
def test_recognizes_unseen_voice(recognizer: SpeechRecognizer, text: str) -> None:
    results = recognizer.transcribe(spoken(text, SENTENCES[text]))
    assert [r.text for r in results] == [text]
    words = results[0].words
    assert [w.word for w in words] == text.split()
    assert 0.3 < words[0].start < words[-1].end < 0.4 + len(text) * 0.12
    assert all(a.end <= b.start + 1e-6 for a, b in zip(words, words[1:]))
    assert results[0].endpoint == "after_speech"  # ended by trailing silence, not by the end of the input


def test_int8_tflite_gives_the_same_words() -> None:
    recognizer = SpeechRecognizer(StreamingModel.load(MODEL_DIR, backend="litert", precision="int8"))
    assert [r.text for r in recognizer.transcribe(spoken("call four two seven", "en-us-nyc+f3"))] == [
        "call four two seven"]


def test_final_text_does_not_depend_on_chunking(recognizer: SpeechRecognizer) -> None:
    audio = np.concatenate([spoken("set the volume to thirty", "en-gb-x-rp+m2"),
                            spoken("call four two seven", "en-us-nyc+f3")])
    reference = [r.text for r in recognizer.transcribe(audio)]
    assert reference == ["set the volume to thirty", "call four two seven"]
    for chunk_seconds in (0.013, 0.37, 1.0):
        assert [r.text for r in recognizer.transcribe(audio, chunk_seconds=chunk_seconds)] == reference
    assert [r.text for r in recognizer.transcribe([audio])] == reference


def test_partials_grow_towards_the_final(recognizer: SpeechRecognizer) -> None:
    results = recognizer.transcribe(spoken("call four two seven", "en-us-nyc+f3"), partial=True)
    partials = [r.text for r in results if not r.final]
    assert len(partials) >= 3 and results[-1].final and partials[-1] == results[-1].text


def test_silence_and_noise_give_no_output(recognizer: SpeechRecognizer) -> None:
    rng = np.random.default_rng(1)
    assert recognizer.transcribe(np.zeros(5 * RATE, dtype=np.int16), partial=True) == []
    noise = np.round(rng.normal(size=5 * RATE) * 30).astype(np.int16)
    assert recognizer.transcribe(noise) == []


@pytest.mark.parametrize("text", sorted(SENTENCES))
def test_speech_after_a_long_silence_decodes_as_after_a_short_one(recognizer: SpeechRecognizer, text: str) -> None:
    # 1.9 s of quiet before speech: without the idle reset the LSTM would have drifted over it (the 2 s silence
    # rule resets it too late); with it, the words come out the same, timed on the stream's own clock.
    short = recognizer.transcribe(spoken(text, SENTENCES[text], lead=0.4))
    late = recognizer.transcribe(spoken(text, SENTENCES[text], lead=1.9))
    assert [r.text for r in late] == [r.text for r in short] == [text]
    for a, b in zip(short[0].words, late[0].words):
        assert b.start - a.start == pytest.approx(1.5, abs=0.05) and b.end - a.end == pytest.approx(1.5, abs=0.05)


def test_idle_reset_settings_are_checked() -> None:
    extra = StreamingModel.load(MODEL_DIR, backend="onnx").manifest.extra
    assert RecognizerSettings.from_manifest(extra).idle_reset == IdleReset(0.75, 0.25)
    asr = {k: v for k, v in extra["asr"].items() if k != "idle_reset"}
    assert RecognizerSettings.from_manifest({"asr": asr}).idle_reset == IdleReset()
    assert RecognizerSettings.from_manifest({"asr": dict(asr, idle_reset=None)}).idle_reset is None
    for bad in ({"after_seconds": 0.5}, {"after_seconds": 0.2, "lookback_seconds": 0.5},
                {"after_seconds": "0.5", "lookback_seconds": 0.2}, [0.5, 0.2]):
        with pytest.raises(ManifestError, match="idle_reset"):
            RecognizerSettings.from_manifest({"asr": dict(asr, idle_reset=bad)})


def test_a_model_without_asr_settings_is_refused() -> None:
    with pytest.raises(ManifestError, match="extra.asr"):
        SpeechRecognizer(StreamingModel.load(KWS_DIR, backend="onnx"))


def _cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lstm_edge", "transcribe", str(MODEL_DIR), *args],
                          capture_output=True, input=stdin, timeout=120)


def test_cli_text_and_json(wav_path: Path) -> None:
    plain = _cli(str(wav_path))
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.decode().splitlines() == ["call four two seven"]
    as_json = _cli(str(wav_path), "--json", "--partial", "--precision", "int8")
    assert as_json.returncode == 0, as_json.stderr
    lines = [json.loads(line) for line in as_json.stdout.decode().splitlines()]
    finals = [line for line in lines if "text" in line]
    assert [f["text"] for f in finals] == ["call four two seven"]
    assert set(finals[0]) == {"text", "start", "end", "words"}
    assert [w["word"] for w in finals[0]["words"]] == ["call", "four", "two", "seven"]
    assert any("partial" in line for line in lines[: lines.index(finals[0])])


def test_cli_reads_pcm_from_stdin(wav_path: Path) -> None:
    _, pcm = wavfile.read(wav_path)
    result = _cli("-", "--json", stdin=pcm.astype("<i2").tobytes())
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["text"] for line in result.stdout.decode().splitlines()] == ["call four two seven"]


def test_cli_bad_input(tmp_path: Path) -> None:
    not_wav = tmp_path / "notes.wav"
    not_wav.write_text("hello")
    result = _cli(str(not_wav))
    assert result.returncode == 1 and b"not a readable" in result.stderr and b"WAV" in result.stderr
    empty = _cli("-", stdin=b"")
    assert empty.returncode == 0 and empty.stdout == b""
    odd = _cli("-", stdin=b"\x00\x01\x02")
    assert odd.returncode == 1 and b"even number of bytes" in odd.stderr
    missing = _cli(str(tmp_path / "absent.wav"))
    assert missing.returncode == 1 and b"no such file" in missing.stderr
