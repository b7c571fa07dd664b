"""Helpers shared by the benchmark scripts: a reference model, and interleaved timing of several callables."""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable, Mapping
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def reference_model():
    """The reference model: Linear 40->64, LSTM 64x2, Linear 64->12 (seeded)."""
    import torch
    from torch import nn

    class Reference(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inp = nn.Linear(40, 64)
            self.lstm = nn.LSTM(64, 64, num_layers=2, batch_first=True)
            self.out = nn.Linear(64, 12)

        def forward(self, x):
            return self.out(self.lstm(torch.relu(self.inp(x)))[0])

    torch.manual_seed(0)
    return Reference().eval()


def interleaved_medians(calls: Mapping[str, Callable[[], object]], repeats: int, rounds: int = 20) -> dict[str, float]:
    """Median microseconds per call of each callable, timed in alternating rounds so drift hits all alike."""
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for call in calls.values():
        for _ in range(200):
            call()
    per_round = max(repeats // rounds, 1)
    clock = time.perf_counter_ns
    for _ in range(rounds):
        for name, call in calls.items():
            for _ in range(per_round):
                start = clock()
                call()
                samples[name].append((clock() - start) / 1000.0)
    return {name: statistics.median(values) for name, values in samples.items()}


def machine() -> dict[str, str]:
    return {"machine": platform.machine(), "python": platform.python_version(), "processor": platform.processor()}


def save(name: str, payload: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2) + "\n")
    return path
