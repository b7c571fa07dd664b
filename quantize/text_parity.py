"""The text part of the parity gate: bits per character of each file on the stored reference text.

For a language model (manifest ``extra.text.task == "language_model"``) row t of the output predicts token t+1 of
the reference input, so every file's bits per character on it follows from the outputs ``verify`` already
computes. Gate: int8 may cost at most ``tolerances.int8_bits_per_char_increase`` bits per character over the float
file of the same format.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from lstm_edge.runtime.manifest import Manifest
from lstm_edge.runtime.text import log_softmax

TOLERANCE_KEY = "int8_bits_per_char_increase"


def is_language_model(manifest: Manifest) -> bool:
    return manifest.tokenizer is not None and (manifest.extra.get("text") or {}).get("task") == "language_model"


def bits_per_char(reference_ids: np.ndarray, logits: np.ndarray) -> float:
    """Mean bits per predicted token: row t of ``logits`` scores ``reference_ids[t + 1]``."""
    targets = np.asarray(reference_ids, dtype=np.int64)[1:]
    logp = log_softmax(np.asarray(logits)[:-1])
    return float(-logp[np.arange(len(targets)), targets].mean() / math.log(2))


def row_metrics(manifest: Manifest, reference_ids: np.ndarray, logits: np.ndarray) -> dict[str, Any]:
    """``{"bits_per_char": ...}`` for a language model's file, else nothing."""
    if not is_language_model(manifest):
        return {}
    return {"bits_per_char": bits_per_char(reference_ids, logits)}


def gate_failures(report: Mapping[str, Any]) -> list[str]:
    """int8 files whose bits per character exceed their float file's by more than the tolerance."""
    tolerance = report["tolerances"].get(TOLERANCE_KEY)
    if tolerance is None:
        return []
    float_bpc = {r["format"]: r.get("bits_per_char") for r in report["results"] if r["precision"] == "float"}
    failures = []
    for row in report["results"]:
        reference = float_bpc.get(row["format"])
        if row["precision"] != "int8" or row.get("bits_per_char") is None or reference is None:
            continue
        increase = row["bits_per_char"] - reference
        if not increase <= tolerance:
            failures.append(f"{row['format']}/int8: {row['bits_per_char']:.4f} bits/char on the reference text, "
                            f"{increase:+.4f} over float ({reference:.4f}); allowed +{tolerance:g}")
    return failures
