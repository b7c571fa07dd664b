"""``bench --plot``: p50 latency per chunk size, backend and precision, as a grouped bar chart (host-side;
matplotlib from the ``plot`` extra, never imported by the runtime)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lstm_edge.plotting import import_pyplot


def plot_bench(reports: Sequence[Mapping[str, Any]], out_path: str | Path) -> Path:
    """One group of bars per chunk size (one ``bench`` report each), one bar per backend x precision."""
    plt = import_pyplot()
    variants = sorted({(r["backend"], r["precision"]) for report in reports for r in report["results"]})
    chunk_sizes = [report["results"][0]["chunk_frames"] for report in reports if report["results"]]
    figure, axes = plt.subplots(figsize=(7, 4))
    width = 0.8 / max(len(variants), 1)
    for index, (backend, precision) in enumerate(variants):
        values = [next((r["p50_us"] for r in report["results"] if (r["backend"], r["precision"]) ==
                        (backend, precision)), np.nan) for report in reports if report["results"]]
        axes.bar(np.arange(len(chunk_sizes)) + index * width, values, width, label=f"{backend} {precision}")
    axes.set_xticks(np.arange(len(chunk_sizes)) + width * (len(variants) - 1) / 2,
                    [f"T={size}" for size in chunk_sizes])
    axes.set(ylabel="p50 latency per push (us)", title=f"{reports[0]['model']} on {reports[0]['machine']}, "
                                                        f"{reports[0]['threads']} thread(s)")
    axes.legend(fontsize=8)
    figure.tight_layout()
    out_path = Path(out_path)
    figure.savefig(out_path, dpi=110)
    plt.close(figure)
    return out_path
