"""Choose the rejection threshold (``decoder.rejection.max_disagreement``) of an exported recognizer on validation.

Each validation utterance is streamed once as in ``evaluate.py`` (alone, then 1 s of low noise), with a rule that
rejects nothing, so every final result comes with its disagreement with the best path; a threshold keeps exactly
the results at or below it, as the runtime does. For each threshold of the sweep it prints the WER of the grammar
utterances (rejected results are deletions), the share of them with a rejected result (false rejections) and the
share of ``out_of_grammar`` utterances that still produce text (acceptance).

The rule: the threshold with the lowest out-of-grammar acceptance among those whose WER is at most
``--max-wer-increase`` (0.003: 0.3 points) above the WER without rejection; on a tie the largest threshold (the
fewest rejections). Validation only: test stays unseen. It prints the chosen settings and the ``export_model``
option that writes them into a manifest.

Run: ``python -m lstm_edge.recipes.asr.choose_rejection MODEL_DIR --data DIR [--precision float] [--out FILE.json]``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lstm_edge.recipes.asr.evaluate import OUT_OF_GRAMMAR, Run, load_recognizer, run_split, score
from lstm_edge.recipes.asr.synth import load_split, utterances
from lstm_edge.runtime.ctc import REJECTION_METHOD, RejectionRule

DEFAULT_THRESHOLDS: tuple[float, ...] = tuple(float(t) for t in np.round(np.arange(0.1, 1.0001, 0.025), 3))
MAX_WER_INCREASE = 0.003


@dataclass(frozen=True)
class Point:
    """One threshold of the sweep (None: no rejection) and what it gives."""

    threshold: float | None
    wer: float
    false_rejection: float
    out_of_grammar_acceptance: float

    def to_dict(self) -> dict[str, Any]:
        return {"max_disagreement": self.threshold, "wer": self.wer, "false_rejection": self.false_rejection,
                "out_of_grammar_acceptance": self.out_of_grammar_acceptance}


def rule_of(threshold: float | None) -> RejectionRule | None:
    return None if threshold is None else RejectionRule(threshold)


def sweep(runs: Sequence[Run], arrays: dict[str, np.ndarray], thresholds: Sequence[float]) -> list[Point]:
    """No rejection, then each threshold."""
    points = []
    for threshold in (None, *thresholds):
        scores = score(runs, arrays, rule_of(threshold))
        points.append(Point(threshold, scores["wer_all"], scores["in_grammar_rejected"]["rate"] or 0.0,
                            scores["out_of_grammar_with_text"]["rate"]))
    return points


def choose(points: Sequence[Point], max_wer_increase: float = MAX_WER_INCREASE) -> Point:
    """The rule of the module docstring; ``points[0]`` is the point without rejection."""
    baseline = points[0]
    if baseline.threshold is not None:
        raise ValueError(f"sweep: expected the point without rejection first, got threshold {baseline.threshold}")
    allowed = [p for p in points[1:] if p.wer <= baseline.wer + max_wer_increase + 1e-9]
    if not allowed:
        return baseline
    return min(allowed, key=lambda p: (p.out_of_grammar_acceptance, -(p.threshold or 0.0)))


def decode_validation(model_dir: Path, data_dir: Path, backend: str, precision: str,
                      limit: int | None = None) -> tuple[list[Run], dict[str, np.ndarray]]:
    """Every validation utterance decoded once, each final result with its disagreement."""
    arrays = load_split(data_dir, "validation")
    kinds = [str(k) for k in arrays["kinds"][:limit]]
    if OUT_OF_GRAMMAR not in kinds or all(k == OUT_OF_GRAMMAR for k in kinds):
        raise ValueError(f"{data_dir}/validation.npz: expected utterances of kind {OUT_OF_GRAMMAR!r} and grammar "
                         f"utterances, got kinds {sorted(set(kinds))}")
    recognizer = load_recognizer(model_dir, backend, precision,
                                 rejection={"method": REJECTION_METHOD, "max_disagreement": 1.0})
    return run_split(recognizer, utterances(arrays)[:limit]), arrays


def table(points: Sequence[Point], chosen: Point) -> list[str]:
    baseline = points[0]
    lines = ["max_disagreement   WER    +points  false rejection  out-of-grammar with text"]
    for p in points:
        name = "none" if p.threshold is None else f"{p.threshold:.3f}"
        mark = "  <- chosen" if p is chosen else ""
        lines.append(f"{name:>16s}  {100 * p.wer:5.2f}%  {100 * (p.wer - baseline.wer):+6.2f}  "
                     f"{100 * p.false_rejection:14.1f}%  {100 * p.out_of_grammar_acceptance:23.1f}%{mark}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--data", type=Path, required=True, help="a synthesised set whose validation split has "
                                                                  "out_of_grammar utterances")
    parser.add_argument("--backend", default="onnx")
    parser.add_argument("--precision", default="float")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--max-wer-increase", type=float, default=MAX_WER_INCREASE,
                        help="WER allowed above no rejection, as a fraction (0.003: 0.3 points)")
    parser.add_argument("--thresholds", default=None, help="comma-separated max_disagreement values to try "
                                                            "(default 0.1 to 1 by 0.025)")
    parser.add_argument("--out", type=Path, default=None, help="write the sweep and the choice as JSON")
    args = parser.parse_args(argv)
    thresholds = (tuple(float(t) for t in args.thresholds.split(",")) if args.thresholds else DEFAULT_THRESHOLDS)
    for threshold in thresholds:
        RejectionRule(threshold)  # each checked before the long decoding

    runs, arrays = decode_validation(args.model_dir, args.data, args.backend, args.precision, args.limit)
    points = sweep(runs, arrays, thresholds)
    chosen = choose(points, args.max_wer_increase)
    print("\n".join(table(points, chosen)))
    rule = rule_of(chosen.threshold)
    setting = json.dumps(rule.to_dict() if rule else None)
    print(f"chosen on {args.data}/validation ({args.precision}): {setting}")
    print(f"export with: python -m lstm_edge.recipes.asr.export_model ... --rejection '{setting}'")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        report = {"model_dir": str(args.model_dir), "data": str(args.data), "split": "validation",
                  "backend": args.backend, "precision": args.precision, "utterances": len(runs),
                  "max_wer_increase": args.max_wer_increase, "sweep": [p.to_dict() for p in points],
                  "chosen": chosen.to_dict(), "rejection": rule.to_dict() if rule else None}
        args.out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
