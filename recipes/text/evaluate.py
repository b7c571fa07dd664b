"""Held-out evaluation of the exported as-you-type classifier on its deployed files, next to the baselines.

Test quotes (split by document, never used for training or epoch choice) are streamed character by character
through each file; accuracy after the whole quote and after its first 20 / 50 / 100 characters (as you type), next
to multinomial naive Bayes on the same words and the majority class.

Run: ``python -m lstm_edge.recipes.text.evaluate --model-dir models/text/classifier`` (writes eval_report.json).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from lstm_edge.recipes.text.classify import LABELS, PREFIX_LENGTHS, labelled_splits, naive_bayes_baseline
from lstm_edge.runtime.model import StreamingModel
from lstm_edge.runtime.text import TextClassifier

VARIANTS = (("onnx", "float"), ("onnx", "int8"), ("litert", "float"), ("litert", "int8"))


def runtime_accuracy(classifier: TextClassifier, texts: list[str], labels: list[int]) -> dict:
    hits: dict[str, list[bool]] = {"full": [], **{str(n): [] for n in PREFIX_LENGTHS}}
    for text, label in zip(texts, labels):
        classifier.reset()
        picks = classifier.feed(text).argmax(axis=1)
        hits["full"].append(picks[-1] == label)
        for n in PREFIX_LENGTHS:
            hits[str(n)].append(picks[min(n, len(picks)) - 1] == label)
    return {key: float(np.mean(values)) for key, values in hits.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    splits = labelled_splits()
    test_x, test_y = splits["test"]
    lstm: dict[str, dict[str, float]] = {}
    report: dict[str, object] = {"labels": list(LABELS), "test_quotes": len(test_x),
              "split": "by document within each label",
              "majority_class": float(np.mean(np.asarray(test_y) == np.bincount(splits["train"][1]).argmax())),
              "naive_bayes": naive_bayes_baseline(splits), "lstm": lstm}
    for backend, precision in VARIANTS:
        model = StreamingModel.load(args.model_dir / "export", backend=backend, precision=precision)
        lstm[f"{backend}/{precision}"] = runtime_accuracy(TextClassifier(model), test_x, test_y)
        print(backend, precision, lstm[f"{backend}/{precision}"], flush=True)
    (args.model_dir / "eval_report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items()}, indent=2))


if __name__ == "__main__":
    main()
