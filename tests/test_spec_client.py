"""Acceptance test of the model-directory spec: tests/spec_client.py, written from docs/manifest.md with numpy and
the engines only, reproduces the project's frontend and model outputs on directories the project writes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lstm_edge.export import export
from lstm_edge.quantize import quantize
from lstm_edge.runtime.frontend import LogMelConfig, LogMelFrontend
from lstm_edge.runtime.manifest import Manifest
from lstm_edge.runtime.model import StreamingModel

import zoo

CLIENT = Path(__file__).with_name("spec_client.py")
CHUNK = 7  # not a signature length: TFLite chunks are composed (7 = 7 x 1, 10 + 4 x 1 ...)
# The client runs with lstm_edge unimportable: any `import lstm_edge` in it fails.
LAUNCH = ("import runpy, sys; sys.modules['lstm_edge'] = None; sys.argv = sys.argv[1:]; "
          "runpy.run_path(sys.argv[0], run_name='__main__')")


def run_client(model_dir: Path, out: Path) -> dict[str, np.ndarray]:
    done = subprocess.run([sys.executable, "-c", LAUNCH, str(CLIENT), str(model_dir), str(out), "--chunk", str(CHUNK)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    with np.load(out) as arrays:
        return dict(arrays)


def runtime_outputs(model_dir: Path, backend: str, precision: str) -> np.ndarray:
    model = StreamingModel.load(model_dir, backend=backend, precision=precision)
    data = np.load(model_dir / "reference" / "input.npy")
    stream = model.create_stream()
    if model.manifest.kind == "step":
        return np.stack([stream.push(row) for row in data])
    return np.concatenate([stream.push(data[i:i + CHUNK]) for i in range(0, len(data), CHUNK)])


def compare_with_runtime(model_dir: Path, results: dict[str, np.ndarray]) -> None:
    manifest = Manifest.load(model_dir)
    assert {f"{f.format}/{f.precision}" for f in manifest.files} <= set(results)
    for entry in manifest.files:
        backend = "onnx" if entry.format == "onnx" else "litert"
        expected = runtime_outputs(model_dir, backend, entry.precision)
        got = results[f"{entry.format}/{entry.precision}"]
        assert got.shape == expected.shape
        assert float(np.abs(got - expected).max()) <= 1e-5, entry.key
    if manifest.frontend is not None:
        pcm = np.load(model_dir / manifest.reference["frontend_input"])
        features = LogMelFrontend(LogMelConfig.from_dict(manifest.frontend)).compute(pcm)
        assert results["features"].shape == features.shape and features.shape[0] > 10
        assert float(np.abs(results["features"] - features).max()) <= 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("name", [*zoo.SEQUENCE_MODELS, *zoo.STEP_MODELS])
def test_spec_client_matches_the_runtime_on_zoo_models(name, tmp_path):
    torch.set_num_threads(1)
    model, example = zoo.build(name)
    out = tmp_path / name
    export(model, example, out, formats=("onnx", "tflite"), chunk_sizes=(10, 1))
    # ONNX GRU has no integer form in onnxruntime: quantize its TFLite file only.
    quantize(out, formats=["tflite"] if name == "gru" else None)
    compare_with_runtime(out, run_client(out, tmp_path / "client.npz"))


@pytest.mark.slow
def test_spec_client_handles_static_int8_io(tmp_path):
    torch.set_num_threads(1)
    model, example = zoo.build("feature_lstm")
    out = tmp_path / "static"
    export(model, example, out, formats=("tflite",), chunk_sizes=(10, 1))
    calibration = [zoo.random_input("feature_lstm", 200, seed)[0].numpy() for seed in range(3)]
    quantize(out, calibration=calibration, mode="static")
    entry = Manifest.load(out).file("tflite", "int8")
    assert entry.quantization["io_dtype"] in ("int16", "int16/int8") and set(entry.quantization["io_quantization"]) == {
        "chunk_1"}
    compare_with_runtime(out, run_client(out, tmp_path / "client.npz"))


def export_shipped_kws(out: Path) -> Path:
    """The shipped keyword spotter exported as `lstm-edge demo` does (export + dynamic int8), into ``out``."""
    from lstm_edge.recipes.kws.model import feature_normalization, load_shipped_model, shipped_model_dir
    from lstm_edge.runtime.audio import load_mono
    from lstm_edge.runtime.kws import DetectorConfig

    model, config = load_shipped_model()
    frontend_config = LogMelConfig.from_dict(config["frontend"])
    audio, _ = load_mono(shipped_model_dir() / "demo.wav", frontend_config.sample_rate)
    features = LogMelFrontend(frontend_config).compute(audio)
    export(model, torch.from_numpy(features[None, :10]), out, formats=("onnx", "tflite"), chunk_sizes=(10, 1),
           labels=config["labels"], frontend=frontend_config.to_dict(feature_normalization(model)), name="kws-lstm",
           output_semantics="logits", detector=DetectorConfig().to_manifest(clip_rule=config["clip_rule"]),
           reference_input=features)
    quantize(out)
    return out


@pytest.mark.slow
def test_spec_client_matches_the_runtime_on_the_reexported_keyword_spotter(tmp_path):
    torch.set_num_threads(1)
    out = export_shipped_kws(tmp_path / "kws")
    manifest = Manifest.load(out)
    assert manifest.schema_version == 2 and manifest.output.semantics == "logits"
    normalization = manifest.frontend["feature_normalization"]
    assert normalization["where"] == "graph" and len(normalization["mean"]) == 40
    assert manifest.detector["clip_rule"]["window_frames"] >= 1
    compare_with_runtime(out, run_client(out, tmp_path / "client.npz"))


def test_spec_client_runs_the_batch_signatures_of_the_shipped_keyword_spotter(tmp_path):
    """From the spec alone, 16 streams at once through the shipped TFLite files' 16-stream signatures give what the
    runtime's StreamBatch gives on the same streams (and stream 0 what a stream alone gives: the client checks)."""
    model_dir = Path(__file__).resolve().parents[1] / "models" / "kws" / "export"
    results = run_client(model_dir, tmp_path / "client.npz")
    data = np.load(model_dir / "reference" / "input.npy")
    for precision in ("float", "int8"):
        got = results[f"tflite/{precision}/batch"]
        assert got.shape[:2] == (16, len(data))
        model = StreamingModel.load(model_dir, backend="litert", precision=precision)
        batch = model.create_batch(16)
        copies = np.stack([np.roll(data, 37 * k, axis=0) for k in range(16)])
        expected = np.concatenate([np.stack(batch.push(copies[:, i:i + CHUNK]))
                                   for i in range(0, len(data), CHUNK)], axis=1)
        assert float(np.abs(got - expected).max()) <= 1e-5, precision
        assert float(np.abs(got[0] - results[f"tflite/{precision}"]).max()) <= 1e-6


def test_the_client_imports_nothing_from_lstm_edge():
    source = CLIENT.read_text()
    assert "lstm_edge" not in source.replace("imports nothing from lstm_edge", "")


@pytest.mark.parametrize("adaptive", [False, True])
def test_spec_client_scores_text_like_the_runtime(tmp_path, adaptive):
    """The language model's bits per character, with and without the adaptive context mixing, from the spec alone."""
    import json
    import shutil

    from lstm_edge.runtime.adaptive import AdaptiveSettings
    from lstm_edge.runtime.text import TextModel

    folder = shutil.copytree(Path(__file__).resolve().parents[1] / "models" / "text" / "lm" / "export",
                             tmp_path / "lm")
    manifest = json.loads((folder / "manifest.json").read_text())
    if adaptive:  # small tables: slots are shared between contexts, so the check bytes matter
        manifest["extra"]["text"]["adaptive"] = AdaptiveSettings(max_order=4, table_bits=10).to_manifest()
    (folder / "manifest.json").write_text(json.dumps(manifest))
    text = ("The frobnicator reads its configuration at start-up; the frobnicator rereads it on SIGHUP. " * 4
            + "Unknown characters: \u00e9\u2603.")
    (tmp_path / "text.txt").write_text(text, encoding="utf-8")
    done = subprocess.run([sys.executable, "-c", LAUNCH, str(CLIENT), str(folder), str(tmp_path / "out.npz"),
                           "--chunk", str(CHUNK), "--text", str(tmp_path / "text.txt")],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    with np.load(tmp_path / "out.npz") as arrays:
        client = float(arrays["text/bits_per_char"])
    runtime = TextModel(StreamingModel.load(folder, backend="onnx")).score(text)
    assert abs(client - runtime) <= 1e-5, (client, runtime)
    fixed = TextModel(StreamingModel.load(folder, backend="onnx"), adaptive=False).score(text)
    assert (runtime < fixed - 0.3) if adaptive else runtime == fixed
