"""Cost of the model-directory checks at load, side by side in one run: parsing + schema validation of
manifest.json, sha256 of each model file, and the ONNX external-data scan (protobuf walk without onnx).

    python benchmarks/bench_model_dir_checks.py [MODEL_DIR]   (default: the shipped models/kws/export)
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from lstm_edge.runtime.manifest import MANIFEST_NAME, Manifest, parse_json, schema_validator, sha256_of
from lstm_edge.runtime.onnx_scan import external_tensors

REPEATS = 50


def median_ms(action) -> float:
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2] * 1e3


def main() -> None:
    import lstm_edge

    model_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(lstm_edge.__file__).parent / "models/kws/export"
    document = parse_json(model_dir / MANIFEST_NAME)
    validator = schema_validator()
    rows = {"parse manifest.json": median_ms(lambda: parse_json(model_dir / MANIFEST_NAME)),
            "schema validation": median_ms(lambda: validator.validate(document)),
            "Manifest.load (parse + validate + build)": median_ms(lambda: Manifest.load(model_dir))}
    for entry in Manifest.load(model_dir).files:
        path = model_dir / entry.path
        rows[f"sha256 {entry.path} ({entry.bytes} B)"] = median_ms(lambda path=path: sha256_of(path))
        if entry.format == "onnx":
            data = path.read_bytes()
            rows[f"external-data scan {entry.path}"] = median_ms(lambda data=data: external_tensors(data))
    for name, ms in rows.items():
        print(f"{name:60s} {ms:8.3f} ms")
    out = Path(__file__).parent / "results" / "model_dir_checks.json"
    out.write_text(json.dumps({"model_dir": model_dir.name, "repeats": REPEATS, "median_ms": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
