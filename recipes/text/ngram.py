"""As-you-type topic classifier over hashed character n-grams: a log-linear model whose state is a running sum.

After each character, every n-gram (n = 1..``orders``) of lower-cased characters that ends at it, and optionally the
word it completes or continues, is hashed to one of ``2**bits`` rows of a table of per-label weights; the rows are
added to a running sum, and the answer for the text so far is ``bias + sum / count**power``. It is what naive Bayes
and logistic regression on character n-grams compute, in streaming form: the whole state is the last
``orders - 1`` characters, the current word's hash, the sum and the count (a few floats), and one character costs
``orders + 1`` table rows.

The hashes are computed in float32 on exact integers (every intermediate value is below 2**24), so ONNX, TFLite and
numpy agree exactly: ``h = salt; h = (h * 97 + id + 1) mod 2**bits`` over the characters of the n-gram, oldest first,
with salt n for the n-gram of order n; the word feature hashes the word so far with the same rule from salt 0 and
then maps it with ``(h * 31 + 7) mod 2**bits`` while inside a word, and a character that ends a word adds the ended
word's row ``(h * 131 + 11) mod 2**bits`` (row 0 when no word ended). Lower-casing and the word test are
comparisons on the ids (A-Z, a-z and 0-9 are runs of consecutive ids), not tables: an int8 quantizer would round a
table of ids.

Training (``train_ngram``): Adam on the cross-entropy of the answer after EVERY prefix of each quote (as-you-type is
the task; each quote's prefixes averaged, so every quote counts once), plus ``final_weight`` times that of the whole
quote's answer, L2 on the table; the epoch and the settings are chosen on the validation quotes (mean accuracy at 25%,
50% and 100% of each quote), never on test quotes.

Settings chosen on validation (mean accuracy at 25/50/100%, best epoch): word feature on, ``final_weight`` 1.0,
2**16 rows: 0.661; 2**17 rows 0.655; ``final_weight`` 2.0 0.650; no word feature (``final_weight`` 0) 0.650.

Run: ``python -m lstm_edge.recipes.text.ngram --out models/text/topics`` (10 minutes here), then
``python -m lstm_edge.recipes.text.export_models --topics models/text/topics``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lstm_edge.recipes.text.corpus import VOCAB

FRACTIONS = (0.25, 0.5, 1.0)
REPORT_FILE = "ngram_report.json"
WEIGHTS_FILE = "float.pt"
CONFIG_FILE = "config.json"
SPACE_ID = VOCAB.index(" ")


@dataclass(frozen=True)
class NgramConfig:
    orders: int = 5
    bits: int = 16
    word: bool = True
    power: float = 0.5
    final_weight: float = 1.0  # extra weight of the whole quote's answer in the loss
    weight_decay: float = 1e-6
    learning_rate: float = 0.02
    batch_size: int = 64
    epochs: int = 10
    seed: int = 0


def _id_range(first: str, last: str) -> tuple[float, float]:
    return float(VOCAB.index(first)), float(VOCAB.index(last))


UPPER, LOWER, DIGITS = _id_range("A", "Z"), _id_range("a", "z"), _id_range("0", "9")


def _within(c: torch.Tensor, bounds: tuple[float, float]) -> torch.Tensor:
    return (c >= bounds[0]).float() * (c <= bounds[1]).float()


class HashedNgramClassifier(nn.Module):
    """Step model: ``forward(ids [batch, 1], state) -> (logits [batch, labels], state)``; see the module doc."""

    def __init__(self, n_labels: int, orders: int = 5, bits: int = 16, word: bool = True, power: float = 0.5) -> None:
        super().__init__()
        if not 1 <= orders <= 8 or not 8 <= bits <= 17:
            raise ValueError(f"orders in 1..8 and bits in 8..17 (hashes stay below 2**24); got {orders}, {bits}")
        self.orders, self.bits, self.word, self.power = orders, bits, word, power
        self.vocab_size = len(VOCAB)  # the token-id range, for the exporter (no nn.Embedding here)
        self.buckets = float(1 << bits)
        self.table = nn.Embedding(1 << bits, n_labels)  # an embedding table: formats quantize its rows
        nn.init.zeros_(self.table.weight)
        self.bias = nn.Parameter(torch.zeros(n_labels))

    def _mix(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return torch.remainder(h * 97.0 + c + 1.0, self.buckets)

    def rows(self, ids: torch.Tensor, context: torch.Tensor, word: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Row indices [batch, features] (float) for the characters ``ids`` [batch] after ``context`` [batch,
        orders-1] (oldest first), and the new word hash."""
        ids = ids.float()
        c = ids + (LOWER[0] - UPPER[0]) * _within(ids, UPPER)  # lower case, by arithmetic: no id table to quantize
        chars = torch.cat([context, c[:, None]], dim=1)
        columns = []
        for n in range(1, self.orders + 1):
            h = torch.full_like(c, float(n))
            for k in range(self.orders - n, self.orders):
                h = self._mix(h, chars[:, k])
            columns.append(h)
        new_word = word
        if self.word:
            inside = _within(c, LOWER) + _within(c, DIGITS)
            grown = self._mix(word, c)
            ended = torch.where(word > 0, torch.remainder(word * 131.0 + 11.0, self.buckets), torch.zeros_like(word))
            columns.append(torch.where(inside > 0, torch.remainder(grown * 31.0 + 7.0, self.buckets), ended))
            new_word = inside * grown
        return torch.stack(columns, dim=1), chars[:, 1:], new_word

    def initial_state(self, batch: int = 1) -> tuple[torch.Tensor, ...]:
        context = torch.full((batch, self.orders - 1), float(SPACE_ID))
        return (context, torch.zeros(batch, 1), torch.zeros(batch, self.table.embedding_dim), torch.zeros(batch, 1))

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, ...]
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        context, word, total, count = state
        rows, context, word_new = self.rows(x[:, 0], context, word[:, 0])
        total = total + self.table(rows.long()).sum(dim=1)
        count = count + 1.0
        logits = self.bias + total / count ** self.power
        return logits, (context, word_new[:, None], total, count)

    # training: all positions of padded quotes at once
    def sequence_rows(self, ids: torch.Tensor) -> torch.Tensor:
        """Row indices [batch, T, features] (long) of whole quotes ``ids`` [batch, T], from the initial state."""
        context, word, _, _ = self.initial_state(ids.shape[0])
        word = word[:, 0]
        out = []
        for t in range(ids.shape[1]):
            rows, context, word = self.rows(ids[:, t], context, word)
            out.append(rows)
        return torch.stack(out, dim=1).to(torch.int32)

    def sequence_logits(self, rows: torch.Tensor) -> torch.Tensor:
        steps = torch.arange(1, rows.shape[1] + 1, dtype=torch.float32)[None, :, None]
        return self.bias + self.table(rows.long()).sum(dim=2).cumsum(dim=1) / steps ** self.power


def _padded_rows(model: HashedNgramClassifier, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    from lstm_edge.recipes.text.corpus import tokenizer

    encoded = [tokenizer().encode(t) for t in texts]
    length = max(len(e) for e in encoded)
    ids = torch.full((len(texts), length), SPACE_ID, dtype=torch.long)
    lengths = torch.tensor([len(e) for e in encoded])
    for i, e in enumerate(encoded):
        ids[i, :len(e)] = torch.from_numpy(e.astype(np.int64))
    with torch.no_grad():
        return model.sequence_rows(ids), lengths


def prefix_accuracies(model: HashedNgramClassifier, rows: torch.Tensor, lengths: torch.Tensor,
                      labels: torch.Tensor) -> dict[str, float]:
    with torch.no_grad():
        logits = model.sequence_logits(rows)
    result = {}
    for fraction in FRACTIONS:
        at = torch.tensor([max(1, math.ceil(fraction * int(n))) - 1 for n in lengths])
        picks = logits[torch.arange(len(lengths)), at].argmax(dim=1)
        result[f"{int(fraction * 100)}%"] = float((picks == labels).float().mean())
    return result


def train_ngram(splits: dict, config: NgramConfig, n_labels: int, log=print) -> tuple[HashedNgramClassifier, dict]:
    """Train on ``splits["train"]``; keep the epoch with the best mean validation accuracy."""
    if config.epochs < 1:
        raise ValueError(f"epochs: expected at least 1, got {config.epochs}")
    torch.manual_seed(config.seed)
    model = HashedNgramClassifier(n_labels, config.orders, config.bits, config.word, config.power)
    data = {name: (*_padded_rows(model, texts), torch.tensor(labels)) for name, (texts, labels) in splits.items()
            if name in ("train", "validation")}
    rows, lengths, labels = data["train"]
    mask = (torch.arange(rows.shape[1])[None, :] < lengths[:, None]).float()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    best, best_state, history = -1.0, None, []
    for epoch in range(config.epochs):
        order = torch.randperm(len(lengths))
        for start in range(0, len(order), config.batch_size):
            pick = order[start:start + config.batch_size]
            width = int(lengths[pick].max())
            logits = model.sequence_logits(rows[pick, :width])
            target = labels[pick][:, None].expand(-1, width)
            each = nn.functional.cross_entropy(logits.permute(0, 2, 1), target, reduction="none")
            loss = ((each * mask[pick, :width]).sum(dim=1) / lengths[pick]).mean()  # every quote counts once
            if config.final_weight:
                loss = loss + config.final_weight * each[torch.arange(len(pick)), lengths[pick] - 1].mean()
            loss = loss + config.weight_decay * model.table.weight.pow(2).sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        validation = prefix_accuracies(model, *data["validation"])
        score = float(np.mean(list(validation.values())))
        history.append({"epoch": epoch, "validation": validation, "mean": round(score, 4)})
        log(json.dumps(history[-1]))
        if score > best:
            best, best_state = score, {k: v.clone() for k, v in model.state_dict().items()}
    if best_state is not None:
        model.load_state_dict(best_state)
    return model, {"best_validation_mean": round(best, 4), "history": history}


def save_ngram(model: HashedNgramClassifier, config: NgramConfig, labels: Sequence[str], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out_dir / WEIGHTS_FILE)
    settings = {"kind": "hashed_ngram", "labels": list(labels), **asdict(config)}
    (out_dir / CONFIG_FILE).write_text(json.dumps(settings, indent=2) + "\n")


def load_ngram(weights_dir: Path) -> tuple[HashedNgramClassifier, dict]:
    settings = json.loads((weights_dir / CONFIG_FILE).read_text())
    model = HashedNgramClassifier(len(settings["labels"]), settings["orders"], settings["bits"], settings["word"],
                                  settings["power"])
    model.load_state_dict(torch.load(weights_dir / WEIGHTS_FILE, weights_only=True))
    return model.eval(), settings


def main(argv: list[str] | None = None) -> None:
    from lstm_edge.recipes.text.classify import LABELS, labelled_splits

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--orders", type=int, default=NgramConfig.orders)
    parser.add_argument("--bits", type=int, default=NgramConfig.bits)
    parser.add_argument("--no-word", action="store_true")
    parser.add_argument("--power", type=float, default=NgramConfig.power)
    parser.add_argument("--final-weight", type=float, default=NgramConfig.final_weight)
    parser.add_argument("--weight-decay", type=float, default=NgramConfig.weight_decay)
    parser.add_argument("--epochs", type=int, default=NgramConfig.epochs)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    config = NgramConfig(orders=args.orders, bits=args.bits, word=not args.no_word, power=args.power,
                         final_weight=args.final_weight, weight_decay=args.weight_decay, epochs=args.epochs)
    splits = labelled_splits()
    started = time.monotonic()
    model, report = train_ngram(splits, config, len(LABELS))
    save_ngram(model, config, LABELS, args.out)
    rows, lengths = _padded_rows(model, splits["test"][0])
    report |= {"config": asdict(config), "minutes": round((time.monotonic() - started) / 60, 2),
               "test": prefix_accuracies(model, rows, lengths, torch.tensor(splits["test"][1])),
               "parameters": sum(p.numel() for p in model.parameters())}
    (args.out / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "history"}, indent=2))


if __name__ == "__main__":
    main()
