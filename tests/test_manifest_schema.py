"""The manifest's JSON Schema: the runtime's own validator and the real ``jsonschema`` agree on every manifest the
project writes and on broken ones; hostile model directories (deep JSON, symlinks out, ONNX external data) are
refused with one ManifestError/ModelFileError; the model files describe themselves."""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path

import jsonschema
import numpy as np
import onnx
import pytest

import lstm_edge
from lstm_edge.export.spec_files import read_tflite_metadata
from lstm_edge.quantize import quantize
from lstm_edge.runtime.errors import InputError, ManifestError, ModelFileError
from lstm_edge.runtime.manifest import SCHEMA_FILE, Manifest, schema_validator
from lstm_edge.runtime.model import StreamingModel
from lstm_edge.runtime.onnx_scan import external_tensors
from lstm_edge.runtime.schema_check import SchemaValidator

import zoo

SHIPPED = Path(lstm_edge.__file__).parent / "models" / "kws" / "export"
SCHEMA = json.loads(SCHEMA_FILE.read_text())
REFERENCE = jsonschema.Draft202012Validator(SCHEMA)


def both_accept(document: dict) -> None:
    REFERENCE.validate(document)
    schema_validator().validate(document)
    Manifest.from_dict(document)


def test_the_schema_is_valid_draft_2020_12_and_uses_only_keywords_the_runtime_checks():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    with pytest.raises(ManifestError, match="not supported"):
        SchemaValidator({"type": "object", "oneOf": [{"type": "null"}]})


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> dict[str, Path]:
    """Model directories as the project writes them: every zoo model (float, plus int8 for two of them)."""
    from lstm_edge.export import export

    out = {}
    for name in [*zoo.SEQUENCE_MODELS, *zoo.STEP_MODELS]:
        model, example = zoo.build(name)
        folder = tmp_path_factory.mktemp(name)
        export(model, example, folder, formats=("onnx", "tflite"), chunk_sizes=(10, 1),
               labels=[f"c{i}" for i in range(7)] if name == "feature_lstm" else None)
        out[name] = folder
    quantize(out["feature_lstm"])
    quantize(out["cell_step"])
    return out


def test_every_manifest_the_project_writes_passes_both_validators(written):
    documents = [json.loads((folder / "manifest.json").read_text()) for folder in written.values()]
    # The shipped keyword spotter's manifest as schema v1 wrote it: v1 directories still load.
    documents.append(json.loads((Path(__file__).parent / "data" / "manifest_v1_kws.json").read_text()))
    assert {d["schema_version"] for d in documents} == {1, 2}
    for document in documents:
        both_accept(document)
    feature = Manifest.load(written["feature_lstm"])
    assert feature.output.semantics == "logits" and Manifest.load(written["gru"]).output.semantics == "values"
    assert {f.key for f in feature.files} == {"onnx/float", "tflite/float", "onnx/int8", "tflite/int8"}
    assert all(f.checks == {"nonfinite_any": "nonfinite"} for f in feature.files)
    learned = Manifest.load(written["learned_h0"])
    assert all(s.init != "zeros" for s in learned.states)


def _set(document: dict, path: tuple, value) -> dict:
    changed = copy.deepcopy(document)
    target = changed
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return changed


BROKEN = [
    (("inputs",), 5, "inputs"),
    (("files", 0, "bytes"), "abc", "files[0].bytes"),
    (("files", 0, "checks"), "str", "files[0].checks"),
    (("files", 1, "chunk_sizes"), 10, "files[1].chunk_sizes"),
    (("files", 0, "sha256"), "abc", "files[0].sha256"),
    (("files", 0, "path"), "../outside.onnx", "files[0].path"),
    (("files", 0, "path"), "/etc/passwd", "files[0].path"),
    (("states", 0, "shape"), [2, 0, 128], "states[0].shape[1]"),
    (("states", 0, "init"), "ones", "states[0].init"),
    (("inputs", 0, "dtype"), "float16", "inputs[0].dtype"),
    (("inputs", 0, "shape"), [1, "t", 40], "inputs[0].shape[1]"),
    (("labels",), "yes,no", "labels"),
    (("name",), "kws\nExecStartPre=/bin/sh", "name"),
    (("kind",), "batch", "kind"),
    (("frontend", "n_fft"), "512", "frontend.n_fft"),
    (("frontend", "window"), "hamming", "frontend.window"),
    (("tolerances", "float_max_abs_diff"), "small", "tolerances.float_max_abs_diff"),
    (("reference",), [], "reference"),
    (("outputs", 0, "semantics"), "scores", "outputs[0].semantics"),
    (("schema_version",), True, "schema_version"),
    (("unexpected",), 1, "unexpected"),
]


@pytest.mark.parametrize("path, value, field", BROKEN, ids=[b[2] for b in BROKEN])
def test_both_validators_refuse_the_same_broken_manifests(path, value, field):
    document = _set(json.loads((SHIPPED / "manifest.json").read_text()), path, value)
    assert not REFERENCE.is_valid(document)
    with pytest.raises(ManifestError) as caught:
        Manifest.from_dict(document)
    message = str(caught.value)
    assert field in message and "expected" in message and "got" in message


def test_rules_across_fields_are_checked_after_the_schema():
    document = json.loads((SHIPPED / "manifest.json").read_text())
    for path, value, message in [(("labels",), ["yes", "no"], "12 labels"),
                                 (("states", 0, "init"), [0.5, 0.5], "values")]:
        changed = _set(document, path, value)
        assert REFERENCE.is_valid(changed)  # not expressible in JSON Schema
        with pytest.raises(ManifestError, match=message):
            Manifest.from_dict(changed)


def test_broken_v2_sections_are_refused_by_both(written):
    document = json.loads((written["feature_lstm"] / "manifest.json").read_text())
    broken = [
        {"detector": {"type": "keyword_spotting"}},
        {"tokenizer": {"type": "chars", "vocab": ["ab"], "unknown_id": 0}},
        {"tokenizer": {"type": "words"}},
        {"frontend": {"type": "log_mel"}},
    ]
    for change in broken:
        changed = dict(document, **change)
        assert not REFERENCE.is_valid(changed)
        with pytest.raises(ManifestError):
            Manifest.from_dict(changed)
    chars = {"type": "chars", "vocab": ["a", "b"], "unknown_id": 1}
    for good in ({"tokenizer": {"type": "bytes"}}, {"tokenizer": chars}):
        both_accept(dict(document, **good))


def _copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def test_pathological_json_gives_one_manifest_error(tmp_path):
    folder = _copy(SHIPPED, tmp_path / "deep")
    (folder / "manifest.json").write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(ManifestError, match="nested"):
        Manifest.load(folder)
    (folder / "manifest.json").write_text('{"schema": NaN}')
    with pytest.raises(ManifestError, match="finite"):
        Manifest.load(folder)


def test_symlinks_out_of_the_model_directory_are_refused(tmp_path):
    outside = _copy(SHIPPED, tmp_path / "outside")
    folder = _copy(SHIPPED, tmp_path / "model")
    # A model file that points outside (even at a file with the right checksum) is refused, without its sha256.
    (folder / "model.onnx").unlink()
    os.symlink(outside / "model.onnx", folder / "model.onnx")
    with pytest.raises(ModelFileError, match="resolves outside") as caught:
        StreamingModel.load(folder, backend="onnx")
    assert Manifest.load(outside).file("onnx", "float").sha256 not in str(caught.value)
    # A sub-folder that points outside.
    shutil.rmtree(folder / "reference")
    os.symlink(outside / "reference", folder / "reference")
    from lstm_edge.runtime.manifest import check_reference

    with pytest.raises(ManifestError, match="resolves outside"):
        check_reference(folder, Manifest.load(folder).reference, "input")
    # The manifest itself.
    (folder / "manifest.json").unlink()
    os.symlink(outside / "manifest.json", folder / "manifest.json")
    with pytest.raises(ManifestError, match="resolves outside"):
        Manifest.load(folder)
    # A symlink that stays inside is fine.
    inside = _copy(SHIPPED, tmp_path / "inside")
    os.rename(inside / "model.onnx", inside / "real.onnx")
    os.symlink("real.onnx", inside / "model.onnx")
    StreamingModel.load(inside, backend="onnx")


def test_onnx_external_data_is_refused(written, tmp_path):
    folder = _copy(written["feature_lstm"], tmp_path / "external")
    graph = onnx.load(folder / "model.onnx")
    assert external_tensors((folder / "model.onnx").read_bytes()) == []
    onnx.save_model(graph, folder / "model.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.bin", size_threshold=0)
    expected = {t.name for t in onnx.load(folder / "model.onnx", load_external_data=False).graph.initializer
                if t.data_location == onnx.TensorProto.EXTERNAL}
    assert expected and set(external_tensors((folder / "model.onnx").read_bytes())) == expected
    manifest = Manifest.load(folder)
    from lstm_edge.runtime.manifest import file_entry

    entry = manifest.file("onnx", "float")
    manifest.with_file(file_entry(folder, entry.path, "onnx", "float", checks=entry.checks)).save(folder)
    # onnxruntime itself would load this file and read weights.bin, which no checksum covers.
    with pytest.raises(ModelFileError, match="external data"):
        StreamingModel.load(folder, backend="onnx")


def test_the_onnx_scan_refuses_truncated_files(written):
    data = (written["gru"] / "model.onnx").read_bytes()
    with pytest.raises(ModelFileError):
        external_tensors(data[: len(data) // 2])


def test_tflite_refuses_nonfinite_chunks_in_the_graph_and_keeps_the_state(written):
    folder = written["feature_lstm"]
    for precision in ("float", "int8"):
        model = StreamingModel.load(folder, backend="litert", precision=precision)
        assert model._backend.checks_input_finite  # the graph's nonfinite output, not a numpy pass
        stream = model.create_stream()
        stream.push(np.ones((3, 20), np.float32))
        before = stream.state
        bad = np.ones((13, 20), np.float32)
        bad[11, 4] = np.inf
        with pytest.raises(InputError, match="1 NaN/inf"):
            stream.push(bad)
        assert all(np.array_equal(before[k], v) for k, v in stream.state.items())


def test_model_files_carry_the_contract(written):
    folder = written["feature_lstm"]
    manifest = Manifest.load(folder)
    for precision in ("float", "int8"):
        meta = read_tflite_metadata(folder / manifest.file("tflite", precision).path)
        assert meta["labels"] == list(manifest.labels) and meta["output"]["semantics"] == "logits"
        assert [s["name"] for s in meta["states"]] == [s.name for s in manifest.states]
        assert meta["producer"] == f"lstm-edge {lstm_edge.__version__}"
    graph = onnx.load(folder / "model.onnx")
    props = {p.key: p.value for p in graph.metadata_props}
    assert json.loads(props["lstm_edge.tolerances"]) == dict(manifest.tolerances)
    assert json.loads(props["lstm_edge.checks"]) == {"nonfinite_any": "nonfinite"}
    assert props["lstm_edge.output_semantics"] == "logits"
    assert graph.producer_name == "lstm-edge" and graph.producer_version == lstm_edge.__version__


def test_a_frontend_gets_reference_arrays(written, tmp_path):
    from lstm_edge.export import export
    from lstm_edge.runtime.frontend import LogMelConfig, LogMelFrontend
    from lstm_edge.runtime.manifest import check_reference

    model, _ = zoo.build("feature_lstm")
    config = LogMelConfig(n_mels=20)
    folder = export(model, np.zeros((1, 10, 20), np.float32), tmp_path / "fe", formats=("onnx",), frontend=config)
    manifest = Manifest.load(folder)
    assert manifest.frontend == config.to_dict() and manifest.frontend["feature_normalization"] == {"where": "none"}
    pcm = np.load(check_reference(folder, manifest.reference, "frontend_input"))
    features = np.load(check_reference(folder, manifest.reference, "frontend_output"))
    assert pcm.dtype == np.int16 and pcm.ndim == 1
    assert features.shape == (config.n_frames(len(pcm)), 20)
    assert np.array_equal(features, LogMelFrontend(config).compute(pcm))


def test_the_keyword_spotter_takes_its_settings_from_the_manifest(tmp_path):
    from lstm_edge.export import export
    from lstm_edge.runtime.frontend import LogMelConfig
    from lstm_edge.runtime.kws import DetectorConfig, KeywordSpotter

    model, _ = zoo.build("feature_lstm")
    settings = DetectorConfig(threshold=0.7, smoothing_frames=5, refractory_s=0.4)
    folder = export(model, np.zeros((1, 10, 20), np.float32), tmp_path / "kws", formats=("onnx",),
                    frontend=LogMelConfig(n_mels=20), labels=["_silence_", "_unknown_", *"abcde"],
                    detector=settings.to_manifest(clip_rule={"name": "max_smoothed_speech_window", "window_frames": 9,
                                                             "min_speech_probability": 0.4, "silence_index": 0}))
    spotter = KeywordSpotter(StreamingModel.load(folder, backend="onnx"))
    assert spotter.config == settings
    both_accept(json.loads((folder / "manifest.json").read_text()))
    # Without a detector section the defaults apply.
    assert DetectorConfig.from_manifest(None) == DetectorConfig()


def test_a_frontend_window_longer_than_its_fft_is_refused_at_load(tmp_path):
    import shutil

    folder = shutil.copytree(Path(__file__).resolve().parents[1] / "models" / "kws" / "export", tmp_path / "kws")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["frontend"]["n_fft"] = 256  # win_length stays 400: the schema alone cannot see it
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ManifestError, match=r"frontend.win_length: expected at most n_fft \(256\), got 400"):
        Manifest.load(folder)
