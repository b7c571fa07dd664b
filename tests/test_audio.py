"""WAV reading, downmixing and resampling."""

from __future__ import annotations

import wave

import numpy as np
import pytest

from lstm_edge.runtime.audio import load_mono, read_wav, resample
from lstm_edge.runtime.errors import InputError


def write_wav(path, data: np.ndarray, rate: int, width: int = 2) -> None:
    data = np.atleast_2d(data.T).T if data.ndim == 1 else data
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(data.shape[1])
        handle.setsampwidth(width)
        handle.setframerate(rate)
        if width == 2:
            handle.writeframes((np.clip(data, -1, 1) * 32767).astype("<i2").tobytes())
        elif width == 4:
            handle.writeframes((np.clip(data, -1, 1) * (2**31 - 1)).astype("<i4").tobytes())


def test_read_16_and_32_bit(tmp_path):
    tone = 0.5 * np.sin(2 * np.pi * 440 * np.arange(1600) / 16000)
    for width in (2, 4):
        write_wav(tmp_path / f"w{width}.wav", tone, 16000, width)
        data, rate = read_wav(tmp_path / f"w{width}.wav")
        assert rate == 16000 and data.shape == (1600, 1)
        assert np.abs(data[:, 0] - tone).max() < 1e-4


def test_resample_keeps_a_tone(tmp_path):
    rate = 44100
    t = np.arange(rate) / rate
    tone = 0.5 * np.sin(2 * np.pi * 1000 * t)
    out = resample(tone.astype(np.float32), rate, 16000)
    assert out.shape == (16000,)
    expected = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000)
    assert np.abs(out[100:-100] - expected[100:-100]).max() < 1e-3


def test_load_mono_downmixes_resamples_and_says_so(tmp_path):
    rate = 8000
    t = np.arange(rate) / rate
    stereo = np.stack([0.4 * np.sin(2 * np.pi * 300 * t), 0.2 * np.sin(2 * np.pi * 300 * t)], axis=1)
    write_wav(tmp_path / "s.wav", stereo, rate)
    mono, notes = load_mono(tmp_path / "s.wav", 16000)
    assert mono.shape == (16000,)
    assert any("downmixed 2 channels" in n for n in notes) and any("8000 Hz to 16000 Hz" in n for n in notes)
    assert abs(np.abs(mono).max() - 0.3) < 0.01


def test_corrupt_and_missing_wav(tmp_path):
    (tmp_path / "bad.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    with pytest.raises(InputError, match="not a readable PCM WAV"):
        read_wav(tmp_path / "bad.wav")
    with pytest.raises(InputError, match="no such file"):
        read_wav(tmp_path / "missing.wav")
