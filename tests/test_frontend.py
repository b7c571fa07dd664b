"""Tests of the numpy log-mel frontend: chunking invariance, dtype handling, a librosa oracle, input validation."""

from __future__ import annotations

import json
import subprocess
import wave

import librosa
import numpy as np
import pytest

from lstm_edge.runtime.errors import InputError
from lstm_edge.runtime.frontend import FrontendConfigError, LogMelConfig, LogMelFrontend

STREAM_VS_WHOLE_ATOL = 1e-6
# Log-mel difference allowed against librosa on bins whose mel power is well above float32 noise.
LIBROSA_LOG_ATOL = 1e-4
LIBROSA_POWER_FLOOR = 1e-6
CHUNK_SIZES = (0, 1, 7, 159, 160, 161, 5000)


@pytest.fixture(scope="module")
def frontend() -> LogMelFrontend:
    return LogMelFrontend(LogMelConfig())


@pytest.fixture(scope="module")
def speech_pcm(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """About 3 s of espeak-ng speech at 16 kHz, int16, with some noise added."""
    out_dir = tmp_path_factory.mktemp("speech")
    raw_wav = out_dir / "raw.wav"
    wav_16k = out_dir / "speech16k.wav"
    subprocess.run(
        ["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(raw_wav), "yes no up down left right on off stop go"],
        check=True,
    )
    subprocess.run(["sox", str(raw_wav), "-r", "16000", "-c", "1", "-b", "16", str(wav_16k)], check=True)
    with wave.open(str(wav_16k), "rb") as wav_file:
        if wav_file.getframerate() != 16000 or wav_file.getsampwidth() != 2:
            raise RuntimeError(f"sox output: expected 16 kHz int16, got {wav_file.getframerate()} Hz")
        pcm = np.frombuffer(wav_file.readframes(wav_file.getnframes()), dtype=np.int16)
    rng = np.random.default_rng(0)
    noisy = pcm.astype(np.float64) + rng.normal(0.0, 30.0, pcm.shape)
    return np.clip(noisy, -32768, 32767).astype(np.int16)


def _stream_in_chunks(frontend: LogMelFrontend, pcm: np.ndarray, chunk_sizes: list[int]) -> np.ndarray:
    stream = frontend.create_stream()
    outputs = []
    position = 0
    for size in chunk_sizes:
        out = stream.push(pcm[position : position + size])
        if out.dtype != np.float32 or out.ndim != 2 or out.shape[1] != frontend.n_mels:
            raise AssertionError(f"push output: expected float32 [n, {frontend.n_mels}], got {out.dtype} {out.shape}")
        outputs.append(out)
        position += size
    outputs.append(stream.push(pcm[position:]))
    return np.concatenate(outputs, axis=0)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_any_chunking_equals_whole_signal(frontend: LogMelFrontend, speech_pcm: np.ndarray, seed: int) -> None:
    rng = np.random.default_rng(seed)
    chunk_sizes = [int(rng.choice(CHUNK_SIZES)) for _ in range(200)]
    whole = frontend.compute(speech_pcm)
    streamed = _stream_in_chunks(frontend, speech_pcm, chunk_sizes)
    assert whole.shape == (frontend.config.n_frames(speech_pcm.shape[0]), 40)
    assert streamed.shape == whole.shape
    np.testing.assert_allclose(streamed, whole, rtol=0, atol=STREAM_VS_WHOLE_ATOL)


@pytest.mark.parametrize("seed", [0, 1])
def test_hop_longer_than_window_streams_like_the_whole_signal(speech_pcm: np.ndarray, seed: int) -> None:
    """With hop > window some samples belong to no frame; a chunk boundary inside that gap must not shift frames."""
    gapped = LogMelFrontend(LogMelConfig(win_length=300, hop_length=320))
    rng = np.random.default_rng(seed)
    chunk_sizes = [int(rng.choice([1, 7, 15, 160, 333, 1000])) for _ in range(300)]
    whole = gapped.compute(speech_pcm)
    streamed = _stream_in_chunks(gapped, speech_pcm, chunk_sizes)
    assert streamed.shape == whole.shape
    np.testing.assert_allclose(streamed, whole, rtol=0, atol=STREAM_VS_WHOLE_ATOL)


def test_sample_by_sample_and_float64_chunks(frontend: LogMelFrontend, speech_pcm: np.ndarray) -> None:
    short = speech_pcm[:4000]
    whole = frontend.compute(short)
    one_by_one = _stream_in_chunks(frontend, short, [1] * short.shape[0])
    np.testing.assert_allclose(one_by_one, whole, rtol=0, atol=STREAM_VS_WHOLE_ATOL)
    as_float64 = short.astype(np.float64) / 32768.0
    np.testing.assert_allclose(
        _stream_in_chunks(frontend, as_float64, [161] * 30), whole, rtol=0, atol=STREAM_VS_WHOLE_ATOL
    )


def test_int16_equals_scaled_float(frontend: LogMelFrontend, speech_pcm: np.ndarray) -> None:
    from_int16 = frontend.compute(speech_pcm)
    from_float32 = frontend.compute((speech_pcm.astype(np.float32) / 32768.0).astype(np.float32))
    np.testing.assert_array_equal(from_int16, from_float32)


def test_frame_count_and_leftover(frontend: LogMelFrontend) -> None:
    stream = frontend.create_stream()
    assert stream.push(np.zeros(399, dtype=np.float32)).shape == (0, 40)
    assert stream.push(np.zeros(1, dtype=np.float32)).shape == (1, 40)
    assert stream.pending_samples == 400 - 160
    assert stream.push(np.zeros(159, dtype=np.float32)).shape == (0, 40)
    assert stream.push(np.zeros(1 + 160 * 3, dtype=np.float32)).shape == (4, 40)
    assert frontend.compute(np.zeros(399, dtype=np.int16)).shape == (0, 40)
    assert frontend.compute(np.zeros(16000, dtype=np.int16)).shape == (98, 40)


def test_reset_equals_fresh_stream_and_streams_are_independent(
    frontend: LogMelFrontend, speech_pcm: np.ndarray
) -> None:
    whole = frontend.compute(speech_pcm[:8000])
    stream_a = frontend.create_stream()
    stream_a.push(speech_pcm[8000:8777])
    stream_a.reset()
    stream_b = frontend.create_stream()
    outputs_a, outputs_b = [], []
    for start in range(0, 8000, 333):  # interleave two streams on one frontend
        outputs_a.append(stream_a.push(speech_pcm[start : min(start + 333, 8000)]))
        outputs_b.append(stream_b.push(speech_pcm[start : min(start + 333, 8000)]))
    np.testing.assert_array_equal(np.concatenate(outputs_a), whole)
    np.testing.assert_array_equal(np.concatenate(outputs_b), whole)


def test_matches_librosa_htk_melspectrogram(frontend: LogMelFrontend, speech_pcm: np.ndarray) -> None:
    cfg = frontend.config
    samples = speech_pcm.astype(np.float64) / 32768.0
    # librosa frames n_fft samples and centres the win_length window inside them; padding (n_fft - win) / 2 zeros
    # in front makes its frame i window exactly our samples [i * hop, i * hop + win).
    pad = (cfg.n_fft - cfg.win_length) // 2
    padded = np.concatenate([np.zeros(pad), samples, np.zeros(pad)])
    mel_power = librosa.feature.melspectrogram(
        y=padded,
        sr=cfg.sample_rate,
        n_fft=cfg.n_fft,
        hop_length=cfg.hop_length,
        win_length=cfg.win_length,
        window="hann",
        center=False,
        power=2.0,
        n_mels=cfg.n_mels,
        fmin=cfg.f_min,
        fmax=cfg.f_max,
        htk=True,
        norm=None,
    ).T
    ours = frontend.compute(speech_pcm)
    assert mel_power.shape == ours.shape
    reference = np.log(np.maximum(mel_power, cfg.log_floor))
    strong = mel_power > LIBROSA_POWER_FLOOR
    assert strong.mean() > 0.5, "the test signal should mostly lie above the comparison floor"
    np.testing.assert_allclose(ours[strong], reference[strong], rtol=0, atol=LIBROSA_LOG_ATOL)
    # Everywhere (including near the floor) the two agree to a looser bound.
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-2)
    # The filterbank itself matches librosa's HTK filters without normalisation.
    librosa_filters = librosa.filters.mel(
        sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=cfg.f_min, fmax=cfg.f_max, htk=True, norm=None
    )
    np.testing.assert_allclose(frontend.mel_matrix.T, librosa_filters, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "bad_pcm, message_part",
    [
        (np.zeros(100, dtype=np.int32), "dtype"),
        (np.zeros(100, dtype=np.complex64), "dtype"),
        (np.zeros(100, dtype=np.uint8), "dtype"),
        (np.zeros((2, 100), dtype=np.float32), "rank"),
        (np.zeros((), dtype=np.float32), "rank"),
        (np.array([0.0, np.nan] * 300, dtype=np.float32), "finite"),
        (np.array([0.0, np.inf] * 300, dtype=np.float64), "finite"),
        ([0.0] * 500, "ndarray"),
    ],
)
def test_bad_input_raises_input_error(frontend: LogMelFrontend, bad_pcm: object, message_part: str) -> None:
    with pytest.raises(InputError, match=message_part) as caught:
        frontend.compute(bad_pcm)  # type: ignore[arg-type]
    assert "expected" in str(caught.value) and "got" in str(caught.value)
    assert isinstance(caught.value, ValueError)
    stream = frontend.create_stream()
    with pytest.raises(InputError, match=message_part):
        stream.push(bad_pcm)  # type: ignore[arg-type]
    # A rejected chunk leaves the stream untouched.
    assert stream.pending_samples == 0


def test_config_round_trip_through_json() -> None:
    config = LogMelConfig()
    restored = LogMelConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert restored == config
    tunable = {"sample_rate", "n_fft", "win_length", "hop_length", "n_mels", "f_min", "f_max", "log_floor",
               "window", "mel_scale"}
    assert set(config.to_dict()) == tunable | {
        "type", "int16_scale", "pre_emphasis", "dither", "framing", "spectrum", "mel_norm", "log", "log_floor_rule",
        "feature_normalization"}
    with_int_floats = dict(config.to_dict(), f_min=20, f_max=7600)
    assert LogMelConfig.from_dict(with_int_floats) == config
    v1 = {key: value for key, value in config.to_dict().items() if key in tunable}  # schema v1 manifests
    assert LogMelConfig.from_dict(v1) == config


@pytest.mark.parametrize("key, value", [("log_floor_rule", "add"), ("spectrum", "magnitude"), ("framing", "centre"),
                                        ("pre_emphasis", 0.97), ("int16_scale", 1 / 32767), ("mel_norm", "slaney")])
def test_config_from_dict_refuses_choices_this_frontend_lacks(key: str, value: object) -> None:
    with pytest.raises(FrontendConfigError, match=f"{key}: expected"):
        LogMelConfig.from_dict(dict(LogMelConfig().to_dict(), **{key: value}))


@pytest.mark.parametrize(
    "change, message_part",
    [
        ({"n_mels": "40"}, "n_mels: expected int, got str"),
        ({"n_fft": True}, "n_fft: expected int, got bool"),
        ({"n_fft": 512.0}, "n_fft: expected int, got float"),
        ({"f_min": "20"}, "f_min: expected float, got str"),
        ({"win_length": 600}, "win_length: expected in"),
        ({"f_max": 9000.0}, "f_max: expected in"),
        ({"log_floor": 0.0}, "log_floor: expected > 0"),
        ({"mel_scale": "slaney"}, "mel_scale: expected 'htk'"),
        ({"extra_key": 1}, "unknown=\\['extra_key'\\]"),
    ],
)
def test_config_from_dict_rejects_bad_values(change: dict, message_part: str) -> None:
    data = dict(LogMelConfig().to_dict(), **change)
    with pytest.raises(FrontendConfigError, match=message_part) as caught:
        LogMelConfig.from_dict(data)
    assert isinstance(caught.value, ValueError)


def test_config_from_dict_rejects_missing_key_and_non_mapping() -> None:
    data = LogMelConfig().to_dict()
    del data["hop_length"]
    with pytest.raises(FrontendConfigError, match="missing=\\['hop_length'\\]"):
        LogMelConfig.from_dict(data)
    with pytest.raises(FrontendConfigError, match="expected a mapping, got list"):
        LogMelConfig.from_dict([1, 2])  # type: ignore[arg-type]


@pytest.mark.parametrize("config", [LogMelConfig(), LogMelConfig(win_length=300, hop_length=320)])
def test_push_many_gives_each_stream_its_own_push_and_refuses_per_stream(speech_pcm: np.ndarray,
                                                                        config: LogMelConfig) -> None:
    """One transform for the frames of many streams (a hub's microphones) gives each stream exactly the features of
    its own push, over chunks of any length (some too short for a frame, some empty); a bad chunk fails its stream
    only and leaves it as it was."""
    frontend = LogMelFrontend(config)
    rng = np.random.default_rng(4)
    alone = [frontend.create_stream() for _ in range(5)]
    together = [frontend.create_stream() for _ in range(5)]
    offsets = [0] * 5
    for _ in range(60):
        chunks = {}
        for k in range(5):
            size = int(rng.choice([0, 3, 150, 399, 1600, 4001]))
            chunks[k] = speech_pcm[offsets[k]:offsets[k] + size]
            offsets[k] = (offsets[k] + size) % (len(speech_pcm) - 5000)
        chunks[2] = np.full(160, np.nan, np.float32) if rng.random() < 0.2 else chunks[2]
        features, errors = frontend.push_many({k: (together[k], chunk) for k, chunk in chunks.items()})
        for k, chunk in chunks.items():
            if k in errors:
                assert k == 2 and isinstance(errors[k], InputError)
                with pytest.raises(InputError):
                    alone[k].push(chunk)
                continue
            expected = alone[k].push(chunk)
            assert features[k].shape == expected.shape and np.array_equal(features[k], expected)
    assert [s.frames_emitted for s in together] == [s.frames_emitted for s in alone]
    assert all(s.frames_emitted > 0 for s in together)
