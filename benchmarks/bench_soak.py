"""Soak: 10^6 frames through ONE stream of the shipped keyword model; memory, state and reset behaviour over time.

    python benchmarks/bench_soak.py                      # onnx, 10^6 frames; writes results/soak.json
    python benchmarks/bench_soak.py --backend litert --frames 200000

The input is the log-mel features of the shipped demo recording, cycled, with seeded noise so no two chunks are
equal. Every ``--every`` frames it samples:
- RSS (VmRSS from /proc/self/status): no growth means the last sample is within a few MB of the first one after
  warm-up;
- the carried state: finite, and its largest magnitude (an LSTM's h stays in [-1, 1]; c must stay bounded);
- a reset probe: the stream's state is saved, the stream reset, a fixed probe segment pushed, the output compared
  bit for bit with a fresh stream's output on the same probe, then the saved state put back. "No drift" means
  this stays exactly equal after any number of frames: nothing but the named state carries over.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parent.parent


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=100, help="frames per push (default 100: 1 s of audio)")
    parser.add_argument("--every", type=int, default=50_000, help="frames between samples")
    parser.add_argument("--backend", default="onnx")
    parser.add_argument("--precision", default="float")
    parser.add_argument("--out", default=str(RESULTS / "soak.json"))
    args = parser.parse_args()

    from lstm_edge.runtime.audio import load_mono
    from lstm_edge.runtime.frontend import LogMelConfig, LogMelFrontend
    from lstm_edge.runtime.model import StreamingModel

    model_dir = ROOT / "models" / "kws" / "export"
    model = StreamingModel.load(model_dir, backend=args.backend, precision=args.precision)
    frontend = LogMelFrontend(LogMelConfig.from_dict(dict(model.manifest.frontend)))
    audio, _ = load_mono(ROOT / "models" / "kws" / "demo.wav", frontend.config.sample_rate)
    features = frontend.compute(audio).astype(np.float32)
    probe = features[:200]
    expected_probe = model.create_stream().push(probe)
    rng = np.random.default_rng(0)

    stream = model.create_stream()
    samples, started, pushed, probes_equal = [], time.perf_counter(), 0, True
    cursor = 0
    while pushed < args.frames:
        take = min(args.chunk, args.frames - pushed)
        idx = (cursor + np.arange(take)) % len(features)
        chunk = features[idx] + rng.normal(0, 0.1, (take, features.shape[1])).astype(np.float32)
        cursor = (cursor + take) % len(features)
        stream.push(chunk)
        pushed += take
        if pushed % args.every == 0 or pushed == args.frames:
            state = {name: value.copy() for name, value in stream.state.items()}
            finite = all(bool(np.isfinite(v).all()) for v in state.values())
            largest = {name: float(np.abs(v).max()) for name, v in state.items()}
            stream.reset()
            probe_out = stream.push(probe)
            equal = bool(np.array_equal(probe_out, expected_probe))
            probes_equal &= equal
            stream.state = state
            samples.append({"frames": pushed, "rss_mb": round(rss_mb(), 1), "state_finite": finite,
                            "state_max_abs": {k: round(v, 4) for k, v in largest.items()}, "probe_equal": equal})
    seconds = time.perf_counter() - started
    first = samples[1] if len(samples) > 1 else samples[0]  # after warm-up
    report = {
        "model": str(model_dir.relative_to(ROOT)), "engine": model.describe(), "frames": args.frames,
        "chunk_frames": args.chunk, "seconds": round(seconds, 1),
        "audio_hours": round(args.frames * frontend.config.hop_length / frontend.config.sample_rate / 3600, 2),
        "rss_mb_after_warmup": first["rss_mb"], "rss_mb_end": samples[-1]["rss_mb"],
        "rss_growth_mb": round(samples[-1]["rss_mb"] - first["rss_mb"], 1),
        "rss_mb_max": max(s["rss_mb"] for s in samples),
        "state_always_finite": all(s["state_finite"] for s in samples),
        "state_max_abs_over_run": {name: max(s["state_max_abs"][name] for s in samples)
                                   for name in samples[0]["state_max_abs"]},
        "reset_probe_always_equal": probes_equal, "samples": samples,
    }
    print(json.dumps({k: v for k, v in report.items() if k != "samples"}, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
