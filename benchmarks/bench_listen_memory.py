"""Peak memory of ``lstm-edge listen`` on a short and a long WAV file (44.1 kHz stereo, resampled as it streams).

    python benchmarks/bench_listen_memory.py            # 10 s vs 10 min; writes results/listen_memory.json

Each run is a fresh process; its peak RSS (ru_maxrss) is read from the parent. Flat memory means the long file
peaks within a few MB of the short one, although it holds 60x the samples.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import wave
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / "kws" / "export"


def write_long_wav(path: Path, seconds: float, rate: int = 44100, channels: int = 2) -> None:
    """Seeded noise with tone bursts, written one second at a time (the generator itself stays small)."""
    rng = np.random.default_rng(0)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        for second in range(int(seconds)):
            t = np.arange(rate) / rate
            tone = 0.3 * np.sin(2 * np.pi * (300 + 50 * (second % 7)) * t) * (second % 3 == 0)
            block = tone[:, None] + 0.02 * rng.standard_normal((rate, channels))
            out.writeframes((np.clip(block, -1, 1) * 32767).astype("<i2").tobytes())


def peak_rss_mb(wav: Path, model_dir: Path = MODEL_DIR) -> float:
    """Peak RSS in MB of one ``lstm-edge listen`` process on ``wav`` (fails loudly when listen fails)."""
    probe = ("import resource, subprocess, sys\n"
             "r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
             "sys.stderr.write(r.stderr)\n"
             "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n")
    command = [sys.executable, "-c", probe, sys.executable, "-m", "lstm_edge", "listen", str(model_dir), str(wav),
               "--backend", "onnx"]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    code, peak_kb = result.stdout.split()
    if code != "0":
        raise RuntimeError(f"listen failed on {wav}: {result.stderr[-2000:]}")
    return int(peak_kb) / 1024


def measure(short_seconds: float, long_seconds: float, work: Path) -> dict:
    short, long = work / "short.wav", work / "long.wav"
    write_long_wav(short, short_seconds)
    write_long_wav(long, long_seconds)
    short_mb, long_mb = peak_rss_mb(short), peak_rss_mb(long)
    return {"short_seconds": short_seconds, "long_seconds": long_seconds, "sample_rate": 44100, "channels": 2,
            "long_file_mb": round(long.stat().st_size / 1e6, 1), "short_peak_rss_mb": round(short_mb, 1),
            "long_peak_rss_mb": round(long_mb, 1), "growth_mb": round(long_mb - short_mb, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", type=float, default=10)
    parser.add_argument("--long", type=float, default=600)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        report = measure(args.short, args.long, Path(tmp))
    print(json.dumps(report, indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "listen_memory.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
