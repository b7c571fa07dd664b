"""StreamBatch: many streams of one model pushed together, against the same streams pushed one by one."""

from __future__ import annotations

import numpy as np
import pytest

from lstm_edge.runtime import BatchPushError, InputError, NonFiniteResultError, StreamingModel
from lstm_edge.runtime.batch import GraphBatchEngine, StepBatchEngine

import zoo
from conftest import NATIVE_MODELS


def kws_dir():
    from pathlib import Path

    return Path(__file__).resolve().parent.parent / "models" / "kws" / "export"


def chunk_for(name: str, frames: int, seed: int) -> np.ndarray:
    """One chunk [frames, ...] of a zoo model's input (token ids or features)."""
    return zoo.random_input(name, frames, seed=seed)[0].numpy()


def run_both(model: StreamingModel, pushes: list[list[np.ndarray]]) -> None:
    """Push the same chunks through a batch and through separate streams; outputs and states bitwise equal."""
    n = len(pushes[0])
    batch = model.create_batch(n)
    streams = [model.create_stream() for _ in range(n)]
    for chunks in pushes:
        got = batch.push(chunks)
        for slot, chunk in enumerate(chunks):
            np.testing.assert_array_equal(got[slot], streams[slot].push(chunk))
    for slot, stream in enumerate(streams):
        assert batch.frames(slot) == stream.frames
        for name, value in stream.state.items():
            np.testing.assert_array_equal(batch.state(slot)[name], value)


# ---------------------------------------------------------------------------------------------- native backend
@pytest.mark.parametrize("precision", ["float", "int8"])
@pytest.mark.parametrize("name", NATIVE_MODELS)
def test_native_batch_is_bitwise_separate_streams(exported, name, precision):
    """Every layer kind the C library has (LSTM, projected LSTM, GRU, convolutions, embeddings): same bits as
    separate streams (the spec asks float within 1e-6 and int8 identical; the C batch gives identical for both).
    Chunk lengths 1, 3 and 37 (longer than the batch's 16-frame pieces), five streams."""
    _, model_dir = exported(name)
    model = StreamingModel.load(model_dir, backend="native", precision=precision)
    assert model.create_batch(1).engine.name == "native C batch"
    pushes = [[chunk_for(name, frames, seed=10 * step + slot) for slot in range(5)]
              for step, frames in enumerate([1, 3, 37, 1])]
    run_both(model, pushes)


@pytest.mark.parametrize("precision", ["float", "int8"])
def test_shipped_keyword_spotter_batch_at_many_streams(precision):
    """The shipped keyword spotter with 70 streams (more than the C batch's first capacities: it grows), pushed
    as one [streams, T, 40] array."""
    model = StreamingModel.load(kws_dir(), backend="native", precision=precision)
    rng = np.random.default_rng(1)
    pushes = [list(rng.standard_normal((70, frames, 40)).astype(np.float32)) for frames in (1, 10)]
    run_both(model, pushes)
    batch = model.create_batch(3)
    stacked = rng.standard_normal((3, 4, 40)).astype(np.float32)
    separate = [model.create_stream().push(chunk) for chunk in stacked]
    for got, expected in zip(batch.push(stacked), separate):
        np.testing.assert_array_equal(got, expected)


# ------------------------------------------------------------------------------------------------ slot table
def test_join_leave_reset_and_state_per_slot():
    model = StreamingModel.load(kws_dir(), backend="native", precision="int8")
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 5, 40)).astype(np.float32)
    batch = model.create_batch(4)
    assert batch.active == (0, 1, 2, 3) and len(batch) == 4
    batch.push(x)
    kept = {slot: batch.state(slot) for slot in batch.active}
    batch.leave(1)
    assert batch.active == (0, 2, 3)
    with pytest.raises(InputError, match=r"slot: expected one of the active slots \[0, 2, 3\], got 1"):
        batch.state(1)
    after = batch.push(x[[0, 2, 3]])  # the others carried on from their own state
    for got, slot in zip(after, (0, 2, 3)):
        np.testing.assert_array_equal(got, model.step(x[slot], kept[slot])[0])
    assert batch.join() == 1  # the freed slot, fresh
    np.testing.assert_array_equal(batch.push(x)[1], model.create_stream().push(x[1]))
    assert [batch.frames(slot) for slot in batch.active] == [15, 5, 15, 15]  # slot 1 joined before the last push
    batch.reset(2)
    assert batch.frames(2) == 0
    np.testing.assert_array_equal(batch.push({2: x[2]})[2], model.create_stream().push(x[2]))
    assert [batch.frames(slot) for slot in batch.active] == [15, 5, 5, 15]  # only slot 2 moved
    # a mapping pushes some slots only; the others do not move
    before = batch.state(0)
    batch.push({3: x[3]})
    for name, value in before.items():
        np.testing.assert_array_equal(batch.state(0)[name], value)
    # set_state resumes a slot from any State (here a separate stream's); join(state=...) too
    stream = model.create_stream()
    stream.push(x[0])
    batch.set_state(3, stream.state)
    slot = batch.join(state=stream.state)
    assert slot == 4 and batch.active == (0, 1, 2, 3, 4)
    got = batch.push({3: x[1], 4: x[1]})
    expected = stream.push(x[1])
    np.testing.assert_array_equal(got[3], expected)
    np.testing.assert_array_equal(got[4], expected)
    with pytest.raises(InputError, match="state names"):
        batch.set_state(0, {"lstm_h": before["lstm_h"]})
    with pytest.raises(InputError, match="streams in a batch"):
        model.create_batch(-1)


# ------------------------------------------------------------------------------------------ bad input per slot
@pytest.mark.parametrize("backend", ["native", "onnx", "litert"])
def test_bad_chunk_fails_only_its_slot(backend):
    model = StreamingModel.load(kws_dir(), backend=backend, precision="float")
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 4, 40)).astype(np.float32)
    batch = model.create_batch(5)
    batch.push(x)
    before = {slot: batch.state(slot) for slot in batch.active}
    nan = x[1].copy()
    nan[2, 7] = np.nan
    chunks = [x[0], nan, x[2][:, :30], x[3][:3], x[4].astype(np.int32)]
    with pytest.raises(BatchPushError) as caught:
        batch.push(chunks)
    error = caught.value
    assert sorted(error.errors) == [1, 2, 3, 4] and sorted(error.outputs) == [0]
    assert "NaN/inf" in str(error.errors[1])
    assert "chunk shape (axis 1): expected [T, 40], got (4, 30)" in str(error.errors[2])
    assert "chunk length: expected 4 frames" in str(error.errors[3])
    assert "chunk dtype: expected float32 features, got int32" in str(error.errors[4])
    assert isinstance(error, InputError)
    np.testing.assert_array_equal(error.outputs[0], model.step(x[0], before[0])[0])
    for slot in (1, 2, 3, 4):  # refused: state as before, frame count too
        assert batch.frames(slot) == 4
        for name, value in before[slot].items():
            np.testing.assert_array_equal(batch.state(slot)[name], value)
    # a NaN in the fast path (one float32 array for all slots) is refused per slot by the engine as well
    stacked = x.copy()
    stacked[3, 0, 0] = np.inf
    with pytest.raises(BatchPushError) as caught:
        batch.push(stacked)
    assert sorted(caught.value.errors) == [3] and len(caught.value.outputs) == 4
    with pytest.raises(InputError, match=r"chunks in a batch push: expected one per active slot \(5\), got 2"):
        batch.push([x[0], x[1]])


def test_overflow_in_one_slot_keeps_its_state_and_runs_the_others(tmp_path):
    import torch
    from test_native import SkipLSTM

    from lstm_edge.export import export

    torch.manual_seed(0)
    module = SkipLSTM().eval()
    with torch.no_grad():
        module.skip.weight.fill_(1.0)  # six inputs of 3e38 sum past float32's largest value
    model_dir = export(module, torch.randn(1, 10, 6), tmp_path / "skip", formats=("c",))
    model = StreamingModel.load(model_dir, backend="native")
    x = np.random.default_rng(4).standard_normal((3, 10, 6)).astype(np.float32)
    batch = model.create_batch(3)
    batch.push(x)
    before = batch.state(1)
    chunks = x.copy()
    chunks[1] = 3e38
    with pytest.raises(BatchPushError) as caught:
        batch.push(chunks)
    assert list(caught.value.errors) == [1] and isinstance(caught.value.errors[1], NonFiniteResultError)
    for name, value in before.items():
        np.testing.assert_array_equal(batch.state(1)[name], value)
    stream = model.create_stream()
    stream.push(x[0])
    np.testing.assert_array_equal(caught.value.outputs[0], stream.push(x[0]))


# ------------------------------------------------------------------------------------- ONNX and LiteRT backends
@pytest.mark.parametrize("backend, precision", [("onnx", "float"), ("litert", "float"), ("onnx", "int8"),
                                                ("litert", "int8")])
def test_other_backends_batch_equals_separate_streams(backend, precision):
    """The shipped float ONNX file has a batch axis and both LiteRT files have batch signatures: one call for all
    slots. The int8 ONNX file (activations quantized per tensor) runs the slots one by one."""
    model = StreamingModel.load(kws_dir(), backend=backend, precision=precision)
    batch = model.create_batch(3)
    batched = (backend, precision) != ("onnx", "int8")
    assert isinstance(batch.engine, GraphBatchEngine if batched else StepBatchEngine)
    if backend == "onnx":
        assert (model.manifest.file("onnx", precision).batch == "any") == batched
    else:
        assert model.manifest.file("tflite", precision).batch_signatures is not None
    rng = np.random.default_rng(5)
    streams = [model.create_stream() for _ in range(3)]
    for frames in (1, 10, 3):
        x = rng.standard_normal((3, frames, 40)).astype(np.float32)
        for got, stream, chunk in zip(batch.push(x), streams, x):
            assert np.abs(got - stream.push(chunk)).max() <= 1e-6
    batch.leave(1)  # the joint state is split back into the slots, the others carry on
    x = rng.standard_normal((2, 4, 40)).astype(np.float32)
    for got, stream, chunk in zip(batch.push(x), [streams[0], streams[2]], x):
        assert np.abs(got - stream.push(chunk)).max() <= 1e-6
    for slot, stream in ((0, streams[0]), (2, streams[2])):
        for name, value in stream.state.items():
            assert np.abs(batch.state(slot)[name] - value).max() <= 1e-6


@pytest.mark.parametrize("name, batched", [("feature_lstm", True), ("gru", True), ("projected", True),
                                           ("dilated_tcn", True), ("tokens_time_major", True),
                                           ("causal_crnn", False)])
def test_exported_onnx_batch_axis_equals_separate_streams(exported, name, batched):
    """Export declares the float ONNX graph's batch axis (recurrent states on axis 1, a convolution's context on
    axis 0) only after checking each stream computes alone; batched pushes then match separate streams. The
    Conv2d model's graph reshapes with batch 1 inside: no axis is declared and its slots run one by one."""
    _, model_dir = exported(name)
    model = StreamingModel.load(model_dir, backend="onnx", precision="float")
    entry = model.manifest.file("onnx", "float")
    assert (entry.batch == "any") == batched
    assert all((s.batch_axis is not None) == batched for s in model.manifest.states)
    batch = model.create_batch(4)
    assert isinstance(batch.engine, GraphBatchEngine if batched else StepBatchEngine)
    streams = [model.create_stream() for _ in range(4)]
    for step, frames in enumerate((1, 7, 2)):
        chunks = [chunk_for(name, frames, seed=10 * step + slot) for slot in range(4)]
        for got, stream, chunk in zip(batch.push(chunks), streams, chunks):
            assert np.abs(got - stream.push(chunk)).max() <= 1e-6
    for slot, stream in enumerate(streams):
        for state_name, value in stream.state.items():
            assert np.abs(batch.state(slot)[state_name] - value).max() <= 1e-6


def test_manifest_without_batch_axis_loads_and_runs_one_by_one(tmp_path):
    """A manifest written before batch axes existed (no files[].batch, no states[].batch_axis) loads as before; a
    malformed batch_axis is refused by name."""
    import json
    import shutil

    from lstm_edge.runtime import ManifestError

    folder = tmp_path / "kws"
    shutil.copytree(kws_dir(), folder)
    raw = json.loads((folder / "manifest.json").read_text())
    for state in raw["states"]:
        del state["batch_axis"]
    for record in raw["files"]:
        record.pop("batch", None)
    (folder / "manifest.json").write_text(json.dumps(raw))
    model = StreamingModel.load(folder, backend="onnx", precision="float")
    batch = model.create_batch(2)
    assert isinstance(batch.engine, StepBatchEngine)
    x = np.random.default_rng(6).standard_normal((2, 3, 40)).astype(np.float32)
    for got, chunk in zip(batch.push(x), x):
        np.testing.assert_array_equal(got, model.create_stream().push(chunk))
    raw["states"][0]["batch_axis"] = 2
    (folder / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(ManifestError, match=r"states\[0\].batch_axis: expected an axis of \[2, 1, 128\] whose "
                                            "size is 1, got 2"):
        StreamingModel.load(folder, backend="onnx")


# ------------------------------------------------------------------------------------------ applications, CLI
def demo_audio() -> np.ndarray:
    from lstm_edge.runtime.audio import load_mono

    audio, _ = load_mono(kws_dir().parent / "demo.wav", 16000)
    return audio


def test_keyword_batch_detects_as_separate_streams():
    """Three microphones through one KeywordBatch, chunks of 100 ms; the shorter stream leaves when it ends: the
    detections are exactly those of each recording alone."""
    from lstm_edge.runtime.kws import KeywordSpotter

    spotter = KeywordSpotter(StreamingModel.load(kws_dir(), backend="native", precision="int8"))
    audio = demo_audio()
    recordings = [audio, np.concatenate([np.zeros(8000, np.float32), audio]), audio[: len(audio) // 2]]
    expected = [spotter.detect(pcm) for pcm in recordings]
    assert all(expected[:2]) and expected[0] != expected[1]
    batch = spotter.create_batch(3)
    got: list[list] = [[], [], []]
    step = 1600
    for start in range(0, max(map(len, recordings)), step):
        chunks = {}
        for slot, pcm in enumerate(recordings):
            if start < len(pcm):
                chunks[slot] = pcm[start:start + step]
            elif slot in batch.active:
                got[slot].extend(batch.leave(slot))
        for slot, detections in batch.push(chunks).items():
            got[slot].extend(detections)
    for slot, detections in batch.flush().items():
        got[slot].extend(detections)
    assert got == expected


def _listen(*args: str, stdin: bytes | None = None):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "lstm_edge.cli", "listen", str(kws_dir()), *args, "--backend",
                           "native", "--json"], input=stdin, capture_output=True, timeout=300)


def _by_stream(stdout: bytes) -> dict[str, list[dict]]:
    import json

    out: dict[str, list[dict]] = {}
    for line in stdout.decode().splitlines():
        record = json.loads(line)
        out.setdefault(record.pop("stream"), []).append(record)
    return out


def test_listen_several_files_and_channels(tmp_path):
    """`listen` with two files, with a 2-channel WAV (--streams 2) and with interleaved raw PCM on stdin
    (--streams 2): each stream's lines are what `listen` prints for that audio alone."""
    import json

    from lstm_edge.runtime.audio import write_wav

    audio = demo_audio()
    first = np.round(np.clip(audio, -1, 32767 / 32768) * 32768).astype(np.int16)
    second = np.concatenate([np.zeros(8000, np.int16), first])[: len(first)]
    write_wav(tmp_path / "a.wav", first, 16000)
    write_wav(tmp_path / "b.wav", second, 16000)
    alone = []
    for name in ("a.wav", "b.wav"):
        result = _listen(str(tmp_path / name))
        assert result.returncode == 0, result.stderr.decode()
        alone.append([json.loads(line) for line in result.stdout.decode().splitlines()])
    assert alone[0] and alone[0] != alone[1]

    files = _listen(str(tmp_path / "a.wav"), str(tmp_path / "b.wav"))
    assert files.returncode == 0, files.stderr.decode()
    assert _by_stream(files.stdout) == {str(tmp_path / "a.wav"): alone[0], str(tmp_path / "b.wav"): alone[1]}
    assert b"in 2 streams" in files.stderr

    interleaved = np.stack([first, second], axis=1).astype("<i2")
    import wave

    with wave.open(str(tmp_path / "stereo.wav"), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(interleaved.tobytes())
    expected = {"channel 0": alone[0], "channel 1": alone[1]}
    channels = _listen(str(tmp_path / "stereo.wav"), "--streams", "2")
    assert channels.returncode == 0, channels.stderr.decode()
    assert _by_stream(channels.stdout) == expected
    piped = _listen("-", "--streams", "2", stdin=interleaved.tobytes())
    assert piped.returncode == 0, piped.stderr.decode()
    assert _by_stream(piped.stdout) == expected

    wrong = _listen(str(tmp_path / "stereo.wav"), "--streams", "3")
    assert wrong.returncode != 0 and b"channels: expected 3 (--streams), got 2" in wrong.stderr
    odd = _listen("-", "--streams", "2", stdin=interleaved.tobytes()[:-2])
    assert odd.returncode != 0 and b"whole frames of 2 interleaved 16-bit samples" in odd.stderr


@pytest.mark.parametrize("backend, precision", [("native", "int8"), ("onnx", "float")])
def test_recognizer_batch_gives_the_results_of_separate_streams(backend, precision):
    """Two lines through one RecognizerBatch (endpoints inside chunks rerun the rest of that stream alone): partial
    and final results equal each recording transcribed alone, in the C batch and along the ONNX batch axis."""
    from lstm_edge.runtime.asr import SpeechRecognizer
    from lstm_edge.runtime.audio import load_mono

    asr_dir = kws_dir().parent.parent / "asr"
    recognizer = SpeechRecognizer(StreamingModel.load(asr_dir / "export", backend=backend, precision=precision))
    demo, _ = load_mono(asr_dir / "demo.wav", 16000)
    recordings = [demo, np.concatenate([np.zeros(4000, np.float32), demo, np.zeros(16000, np.float32), demo])]
    expected = [recognizer.transcribe(pcm, partial=True) for pcm in recordings]
    assert sum(r.final for r in expected[1]) > sum(r.final for r in expected[0]) > 1
    batch = recognizer.create_batch(2)
    assert batch.batch.engine.name == ("native C batch" if backend == "native"
                                       else "one call for all slots (the graph's batch axis)")
    got: list[list] = [[], []]
    for start in range(0, len(recordings[1]), 1600):
        chunks = {slot: pcm[start:start + 1600] for slot, pcm in enumerate(recordings) if start < len(pcm)}
        for slot, results in batch.push(chunks).items():
            got[slot].extend(results)
    for slot, results in batch.flush().items():
        got[slot].extend(results)
    assert got == expected


def test_empty_pushes_and_unknown_slots_change_nothing():
    from lstm_edge.runtime.kws import KeywordSpotter

    model = StreamingModel.load(kws_dir(), backend="native", precision="int8")
    assert model.create_batch(0).push([]) == [] and model.create_batch(2).push({}) == {}
    batch = KeywordSpotter(model).create_batch(2)
    pcm = demo_audio()[:1600]
    with pytest.raises(InputError, match=r"slot: expected one of the active slots \[0, 1\], got 7"):
        batch.push({0: pcm, 7: pcm})
    assert batch._detectors[0].features.frames_emitted == 0  # slot 0 was not fed either
