"""TFLite batch signatures: many streams in one LiteRT call, against the same streams run alone (real interpreter)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from lstm_edge.export import export
from lstm_edge.export.tflite_batch import batch_path_of, batch_signatures_in, declare_tflite_batch
from lstm_edge.export.tflite_export import batch_signature
from lstm_edge.quantize import quantize
from lstm_edge.runtime import BatchPushError, StreamingModel
from lstm_edge.runtime.batch import GraphBatchEngine, StepBatchEngine
from lstm_edge.runtime.errors import ExportError, ManifestError, ModelFileError
from lstm_edge.runtime.manifest import MANIFEST_NAME, Manifest, check_batch_file, sha256_of

KWS = Path(__file__).resolve().parent.parent / "models" / "kws" / "export"


class TinyLSTM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(6, 12, num_layers=2, batch_first=True)
        self.out = nn.Linear(12, 5)

    def forward(self, x):
        y, _ = self.lstm(x)
        return self.out(y)


class MixesStreams(TinyLSTM):
    """Adds the mean over the batch: at batch 1 an ordinary streaming model, with several streams they mix."""

    def forward(self, x):
        y = super().forward(x)
        return y + y.mean(dim=0, keepdim=True)


class OneStreamOnly(TinyLSTM):
    """Reshapes with batch 1 written in: traced with several streams, it fails."""

    def forward(self, x):
        y = super().forward(x)
        return y.reshape(1, y.shape[1], 5)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    """TinyLSTM exported to TFLite with signatures for 2 and 3 streams per call, then quantized (dynamic int8)."""
    torch.manual_seed(0)
    out = export(TinyLSTM().eval(), torch.randn(1, 4, 6), tmp_path_factory.mktemp("tiny"), formats=("tflite",),
                 chunk_sizes=(4, 1), tflite_batch_sizes=(3, 2))
    return quantize(out)


def pushes(rng: np.random.Generator, n: int) -> list[np.ndarray]:
    """Chunks of every length kind: a signature length, composed ones, one frame."""
    return [rng.standard_normal((n, frames, 6)).astype(np.float32) for frames in (4, 9, 1, 3)]


def signature_keys(path: Path) -> list[str]:
    from ai_edge_litert.interpreter import Interpreter

    return sorted(Interpreter(model_path=str(path)).get_signature_list())


def test_export_declares_checked_batch_signatures_in_float_and_int8(tiny_dir):
    """The batched signatures live in a companion file per precision, recorded with its sha256 and size; the
    one-stream file holds the one-stream signatures only."""
    manifest = Manifest.load(tiny_dir)
    want = {"2": {"4": "chunk_4_b2", "1": "chunk_1_b2"}, "3": {"4": "chunk_4_b3", "1": "chunk_1_b3"}}
    companions = {"float": "model.batch.tflite", "int8": "model.int8.batch.tflite"}
    for precision in ("float", "int8"):
        entry = manifest.file("tflite", precision)
        assert entry.signatures == {"4": "chunk_4", "1": "chunk_1"}  # the one-stream signatures as before
        assert {size: dict(keys) for size, keys in entry.batch_signatures.items()} == want, precision
        assert entry.signatures_for(3) == {4: "chunk_4_b3", 1: "chunk_1_b3"} and entry.signatures_for(5) == {}
        assert entry.batch_file.path == companions[precision] == batch_path_of(entry.path)
        companion = check_batch_file(tiny_dir, entry)
        assert entry.batch_file.sha256 == sha256_of(companion) and entry.batch_file.bytes == companion.stat().st_size
        assert signature_keys(tiny_dir / entry.path) == ["chunk_1", "chunk_4"]
        assert signature_keys(companion) == sorted(k for keys in want.values() for k in keys.values())
    assert manifest.file("tflite", "int8").quantization["recipe"] == "dynamic_wi8_afp32"
    assert [s.batch_axis for s in manifest.states] == [1, 1]
    raw = json.loads((tiny_dir / MANIFEST_NAME).read_text())
    assert raw["files"][0]["batch_signatures"] == want  # as written on disk, largest chunk first
    assert set(raw["files"][0]["batch_file"]) == {"path", "sha256", "bytes"}
    assert batch_signature(4, 3) == "chunk_4_b3"
    # the int8 companion holds the int8 file's weights: same recipe and scales, int8 like it
    int8 = manifest.file("tflite", "int8")
    from lstm_edge.quantize.tflite_quant import count_tflite_ops

    facts = count_tflite_ops(tiny_dir / int8.batch_file.path)
    assert all(sig["ops"]["FULLY_CONNECTED"]["int8_weights"] == sig["ops"]["FULLY_CONNECTED"]["count"] > 0
               for sig in facts["signatures"].values())


def test_a_single_stream_never_opens_the_batch_file(tiny_dir, tmp_path):
    """The companion is read (and its sha256 checked) only when a batch is created: without it, single streams run;
    a batch then says which file is missing, and a changed companion is refused by its checksum."""
    model_dir = shutil.copytree(tiny_dir, tmp_path / "tiny")
    companion = model_dir / "model.int8.batch.tflite"
    companion.rename(tmp_path / "aside.tflite")
    model = StreamingModel.load(model_dir, backend="litert", precision="int8")
    x = np.random.default_rng(8).standard_normal((9, 6)).astype(np.float32)
    assert model.create_stream().push(x).shape == (9, 5)
    with pytest.raises(ModelFileError, match=r"batch file .*model.int8.batch.tflite is missing"):
        model.create_batch(2)
    data = bytearray((tmp_path / "aside.tflite").read_bytes())
    data[-1] ^= 1
    companion.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="checksum mismatch against the manifest's batch_file sha256"):
        StreamingModel.load(model_dir, backend="litert", precision="int8").create_batch(2)


def test_info_shows_and_checks_the_batch_files(tiny_dir, tmp_path, capsys):
    from lstm_edge.cli import main

    assert main(["info", str(tiny_dir)]) == 0
    lines = [line.strip() for line in capsys.readouterr().out.splitlines() if "batch file" in line]
    assert [line.split()[2] for line in lines] == ["model.batch.tflite", "model.int8.batch.tflite"]
    assert all("signatures for 2, 3 streams per call" in line and line.endswith("sha256 ok") for line in lines)
    model_dir = shutil.copytree(tiny_dir, tmp_path / "tiny")
    (model_dir / "model.batch.tflite").write_bytes(b"changed")
    assert main(["info", str(model_dir)]) == 1
    captured = capsys.readouterr()
    [line] = [line for line in captured.out.splitlines() if "batch file model.batch.tflite" in line]
    assert line.endswith("sha256 CHECKSUM MISMATCH OR MISSING")
    assert "a missing file for ['model.batch.tflite']" in captured.err


@pytest.mark.parametrize("precision", ["float", "int8"])
def test_batch_equals_separate_streams_with_padding_and_several_calls(tiny_dir, precision):
    """n = 2, 3: one call; 1: the one-stream signature; 5 = 3 + 2 and 7 = 3 + 3 + (1 padded to 2): several calls.
    Every stream equals a stream of its own; measured bit-identical, in int8 too (its hybrid kernels quantize each
    input row on its own), so the tolerance is the float one."""
    model = StreamingModel.load(tiny_dir, backend="litert", precision=precision)
    rng = np.random.default_rng(1)
    for n in (1, 2, 3, 5, 7):
        batch = model.create_batch(n)
        assert isinstance(batch.engine, GraphBatchEngine)
        assert "LiteRT call per up to 3 slots (batch signatures 2, 3" in batch.engine.name
        streams = [model.create_stream() for _ in range(n)]
        for x in pushes(rng, n):
            for got, stream, chunk in zip(batch.push(x), streams, x):
                assert got.shape == (len(chunk), 5)
                assert np.abs(got - stream.push(chunk)).max() <= 1e-6, (precision, n, len(chunk))
        for slot, stream in enumerate(streams):
            assert batch.frames(slot) == stream.frames
            for name, value in stream.state.items():
                assert np.abs(batch.state(slot)[name] - value).max() <= 1e-6


def test_padded_rows_do_not_reach_the_streams(tiny_dir):
    """Two of three rows used: the zero padding row's results are dropped; a slot that leaves and one that joins
    start from their own states."""
    model = StreamingModel.load(tiny_dir, backend="litert", precision="float")
    batch = model.create_batch(2)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 4, 6)).astype(np.float32)
    y = batch.push(x)
    assert len(y) == 2
    alone = model.create_stream()
    np.testing.assert_array_equal(y[1], alone.push(x[1]))
    batch.leave(0)
    slot = batch.join()  # the freed slot, at the initial state
    assert slot == 0
    x = rng.standard_normal((2, 1, 6)).astype(np.float32)
    fresh = model.create_stream()
    got = batch.push(x)
    np.testing.assert_array_equal(got[0], fresh.push(x[0]))
    np.testing.assert_array_equal(got[1], alone.push(x[1]))


def test_chunk_lengths_the_batch_signatures_lack_run_stream_by_stream(tiny_dir, tmp_path):
    """A manifest declaring only the 4-frame batched signatures: T = 9 runs 4 + 4 in batched calls, the last frame
    of each stream through its one-stream signature; T = 2 wholly stream by stream. Results as separate streams."""
    model_dir = tmp_path / "tiny"
    shutil.copytree(tiny_dir, model_dir)
    raw = json.loads((model_dir / MANIFEST_NAME).read_text())
    for record in raw["files"]:
        if record["format"] == "tflite":
            record["batch_signatures"] = {"3": {"4": "chunk_4_b3"}}
    (model_dir / MANIFEST_NAME).write_text(json.dumps(raw))
    model = StreamingModel.load(model_dir, backend="litert", precision="float")
    batch = model.create_batch(3)
    assert "batch signatures 3;" in batch.engine.name
    streams = [model.create_stream() for _ in range(3)]
    rng = np.random.default_rng(3)
    for frames in (9, 2, 4):
        x = rng.standard_normal((3, frames, 6)).astype(np.float32)
        for got, stream, chunk in zip(batch.push(x), streams, x):
            np.testing.assert_array_equal(got, stream.push(chunk))


def test_bad_chunk_fails_only_its_slot(tiny_dir):
    """A NaN in one slot's chunk of the one-call array: the call's check output says so, the slots run again one by
    one, and only that slot is refused (its state kept); a wrong shape is refused before the call."""
    model = StreamingModel.load(tiny_dir, backend="litert", precision="float")
    batch = model.create_batch(3)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 4, 6)).astype(np.float32)
    batch.push(x)
    before = batch.state(1)
    bad = rng.standard_normal((3, 4, 6)).astype(np.float32)
    bad[1, 2, 3] = np.nan
    with pytest.raises(BatchPushError) as caught:
        batch.push(bad)
    assert list(caught.value.errors) == [1] and "NaN/inf" in str(caught.value.errors[1])
    assert sorted(caught.value.outputs) == [0, 2]
    for name, value in before.items():
        np.testing.assert_array_equal(batch.state(1)[name], value)
    with pytest.raises(BatchPushError) as caught:
        batch.push([x[0], x[1][:, :5], x[2]])
    assert list(caught.value.errors) == [1] and "expected [T, 6], got (4, 5)" in str(caught.value.errors[1])


def test_a_graph_that_mixes_streams_gets_no_batch_signatures(tmp_path):
    """The batched signatures are written, but the check finds stream 0's results depend on the others: nothing
    is declared, the companion file is removed, and the batch runs slot by slot."""
    torch.manual_seed(0)
    out = export(MixesStreams().eval(), torch.randn(1, 4, 6), tmp_path / "mixes", formats=("tflite",),
                 chunk_sizes=(4, 1), tflite_batch_sizes=(2,))
    manifest = Manifest.load(out)
    entry = manifest.file("tflite", "float")
    assert entry.batch_signatures is None and entry.batch_file is None
    assert not (out / "model.batch.tflite").exists() and signature_keys(out / entry.path) == ["chunk_1", "chunk_4"]
    assert batch_signatures_in(["chunk_4_b2", "chunk_1_b2", "chunk_4_b1", "other_b2"], entry) == {
        2: {4: "chunk_4_b2", 1: "chunk_1_b2"}}
    assert declare_tflite_batch(out).file("tflite", "float").batch_signatures is None
    model = StreamingModel.load(out, backend="litert")
    assert isinstance(model.create_batch(2).engine, StepBatchEngine)


def test_a_graph_that_cannot_take_several_streams_keeps_one_stream_signatures_with_a_warning(tmp_path):
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match=r"TFLite signatures for \[2\] streams per call could not be written"):
        out = export(OneStreamOnly().eval(), torch.randn(1, 4, 6), tmp_path / "one", formats=("tflite",),
                     chunk_sizes=(4, 1), tflite_batch_sizes=(2,))
    entry = Manifest.load(out).file("tflite", "float")
    assert entry.signatures == {"4": "chunk_4", "1": "chunk_1"} and entry.batch_signatures is None
    assert entry.batch_file is None and not (out / "model.batch.tflite").exists()
    model = StreamingModel.load(out, backend="litert")
    assert isinstance(model.create_batch(2).engine, StepBatchEngine)


def test_shipped_keyword_spotter_batches_sixteen_streams_in_one_call():
    """The shipped LiteRT files: 16 streams through chunk_10_b16 equal 16 streams alone (float and int8)."""
    for precision in ("float", "int8"):
        model = StreamingModel.load(KWS, backend="litert", precision=precision)
        assert model.manifest.file("tflite", precision).signatures_for(16) == {10: "chunk_10_b16",
                                                                                1: "chunk_1_b16"}
        batch = model.create_batch(16)
        streams = [model.create_stream() for _ in range(16)]
        x = np.random.default_rng(5).standard_normal((16, 10, 40)).astype(np.float32)
        for got, stream, chunk in zip(batch.push(x), streams, x):
            assert np.abs(got - stream.push(chunk)).max() <= 1e-6, precision


def test_bad_batch_options_and_manifest_fields(tmp_path):
    with pytest.raises(ExportError, match=r"tflite_batch_sizes: expected ints >= 2"):
        export(TinyLSTM().eval(), torch.randn(1, 4, 6), tmp_path / "a", formats=("tflite",), tflite_batch_sizes=(1,))
    raw = json.loads((KWS / MANIFEST_NAME).read_text())
    record = next(r for r in raw["files"] if r["format"] == "tflite")
    for bad, message in (({"1": {"10": "chunk_10"}}, "a number of streams >= 2"),
                         ({"16": {"7": "chunk_7_b16"}}, r"chunk lengths among \['1', '10'\]"),
                         ({"16": {"10": "chunk_10"}}, "keys of their own")):
        record["batch_signatures"] = bad
        with pytest.raises(ManifestError, match=message):
            Manifest.from_dict(raw)
    record = next(r for r in json.loads((KWS / MANIFEST_NAME).read_text())["files"] if r["format"] == "tflite")
    raw["files"] = [record]
    batch_file = record.pop("batch_file")
    # the layout that kept the batch signatures inside the one-stream file is refused, naming it
    with pytest.raises(ManifestError, match="batch_signatures without batch_file .the layout that kept them inside"):
        Manifest.from_dict(raw)
    record["batch_file"], signatures = batch_file, record.pop("batch_signatures")
    with pytest.raises(ManifestError, match="got batch_file without batch_signatures"):
        Manifest.from_dict(raw)
    record["batch_signatures"] = signatures
    for field, value, message in (("path", record["path"], "a file of its own"),
                                  ("path", "../x.tflite", r"batch_file.path: expected a string matching"),
                                  ("sha256", None, "sha256")):
        record["batch_file"] = {**batch_file, field: value}
        with pytest.raises(ManifestError, match=message):
            Manifest.from_dict(raw)


def test_manifest_without_batch_signatures_runs_one_by_one(tmp_path):
    """A manifest written before batch signatures existed (the field absent) loads as before: the file's one-stream
    signatures only, the slots one by one."""
    folder = shutil.copytree(KWS, tmp_path / "kws")
    raw = json.loads((folder / MANIFEST_NAME).read_text())
    for record in raw["files"]:
        record.pop("batch_signatures", None)
        record.pop("batch_file", None)
    (folder / MANIFEST_NAME).write_text(json.dumps(raw))
    model = StreamingModel.load(folder, backend="litert", precision="int8")
    batch = model.create_batch(3)
    assert isinstance(batch.engine, StepBatchEngine)
    x = np.random.default_rng(7).standard_normal((3, 11, 40)).astype(np.float32)
    for got, chunk in zip(batch.push(x), x):
        np.testing.assert_array_equal(got, model.create_stream().push(chunk))


def test_int8_companion_keeps_float_the_layers_the_int8_file_keeps_float(tiny_dir, tmp_path):
    """Mixed precision: a layer the one-stream int8 file keeps float is found in the float companion by its weights
    and kept float there too, so each stream of the int8 companion equals a run of its own through the int8 file."""
    from lstm_edge.export.tflite_batch import _independent_signatures
    from lstm_edge.quantize.config import QuantizeConfig
    from lstm_edge.quantize.tflite_quant import TFLiteQuantizer, count_tflite_ops, quantize_batch_companion

    manifest = Manifest.load(tiny_dir)
    entry = manifest.file("tflite", "float")
    quantizer = TFLiteQuantizer()
    layers = quantizer.layers(tiny_dir / entry.path)
    kept = [layer for layer in layers if layer.kind == "FULLY_CONNECTED"][-1:]  # the output projection
    assert kept and len(layers) > 1
    int8_file, companion = tmp_path / "model.int8.tflite", tmp_path / "model.int8.batch.tflite"
    record = quantizer.quantize(tiny_dir / entry.path, int8_file, QuantizeConfig(), None, manifest, entry,
                                float_layers=kept)
    quantize_batch_companion(tiny_dir / entry.batch_file.path, int8_file, companion, record,
                             [(s.input, s.output) for s in manifest.states])
    for path in (int8_file, companion):
        assert count_tflite_ops(path)["weight_operand_buffers"].get("float32") == 1, path
    axes = [s.batch_axis for s in manifest.states]
    verified = _independent_signatures(int8_file, companion, manifest, entry, axes)
    assert verified == {2: {4: "chunk_4_b2", 1: "chunk_1_b2"}, 3: {4: "chunk_4_b3", 1: "chunk_1_b3"}}
    # a companion quantized all int8 against that file is not the same computation: the check refuses it
    states = [(s.input, s.output) for s in manifest.states]
    quantize_batch_companion(tiny_dir / entry.batch_file.path, tiny_dir / "model.int8.tflite", companion,
                             manifest.file("tflite", "int8").quantization, states)
    assert _independent_signatures(int8_file, companion, manifest, entry, axes) == {}
