"""As-you-type topic classification: the shipped classifiers (character LSTM, hashed character n-grams) against two
classic peers trained on the same quotes, scored on the same held-out quotes after 25%, 50% and 100% of each quote's
characters.

Peers (scikit-learn, benchmark-only): multinomial naive Bayes and logistic regression, both on tf-idf of character
1-5-grams (word-boundary aware, ``analyzer="char_wb"``); each one's regularisation is chosen on the validation
quotes, never on the test quotes. The shipped models read each test quote character by character from a fresh
stream (their answer after the first ``ceil(f * len)`` characters), float and int8; the peers classify the same
prefixes.

Run: ``python benchmarks/bench_text_classify_peers.py`` (needs ``pip install scikit-learn``); writes
results/text_classify_peers.json.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from lstm_edge.recipes.text.classify import labelled_splits  # noqa: E402
from lstm_edge.runtime.model import StreamingModel  # noqa: E402
from lstm_edge.runtime.text import TextClassifier  # noqa: E402

from _common import save  # noqa: E402

FRACTIONS = (0.25, 0.5, 1.0)


def prefixes(texts: list[str], fraction: float) -> list[str]:
    return [text[:max(1, math.ceil(fraction * len(text)))] for text in texts]


def peer_accuracies(splits) -> dict[str, dict[str, float]]:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import MultinomialNB

    train_x, train_y = splits["train"]
    val_x, val_y = splits["validation"]
    test_x, test_y = splits["test"]
    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 5), sublinear_tf=True, min_df=2)
    train = vectorizer.fit_transform(train_x)
    candidates = {"naive Bayes": [MultinomialNB(alpha=a) for a in (0.01, 0.03, 0.1, 0.3, 1.0)],
                  "logistic regression": [LogisticRegression(C=c, max_iter=2000) for c in (1.0, 3.0, 10.0, 30.0)]}
    results = {}
    for name, models in candidates.items():
        # validation: the mean over the three prefix fractions (what as-you-type needs)
        def validation_score(model) -> float:
            model.fit(train, train_y)
            return float(np.mean([model.score(vectorizer.transform(prefixes(val_x, f)), val_y) for f in FRACTIONS]))

        best = max(models, key=validation_score)
        best.fit(train, train_y)
        results[name] = {f"{int(f * 100)}%": float(best.score(vectorizer.transform(prefixes(test_x, f)), test_y))
                         for f in FRACTIONS}
        results[name]["setting"] = str(best)
    return results


def streamed_accuracies(splits, model_dir: Path, precision: str) -> dict[str, float]:
    test_x, test_y = splits["test"]
    classifier = TextClassifier(StreamingModel.load(model_dir, backend="onnx", precision=precision))
    hits = {f: [] for f in FRACTIONS}
    for text, label in zip(test_x, test_y):
        classifier.reset()
        picks = classifier.feed(text).argmax(axis=1)
        for f in FRACTIONS:
            hits[f].append(picks[max(1, math.ceil(f * len(text))) - 1] == label)
    return {f"{int(f * 100)}%": float(np.mean(hits[f])) for f in FRACTIONS}


def main() -> None:
    splits = labelled_splits()
    rows = {f"{name} (shipped, ONNX {precision})": streamed_accuracies(splits, Path(path), precision)
            for name, path in (("char LSTM", "models/text/classifier/export"),
                               ("hashed n-grams", "models/text/topics/export"))
            for precision in ("float", "int8")}
    rows |= peer_accuracies(splits)
    for name, row in rows.items():
        print(f"{name:36s} " + "  ".join(f"{key} {value:.1%}" for key, value in row.items() if key.endswith("%")))
    save("text_classify_peers", {"test_quotes": len(splits["test"][0]), "results": rows})


if __name__ == "__main__":
    main()
