"""``lstm-edge bench``: what a model directory costs on this device, per backend x precision.

Runs on the device with numpy plus an engine only (no torch, no onnx). For each model file whose engine is
installed: engine import time (the first import in this process), load time, per-chunk latency p50/p99 with the
state carried, per-frame time and the real-time factor (when the manifest has an audio frontend), and the
process's peak RSS. Flags int8 files that are slower than float here.
"""

from __future__ import annotations

import importlib
import platform
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lstm_edge.runtime import backends
from lstm_edge.runtime.errors import InputError, expected_got
from lstm_edge.runtime.manifest import PRECISIONS, Manifest, example_chunk
from lstm_edge.runtime.model import StreamingModel

WARMUP_CHUNKS = 20
MIN_CHUNKS = 50
RESULT_FIELDS = ("backend", "precision", "engine", "import_seconds", "load_seconds", "chunks", "chunk_frames",
                 "p50_us", "p99_us", "mean_us", "per_frame_us", "real_time_factor", "peak_rss_mb")


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def frame_seconds(manifest: Manifest) -> float | None:
    """Seconds of audio per model frame (hop / sample rate), or None without an audio frontend."""
    frontend = manifest.frontend or {}
    hop, rate = frontend.get("hop_length"), frontend.get("sample_rate")
    if isinstance(hop, (int, float)) and isinstance(rate, (int, float)) and hop > 0 and rate > 0:
        return float(hop) / float(rate)
    return None


def _import_engine(backend: str) -> float | None:
    """Seconds to import the engine if this is its first import here, else None (already imported)."""
    module = backends.info(backend).engine_import
    if module in sys.modules:
        return None
    start = time.perf_counter()
    importlib.import_module(module)
    return time.perf_counter() - start


def bench_one(model_dir: Path, manifest: Manifest, backend: str, precision: str, chunk_frames: int,
              seconds: float, threads: int) -> dict[str, Any]:
    """Measure one backend at one precision; the state is carried from chunk to chunk as in a real stream."""
    import_seconds = _import_engine(backend)
    start = time.perf_counter()
    model = StreamingModel.load(model_dir, backend=backend, precision=precision, threads=threads)
    load_seconds = time.perf_counter() - start
    frames = chunk_frames if manifest.input.time_axis is not None and manifest.kind == "sequence" else 1
    rng = np.random.default_rng(0)
    chunks = [example_chunk(manifest, frames, rng) for _ in range(16)]
    stream = model.create_stream()
    for i in range(WARMUP_CHUNKS):
        stream.push(chunks[i % len(chunks)])
    times_ns: list[int] = []
    deadline = time.perf_counter() + seconds
    clock = time.perf_counter_ns
    push = stream.push
    while len(times_ns) < MIN_CHUNKS or time.perf_counter() < deadline:
        chunk = chunks[len(times_ns) % len(chunks)]
        t0 = clock()
        push(chunk)
        times_ns.append(clock() - t0)
    micros = np.asarray(times_ns, dtype=np.float64) / 1e3
    p50 = float(np.percentile(micros, 50))
    hop = frame_seconds(manifest)
    return {
        "backend": backend, "precision": precision, "engine": model.engine,
        "import_seconds": None if import_seconds is None else round(import_seconds, 4),
        "load_seconds": round(load_seconds, 4), "chunks": len(times_ns), "chunk_frames": frames,
        # per_frame_us derives from the rounded p50_us, so the two agree to the 4th decimal
        "p50_us": round(p50, 2), "p99_us": round(float(np.percentile(micros, 99)), 2),
        "mean_us": round(float(micros.mean()), 2), "per_frame_us": round(round(p50, 2) / frames, 4),
        "real_time_factor": None if hop is None else round(p50 * 1e-6 / (frames * hop), 6),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
    }


def int8_flags(results: Sequence[dict[str, Any]]) -> list[str]:
    """One line per backend where the int8 file is slower than the float one here."""
    flags = []
    by_key = {(r["backend"], r["precision"]): r for r in results}
    for (backend, precision), r in sorted(by_key.items()):
        base = by_key.get((backend, "float"))
        if precision != "int8" or base is None or r["p50_us"] <= base["p50_us"]:
            continue
        slower = 100.0 * (r["p50_us"] / base["p50_us"] - 1.0)
        flags.append(f"int8 is slower than float on {backend} on this device: p50 {r['p50_us']:.1f} us vs "
                     f"{base['p50_us']:.1f} us per {r['chunk_frames']}-frame chunk (+{slower:.0f}%); "
                     "ship the float file here")
    return flags


def bench(model_dir: str | Path, backend: str | None = None, precision: str | None = None, chunk_frames: int = 10,
          seconds: float = 2.0, threads: int = 1) -> dict[str, Any]:
    """Benchmark every model file of ``model_dir`` (or the chosen backend/precision) whose engine is installed."""
    model_dir = Path(model_dir)
    manifest = Manifest.load(model_dir)
    if backend is not None:
        backends.info(backend)  # an InputError naming the choices for an unknown name
    if precision is not None and precision not in PRECISIONS:
        raise InputError(expected_got("precision", f"one of {PRECISIONS}", repr(precision)))
    if chunk_frames < 1:
        raise InputError(expected_got("chunk", "a positive number of frames", chunk_frames))
    if not seconds > 0:
        raise InputError(expected_got("seconds", "a positive duration", seconds))
    results, skipped = [], []
    for entry in manifest.files:
        name = backends.for_format(entry.format).name
        if (backend is not None and name != backend) or (precision is not None and entry.precision != precision):
            continue
        if not backends.engine_available(name):
            skipped.append({"backend": name, "precision": entry.precision,
                            "reason": f"{backends.info(name).pip_package} is not installed"})
            continue
        results.append(bench_one(model_dir, manifest, name, entry.precision, chunk_frames, seconds, threads))
    if not results and not skipped:
        have = ", ".join(f.key for f in manifest.files) or "none"
        raise InputError(expected_got("model files to benchmark", f"backend={backend} precision={precision}",
                                      f"only {have}"))
    return {
        "model": manifest.name, "model_dir": str(model_dir), "machine": platform.machine(),
        "python": platform.python_version(), "threads": threads, "frame_seconds": frame_seconds(manifest),
        "results": results, "skipped": skipped, "flags": int8_flags(results),
    }


def format_table(report: dict[str, Any]) -> str:
    """The report as a text table."""
    lines = [f"{report['model']} on {report['machine']} (Python {report['python']}, {report['threads']} thread(s))"]
    header = f"{'backend':8} {'prec':5} {'import s':>8} {'load s':>7} {'frames':>6} {'p50 us':>9} {'p99 us':>9} " \
             f"{'us/frame':>9} {'RTF':>9} {'peak MB':>8}  engine"
    lines += [header, "-" * len(header)]
    for r in report["results"]:
        imp = "-" if r["import_seconds"] is None else f"{r['import_seconds']:.3f}"
        rtf = "-" if r["real_time_factor"] is None else f"{r['real_time_factor']:.5f}"
        lines.append(f"{r['backend']:8} {r['precision']:5} {imp:>8} {r['load_seconds']:7.3f} {r['chunk_frames']:6d} "
                     f"{r['p50_us']:9.1f} {r['p99_us']:9.1f} {r['per_frame_us']:9.2f} {rtf:>9} "
                     f"{r['peak_rss_mb']:8.1f}  {r['engine']}")
    for s in report["skipped"]:
        lines.append(f"{s['backend']:8} {s['precision']:5} skipped: {s['reason']}")
    if report["frame_seconds"] is None:
        lines.append("no audio frontend in the manifest: no real-time factor (us/frame is the time per model frame)")
    lines.append("peak MB is the process peak so far (it includes the rows above); import s is the engine's first "
                 "import in this process ('-': already imported)")
    lines += [f"FLAG: {flag}" for flag in report["flags"]]
    return "\n".join(lines)
