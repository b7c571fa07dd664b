"""WAV reading, downmixing and resampling."""

from __future__ import annotations

import struct
import wave
from pathlib import Path

import numpy as np
import pytest

from lstm_edge.runtime.audio import iter_mono, load_mono, read_wav, resample
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
    with pytest.raises(InputError, match="not a readable WAV"):
        read_wav(tmp_path / "bad.wav")
    with pytest.raises(InputError, match="no such file"):
        read_wav(tmp_path / "missing.wav")


def write_raw_wav(path, payload: bytes, *, code: int, channels: int, rate: int, bits: int,
                  extensible_code: int | None = None) -> None:
    """A WAV file written byte by byte (the ``wave`` module cannot write float or extensible files)."""
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", code, channels, rate, rate * block, block, bits)
    if extensible_code is not None:
        guid = struct.pack("<H", extensible_code) + b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
        fmt += struct.pack("<HHI", 22, bits, 0) + guid
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(payload)) + payload
    Path(path).write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


TONE = 0.5 * np.sin(2 * np.pi * 440 * np.arange(1600) / 16000)


def pcm24(values: np.ndarray) -> bytes:
    ints = np.round(values * (2**23 - 1)).astype("<i4")
    return ints.view(np.uint8).reshape(-1, 4)[:, :3].tobytes()


@pytest.mark.parametrize("kind", ["float32", "float64", "ext-float32", "ext-pcm16", "ext-pcm24"])
def test_reads_float_and_extensible_wav(tmp_path, kind):
    path = tmp_path / f"{kind}.wav"
    if kind == "float32":
        write_raw_wav(path, TONE.astype("<f4").tobytes(), code=3, channels=1, rate=16000, bits=32)
    elif kind == "float64":
        write_raw_wav(path, TONE.astype("<f8").tobytes(), code=3, channels=1, rate=16000, bits=64)
    elif kind == "ext-float32":
        write_raw_wav(path, TONE.astype("<f4").tobytes(), code=0xFFFE, channels=1, rate=16000, bits=32,
                      extensible_code=3)
    elif kind == "ext-pcm16":
        write_raw_wav(path, (TONE * 32767).astype("<i2").tobytes(), code=0xFFFE, channels=1, rate=16000, bits=16,
                      extensible_code=1)
    else:
        write_raw_wav(path, pcm24(TONE), code=0xFFFE, channels=1, rate=16000, bits=24, extensible_code=1)
    data, rate = read_wav(path)
    assert rate == 16000 and data.shape == (1600, 1) and data.dtype == np.float32
    assert np.abs(data[:, 0] - TONE).max() < 1e-4


@pytest.mark.parametrize("rate", [1, 2, 999, 384001, 2**31 - 1])
def test_sample_rates_outside_the_sane_range_are_refused(tmp_path, rate):
    path = tmp_path / "rate.wav"
    write_raw_wav(path, (TONE * 32767).astype("<i2").tobytes(), code=1, channels=1, rate=rate, bits=16)
    with pytest.raises(InputError, match=f"sample rate: expected 1000 to 384000 Hz, got {rate} Hz"):
        read_wav(path)
    with pytest.raises(InputError, match="sample rate"):
        list(iter_mono(path, 16000, 1600))


def test_other_encodings_are_refused_with_expected_vs_got(tmp_path):
    write_raw_wav(tmp_path / "alaw.wav", b"\x00" * 100, code=6, channels=1, rate=8000, bits=8)
    with pytest.raises(InputError, match="expected PCM .* got format code 6"):
        read_wav(tmp_path / "alaw.wav")
    write_raw_wav(tmp_path / "f16.wav", b"\x00" * 100, code=3, channels=1, rate=8000, bits=16)
    with pytest.raises(InputError, match=r"bits per sample of float WAV: expected one of \(32, 64\), got 16"):
        read_wav(tmp_path / "f16.wav")


def test_iter_mono_streams_the_same_samples_as_load_mono(tmp_path):
    rate = 44100
    t = np.arange(3 * rate) / rate
    stereo = np.stack([0.4 * np.sin(2 * np.pi * 300 * t), 0.2 * np.sin(2 * np.pi * 500 * t)], axis=1)
    write_wav(tmp_path / "s.wav", stereo, rate)
    chunks = list(iter_mono(tmp_path / "s.wav", 16000, 1600))
    assert all(len(c) == 1600 for c in chunks[:-1]) and 0 < len(chunks[-1]) <= 1600
    whole, _ = load_mono(tmp_path / "s.wav", 16000)
    streamed = np.concatenate(chunks)
    assert streamed.shape == whole.shape and abs(len(streamed) - 48000) <= 1
    np.testing.assert_allclose(streamed, whole, atol=1e-6)
    expected = (0.4 * np.sin(2 * np.pi * 300 * np.arange(48000) / 16000)
                + 0.2 * np.sin(2 * np.pi * 500 * np.arange(48000) / 16000)) / 2
    assert np.abs(streamed[200:-200] - expected[200:-200]).max() < 2e-3


def test_iter_mono_reads_the_file_lazily(tmp_path):
    write_wav(tmp_path / "a.wav", np.zeros(16000 * 5), 16000)
    chunks = iter_mono(tmp_path / "a.wav", 16000, 1600)
    first = next(chunks)
    assert first.shape == (1600,)
    assert sum(1 for _ in chunks) == 49


def test_write_wav_round_trips_and_refuses_other_samples(tmp_path):
    from lstm_edge.runtime.audio import read_wav, write_wav

    pcm = (np.arange(-300, 300) * 50).astype(np.int16)
    write_wav(tmp_path / "a.wav", pcm, 16000)
    samples, rate = read_wav(tmp_path / "a.wav")
    assert rate == 16000 and np.allclose(samples.reshape(-1), pcm / 32768.0)
    with pytest.raises(ValueError, match="mono int16"):
        write_wav(tmp_path / "b.wav", pcm.astype(np.float32), 16000)
