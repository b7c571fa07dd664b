"""Every model directory the project ships is what the current exporter writes: schema version, output semantics,
producer, the contract inside each model file (ONNX metadata, TFLite metadata), only the opset domains a graph uses,
C weight files, and checksums that match. A shipped directory older than the exporter fails here; re-export it with
its recipe (README)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

import lstm_edge
from lstm_edge.export.spec_files import read_tflite_metadata
from lstm_edge.runtime.manifest import SCHEMA_VERSION, Manifest, check_batch_file, check_file
from lstm_edge.runtime.model import StreamingModel

MODELS = Path(__file__).resolve().parents[1] / "models"
SHIPPED = {"kws": ("kws/export", "logits"), "kws-small": ("kws_small/export", "logits"),
           "asr": ("asr/export", "log_probabilities"),
           "text-lm": ("text/lm/export", "logits"), "text-classifier": ("text/classifier/export", "logits"),
           "text-topics": ("text/topics/export", "logits")}
NO_C_FILES = {"text/topics/export"}  # hashed n-grams: no C layer for them
BATCH_FILES = {"kws/export"}  # TFLite batch signatures in companion files (float and int8)


@pytest.fixture(params=sorted(SHIPPED), scope="module")
def shipped(request) -> tuple[Path, Manifest, str]:
    folder, semantics = SHIPPED[request.param]
    return MODELS / folder, Manifest.load(MODELS / folder), semantics


def test_manifest_is_current(shipped):
    folder, manifest, semantics = shipped
    raw = json.loads((folder / "manifest.json").read_text())
    assert raw["schema_version"] == SCHEMA_VERSION == manifest.schema_version
    assert manifest.output.semantics == semantics
    assert raw["producer"]["lstm_edge"] == lstm_edge.__version__
    formats = ("onnx", "tflite") if folder.relative_to(MODELS).as_posix() in NO_C_FILES else ("onnx", "tflite", "c")
    assert {(f.format, f.precision) for f in manifest.files} == {
        (fmt, precision) for fmt in formats for precision in ("float", "int8")}
    for entry in manifest.files:
        check_file(folder, entry)  # sha256 and size as recorded
        assert (folder / entry.path).stat().st_size == entry.bytes
        if entry.batch_file is not None:
            assert check_batch_file(folder, entry).stat().st_size == entry.batch_file.bytes
    batched = {entry.key for entry in manifest.files if entry.batch_file is not None}
    assert batched == ({"tflite/float", "tflite/int8"} if folder.relative_to(MODELS).as_posix() in BATCH_FILES
                       else set())
    # every model file on disk is one the manifest lists (and the other way round)
    listed = {entry.path for entry in manifest.files} | {entry.batch_file.path for entry in manifest.files
                                                         if entry.batch_file is not None}
    assert {p.name for p in folder.iterdir() if p.suffix in (".onnx", ".tflite", ".lec")} == listed


def test_onnx_files_carry_the_contract_and_declare_only_the_domains_they_use(shipped):
    folder, manifest, semantics = shipped
    for precision in ("float", "int8"):
        graph = onnx.load(str(folder / manifest.file("onnx", precision).path))
        props = {p.key: p.value for p in graph.metadata_props}
        assert props["lstm_edge.output_semantics"] == semantics
        assert props["lstm_edge.schema_version"] == str(SCHEMA_VERSION)
        assert props["lstm_edge.version"] == lstm_edge.__version__
        if manifest.labels:
            assert json.loads(props["lstm_edge.labels"]) == list(manifest.labels)
        used = {node.domain or "" for node in graph.graph.node}
        declared = {opset.domain or "" for opset in graph.opset_import}
        assert declared - {""} <= used, f"{precision}: unused opset domains {sorted(declared - used - {''})}"
        if precision == "float":
            assert (graph.producer_name, graph.producer_version) == ("lstm-edge", lstm_edge.__version__)


def test_tflite_files_carry_the_contract(shipped):
    folder, manifest, semantics = shipped
    for precision in ("float", "int8"):
        meta = read_tflite_metadata(folder / manifest.file("tflite", precision).path)
        assert meta is not None, precision
        assert meta["producer"] == f"lstm-edge {lstm_edge.__version__}"
        assert meta["output"]["semantics"] == semantics
        assert meta["labels"] == (list(manifest.labels) if manifest.labels else None)
        assert [s["name"] for s in meta["states"]] == [s.name for s in manifest.states]
        entry = manifest.file("tflite", precision)
        if entry.batch_file is not None:  # the companion carries the same contract; the one-stream file no batch keys
            assert read_tflite_metadata(folder / entry.batch_file.path) == meta
            from ai_edge_litert.interpreter import Interpreter

            keys = set(Interpreter(model_path=str(folder / entry.path)).get_signature_list())
            assert keys == set(entry.signatures.values()), precision
            batch_keys = set(Interpreter(model_path=str(folder / entry.batch_file.path)).get_signature_list())
            assert batch_keys == {k for table in entry.batch_signatures.values() for k in table.values()}


def test_every_engine_reproduces_the_reference_output_in_float(shipped):
    folder, manifest, _ = shipped
    x = np.load(folder / "reference" / "input.npy")
    expected = np.load(folder / "reference" / "output.npy")
    c_files = folder.relative_to(MODELS).as_posix() not in NO_C_FILES
    for backend in ("onnx", "litert", "native") if c_files else ("onnx", "litert"):
        model = StreamingModel.load(folder, backend=backend)
        if manifest.kind == "step":  # one step per row of the reference
            state, rows = model.initial_state(), []
            for step_input in x:
                y_step, state = model.step(step_input, state)
                rows.append(y_step)
            y = np.stack(rows)
        else:
            y, _ = model.step(x, model.initial_state())
        scale = 1 + np.abs(expected).max()
        assert np.abs(y - expected).max() <= manifest.tolerances["float_max_abs_diff"] * scale, backend


def test_info_names_the_output_semantics(shipped, capsys):
    from lstm_edge.cli import main

    folder, manifest, semantics = shipped
    assert main(["info", str(folder)]) == 0
    [line] = [line for line in capsys.readouterr().out.splitlines() if line.strip().startswith("output ")]
    assert line.strip().startswith(f"output {manifest.output.name}: float32") and line.endswith(f" ({semantics})")


def test_sequence_models_take_many_streams_per_onnx_call(shipped):
    """Every shipped sequence model's float ONNX file declares its batch axis, and one StreamBatch call on ONNX
    gives each of three streams (the reference input, shifted) what a stream of its own gives."""
    from lstm_edge.runtime.batch import GraphBatchEngine

    folder, manifest, _ = shipped
    if manifest.kind == "step":  # step models have the example's fixed shape: no axis
        assert manifest.file("onnx", "float").batch is None
        return
    assert manifest.file("onnx", "float").batch == "any"
    model = StreamingModel.load(folder, backend="onnx", precision="float")
    x = np.load(folder / "reference" / "input.npy")[:48]
    chunks = [np.roll(x, 7 * k, axis=0) for k in range(3)]
    batch = model.create_batch(3)
    assert isinstance(batch.engine, GraphBatchEngine)
    for got, chunk in zip(batch.push(chunks), chunks):
        expected = model.create_stream().push(chunk)
        assert np.abs(got - expected).max() <= 1e-6 * (1 + np.abs(expected).max())
