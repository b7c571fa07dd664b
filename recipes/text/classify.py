"""As-you-type topic classifier: which fortunes file a quote comes from, answered after every character.

Labels are six topic files of the ``fortunes`` package. The label IS the source file, so this split cannot be by
file: it is by document (each quote in exactly one of train / validation / test, seeded, per label), with exact
duplicates removed across the whole set first. The model (``CharLSTM`` with a 6-way head) is trained with the
loss on the last character of each quote plus half the mean loss over every prefix, so early answers are useful
too; the epoch is chosen on validation accuracy. A multinomial naive Bayes over lower-cased words (numpy, smoothing
chosen on validation) is the bag-of-words baseline. Test accuracy is reported on whole quotes and on prefixes.

Run: ``python -m lstm_edge.recipes.text.classify --out models/text/classifier --minutes 8``.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lstm_edge.recipes.text.corpus import FORTUNES_DIR, VOCAB, read_documents, split_documents, tokenizer
from lstm_edge.recipes.text.model import CharLSTM, build_model, count_parameters, save_model

LABELS = ("computers", "men-women", "politics", "science", "songs-poems", "work")
REPORT_FILE = "classifier_report.json"
PREFIX_LENGTHS = (20, 50, 100)
Dataset = tuple[list[str], list[int]]


@dataclass(frozen=True)
class ClassifierConfig:
    seed: int = 0
    embed_size: int = 32
    hidden_size: int = 128
    dropout: float = 0.1
    batch_size: int = 32
    max_chars: int = 320
    learning_rate: float = 3e-3
    prefix_loss_weight: float = 0.5
    max_minutes: float = 8.0
    max_epochs: int = 40
    threads: int = 1


def labelled_splits(root: Path = FORTUNES_DIR, seed: int = 0) -> dict[str, Dataset]:
    """Train / validation / test quotes with label indices; duplicates (anywhere) removed before splitting."""
    per_label = {label: read_documents(root / label) for label in LABELS}
    counts = Counter(d for docs in per_label.values() for d in docs)
    splits: dict[str, Dataset] = {"train": ([], []), "validation": ([], []), "test": ([], [])}
    for index, label in enumerate(LABELS):
        unique = sorted({d for d in per_label[label] if counts[d] == 1})
        for name, part in zip(("train", "validation", "test"), split_documents(unique, seed + index)):
            splits[name][0].extend(part)
            splits[name][1].extend([index] * len(part))
    return splits


# ------------------------------------------------------------------ bag-of-words baseline
def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


class NaiveBayes:
    """Multinomial naive Bayes over word counts with additive smoothing ``alpha``."""

    def __init__(self, texts: Sequence[str], labels: Sequence[int], n_labels: int, alpha: float) -> None:
        self.vocab = {w: i for i, w in enumerate(sorted({w for t in texts for w in words(t)}))}
        counts = np.zeros((n_labels, len(self.vocab)))
        for text, label in zip(texts, labels):
            for w in words(text):
                counts[label, self.vocab[w]] += 1
        self.log_likelihood = np.log((counts + alpha) / (counts.sum(1, keepdims=True) + alpha * len(self.vocab)))
        prior = np.bincount(np.asarray(labels), minlength=n_labels).astype(float)
        self.log_prior = np.log(prior / prior.sum())

    def predict(self, text: str) -> int:
        ids = [self.vocab[w] for w in words(text) if w in self.vocab]
        return int(np.argmax(self.log_prior + self.log_likelihood[:, ids].sum(axis=1)))

    def accuracy(self, texts: Sequence[str], labels: Sequence[int]) -> float:
        return float(np.mean([self.predict(t) == y for t, y in zip(texts, labels)]))


def naive_bayes_baseline(splits: dict[str, Dataset]) -> dict[str, object]:
    train_x, train_y = splits["train"]
    val_x, val_y = splits["validation"]
    test_x, test_y = splits["test"]
    scores = {a: NaiveBayes(train_x, train_y, len(LABELS), a).accuracy(val_x, val_y) for a in (0.03, 0.1, 0.3, 1.0)}
    alpha = max(scores, key=lambda a: scores[a])
    model = NaiveBayes(train_x, train_y, len(LABELS), alpha)
    return {"alpha": alpha, "validation_accuracy_by_alpha": scores, "test_accuracy": model.accuracy(test_x, test_y),
            "test_accuracy_prefix": {str(n): model.accuracy([t[:n] for t in test_x], test_y)
                                     for n in PREFIX_LENGTHS}}


# ------------------------------------------------------------------ the LSTM
def _batch(texts: Sequence[str], max_chars: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids and lengths (padding after the end cannot change earlier outputs of a causal model)."""
    encoded = [tokenizer().encode(t[:max_chars]) for t in texts]
    lengths = torch.tensor([len(e) for e in encoded])
    ids = torch.zeros((len(encoded), int(lengths.max())), dtype=torch.long)
    for row, e in enumerate(encoded):
        ids[row, :len(e)] = torch.from_numpy(e)
    return ids, lengths


def predict_logits(model: CharLSTM, texts: Sequence[str], max_chars: int, batch_size: int = 64) -> list[np.ndarray]:
    """Per-character logits ``[len, labels]`` of each text (first ``max_chars`` characters)."""
    model.eval()
    out: list[np.ndarray] = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            ids, lengths = _batch(texts[start:start + batch_size], max_chars)
            logits = model(ids)
            out.extend(logits[row, :int(n)].numpy() for row, n in enumerate(lengths))
    model.train()
    return out


def accuracy_from_logits(logits: Sequence[np.ndarray], labels: Sequence[int], prefix: int | None = None) -> float:
    picks = [int(np.argmax(row[(min(prefix, len(row)) if prefix else len(row)) - 1])) for row in logits]
    return float(np.mean(np.asarray(picks) == np.asarray(labels)))


def train_classifier(splits: dict[str, Dataset], config: ClassifierConfig, out_dir: Path, log=print) -> dict:
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    model_config = {"vocab_size": len(VOCAB), "n_out": len(LABELS), "embed_size": config.embed_size,
                    "hidden_size": config.hidden_size, "num_layers": 1, "dropout": config.dropout,
                    "task": "classifier", "labels": list(LABELS)}
    model = build_model(model_config)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    train_x, train_y = splits["train"]
    val_x, val_y = splits["validation"]
    started, best, history = time.monotonic(), -1.0, []
    budget = config.max_minutes * 60
    for epoch in range(config.max_epochs):
        order = list(range(len(train_x)))
        rng.shuffle(order)
        for start in range(0, len(order), config.batch_size):
            rows = order[start:start + config.batch_size]
            ids, lengths = _batch([train_x[i] for i in rows], config.max_chars)
            targets = torch.tensor([train_y[i] for i in rows])
            logits = model(ids)
            last = logits[torch.arange(len(rows)), lengths - 1]
            mask = torch.arange(ids.shape[1])[None] < lengths[:, None]
            every = nn.functional.cross_entropy(logits[mask], targets[:, None].expand_as(mask)[mask])
            loss = nn.functional.cross_entropy(last, targets) + config.prefix_loss_weight * every
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
        for group in optimizer.param_groups:
            group["lr"] *= 0.9
        val_accuracy = accuracy_from_logits(predict_logits(model, val_x, 2000), val_y)
        history.append({"epoch": epoch, "minutes": round((time.monotonic() - started) / 60, 2),
                        "loss": round(float(loss.detach()), 4), "val_accuracy": round(val_accuracy, 4)})
        log(json.dumps(history[-1]))
        if val_accuracy > best:
            best = val_accuracy
            save_model(model, model_config, out_dir)
        if time.monotonic() - started > budget:
            break
    return {"config": asdict(config), "parameters": count_parameters(model), "best_val_accuracy": best,
            "history": history}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=ClassifierConfig.max_minutes)
    args = parser.parse_args(argv)
    splits = labelled_splits()
    report = train_classifier(splits, ClassifierConfig(max_minutes=args.minutes), args.out)
    from lstm_edge.recipes.text.model import load_model

    model, _ = load_model(args.out)
    test_x, test_y = splits["test"]
    logits = predict_logits(model, test_x, 100000)
    report.update({
        "labels": list(LABELS), "split": "by document within each label (label = source file), seeded, duplicates "
        "removed", "sizes": {k: len(v[0]) for k, v in splits.items()},
        "test_accuracy_torch": accuracy_from_logits(logits, test_y),
        "test_accuracy_prefix_torch": {str(n): accuracy_from_logits(logits, test_y, n) for n in PREFIX_LENGTHS},
        "majority_class_test_accuracy": float(np.mean(np.asarray(test_y) == np.bincount(splits["train"][1]).argmax())),
        "naive_bayes": naive_bayes_baseline(splits)})
    (args.out / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "history"}, indent=2))


if __name__ == "__main__":
    main()
