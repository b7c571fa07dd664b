"""``lstm-edge listen`` streams files: its peak memory does not grow with the file's length."""

from __future__ import annotations

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_listen_memory.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_listen_memory", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_listen_peak_memory_is_flat_from_10_seconds_to_10_minutes(tmp_path):
    # 10 min of 44.1 kHz stereo is 106 MB of int16 (212 MB as float32 samples): loading it whole cannot fit in 40 MB.
    report = load_bench().measure(10, 600, tmp_path)
    assert report["long_file_mb"] > 100
    assert report["growth_mb"] < 40, report
