"""What the exporter writes so that a model directory describes itself: the frontend reference arrays and the
contract's essentials carried inside the model files (docs/manifest.md)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

import lstm_edge
from lstm_edge.runtime.manifest import Manifest, sha256_of

TFLITE_METADATA_NAME = "lstm_edge"  # name of the TFLite metadata entry holding the essentials as UTF-8 JSON
FRONTEND_INPUT = "reference/frontend_input.npy"
FRONTEND_OUTPUT = "reference/frontend_output.npy"
FRONTEND_REFERENCE_SECONDS = 0.3


def reference_pcm(sample_rate: int, seconds: float = FRONTEND_REFERENCE_SECONDS) -> np.ndarray:
    """A fixed int16 test signal: a 200 Hz -> 3 kHz chirp at -10 dBFS plus low noise, ending in a short silence."""
    n = int(round(sample_rate * seconds))
    t = np.arange(n) / sample_rate
    sweep = 200.0 * t + (3000.0 - 200.0) * t ** 2 / (2 * seconds)
    signal = 0.3 * np.sin(2 * np.pi * sweep) + 0.01 * np.random.default_rng(5).standard_normal(n)
    signal[-n // 6:] = 0.0  # exercises the log floor
    return np.round(signal * 32767.0).astype(np.int16)


def write_frontend_reference(frontend: Mapping[str, Any], out_dir: Path) -> dict[str, str]:
    """Store a PCM excerpt ``[N]`` int16 and its features ``[frames, n_mels]`` float32 (no batch axis)."""
    from lstm_edge.runtime.frontend import LogMelConfig, LogMelFrontend

    config = LogMelConfig.from_dict(frontend)
    pcm = reference_pcm(config.sample_rate)
    features = LogMelFrontend(config).compute(pcm)
    (out_dir / "reference").mkdir(exist_ok=True)
    np.save(out_dir / FRONTEND_INPUT, pcm, allow_pickle=False)
    np.save(out_dir / FRONTEND_OUTPUT, features, allow_pickle=False)
    return {"frontend_input": FRONTEND_INPUT, "frontend_input_sha256": sha256_of(out_dir / FRONTEND_INPUT),
            "frontend_output": FRONTEND_OUTPUT, "frontend_output_sha256": sha256_of(out_dir / FRONTEND_OUTPUT)}


def essentials(manifest: Manifest) -> dict[str, Any]:
    """The manifest essentials a runtime that only sees one model file needs (no checksums, no learned values)."""
    return {
        "schema": "lstm-edge/model-essentials",
        "manifest_schema_version": manifest.schema_version,
        "producer": f"lstm-edge {lstm_edge.__version__}",
        "name": manifest.name,
        "kind": manifest.kind,
        "input": manifest.input.to_dict(),
        "output": manifest.output.to_dict(),
        "states": [{"name": s.name, "input": s.input, "output": s.output, "dtype": s.dtype, "shape": list(s.shape),
                    "init": "zeros" if s.init == "zeros" else "learned (values in manifest.json)"}
                   for s in manifest.states],
        "labels": list(manifest.labels) if manifest.labels else None,
        "frontend": dict(manifest.frontend) if manifest.frontend else None,
        "detector": dict(manifest.detector) if manifest.detector else None,
        "tokenizer": dict(manifest.tokenizer) if manifest.tokenizer else None,
        "checks": {"nonfinite_any": "nonfinite"},
    }


def add_tflite_metadata(model: Any, schema: Any, content: Mapping[str, Any]) -> None:
    """Append (or replace) the metadata entry ``lstm_edge`` of a TFLite ``ModelT`` (object API): a new buffer
    holding ``content`` as UTF-8 JSON."""
    data = np.frombuffer(json.dumps(content, sort_keys=True).encode("utf-8"), dtype=np.uint8)
    buffer = schema.BufferT()
    buffer.data = data
    model.buffers = list(model.buffers or []) + [buffer]
    entry = schema.MetadataT()
    entry.name = TFLITE_METADATA_NAME
    entry.buffer = len(model.buffers) - 1
    kept = [m for m in (model.metadata or []) if (m.name.decode() if isinstance(m.name, bytes) else m.name)
            != TFLITE_METADATA_NAME]
    model.metadata = kept + [entry]


def read_tflite_metadata(path: Path) -> dict[str, Any] | None:
    """The ``lstm_edge`` metadata of a .tflite file (None when it has none)."""
    from ai_edge_litert import schema_py_generated as schema

    raw = Path(path).read_bytes()
    model = schema.Model.GetRootAsModel(raw, 0)
    for index in range(model.MetadataLength()):
        entry = model.Metadata(index)
        if entry.Name().decode() == TFLITE_METADATA_NAME:
            buffer = model.Buffers(entry.Buffer())
            if buffer.DataLength():
                data = buffer.DataAsNumpy().tobytes()
            else:  # large-model layout: the buffer's bytes sit after the flatbuffer, at offset/size
                data = raw[buffer.Offset():buffer.Offset() + buffer.Size()]
            return json.loads(data.decode("utf-8"))
    return None
