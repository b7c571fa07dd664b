"""A quick side-by-side timing of float and int8 per backend, so ``quantize`` can say which precision is faster
for this model on this machine (int8 is not always faster: small models can lose to float)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from lstm_edge.runtime.backends import engine_available, for_format
from lstm_edge.runtime.manifest import Manifest, example_chunk
from lstm_edge.runtime.model import StreamingModel


def compare_precisions(model_dir: str | Path, chunk_sizes: tuple[int, ...] = (1, 10), rounds: int = 15,
                       per_round: int = 20) -> list[dict[str, Any]]:
    """Median microseconds per push of float and int8, interleaved, per backend and chunk size, and the faster."""
    manifest = Manifest.load(model_dir)
    rows = []
    for fmt in sorted({f.format for f in manifest.files}):
        backend = for_format(fmt).name
        if not (engine_available(backend) and manifest.has_file(fmt, "float") and manifest.has_file(fmt, "int8")):
            continue
        models = {p: StreamingModel.load(model_dir, backend=backend, precision=p) for p in ("float", "int8")}
        for frames in chunk_sizes if manifest.kind == "sequence" else (1,):
            x = example_chunk(manifest, frames if manifest.kind == "sequence" else 1, np.random.default_rng(0))
            streams = {p: m.create_stream() for p, m in models.items()}
            samples: dict[str, list[float]] = {p: [] for p in streams}
            for stream in streams.values():
                for _ in range(per_round):
                    stream.push(x)
            for _ in range(rounds):
                for precision, stream in streams.items():
                    start = time.perf_counter()
                    for _ in range(per_round):
                        stream.push(x)
                    samples[precision].append((time.perf_counter() - start) / per_round * 1e6)
            medians = {p: float(np.median(v)) for p, v in samples.items()}
            rows.append({"backend": backend, "chunk_frames": frames, "float_us": medians["float"],
                         "int8_us": medians["int8"], "faster": min(medians, key=medians.__getitem__),
                         "int8_over_float": medians["int8"] / medians["float"]})
    return rows


def format_recommendation(rows: list[dict[str, Any]]) -> str:
    lines = ["speed here (median us per push, float vs int8, measured side by side):"]
    for row in rows:
        note = "" if row["faster"] == "int8" else "  <- int8 is SLOWER than float here"
        lines.append(f"  {row['backend']:7s} T={row['chunk_frames']:<3d} float {row['float_us']:8.1f}  int8 "
                     f"{row['int8_us']:8.1f}  (x{row['int8_over_float']:.2f}){note}")
    for backend in sorted({r["backend"] for r in rows}):
        faster = {r["faster"] for r in rows if r["backend"] == backend}
        choice = faster.pop() if len(faster) == 1 else "depends on chunk size (see above)"
        lines.append(f"recommended for {backend} on this machine: {choice}")
    return "\n".join(lines)
