"""``verify --plot``: the output error along the reference stream per file, and int8 against float outputs.

Host-side only; matplotlib comes from the ``plot`` extra and is imported here, nowhere on the runtime path.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from lstm_edge.plotting import import_pyplot
from lstm_edge.runtime.backends import for_format
from lstm_edge.runtime.model import StreamingModel


def plot_parity(model_dir: str | Path, report: Mapping[str, Any], out_path: str | Path) -> Path:
    """Draw, per format x precision, |output - torch float| along the stream (max over outputs per frame), and a
    scatter of int8 against torch float outputs. Returns the PNG's path."""
    from lstm_edge.quantize.parity import _reference, stream_outputs

    plt = import_pyplot()
    model_dir = Path(model_dir)
    rows = [r for r in report["results"] if "error" not in r]
    manifest = StreamingModel.load(model_dir, backend=for_format(rows[0]["format"]).name).manifest
    ref_input, ref_output = _reference(model_dir, manifest)
    figure, (along, scatter) = plt.subplots(1, 2, figsize=(12, 4.5))
    for row in rows:
        model = StreamingModel.load(model_dir, backend=row["backend"], precision=row["precision"])
        got = stream_outputs(model, ref_input, report["chunk"])
        error = np.abs(got - ref_output).reshape(len(got), -1).max(axis=1)
        label = f"{row['format']}/{row['precision']}"
        along.semilogy(np.maximum(error, 1e-9), label=label, linewidth=0.8)
        if row["precision"] != "float":
            scatter.scatter(ref_output.ravel(), got.ravel(), s=1, alpha=0.3, label=label)
    along.set(xlabel="frame (one stream, state carried)", ylabel="max |output - torch float|",
              title=f"error along the stream, chunks of {report['chunk']}")
    along.legend(fontsize=8)
    low, high = float(ref_output.min()), float(ref_output.max())
    scatter.plot([low, high], [low, high], color="black", linewidth=0.5)
    scatter.set(xlabel="torch float output", ylabel="int8 output", title="int8 vs float outputs")
    scatter.legend(fontsize=8, markerscale=8)
    figure.tight_layout()
    out_path = Path(out_path)
    figure.savefig(out_path, dpi=110)
    plt.close(figure)
    return out_path
