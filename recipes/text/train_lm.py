"""Train the character language model on the fortunes split (train files), choosing the checkpoint on validation.

Stateful truncated back-propagation: each epoch shuffles the training documents, joins them and cuts the text into
``batch_size`` contiguous streams; windows of ``window`` characters follow each other with the LSTM state carried
(detached), as on the device where the state is carried forever. Adam with a cosine learning rate fitted to the
time budget. Validation bits per character (state carried over the whole validation text, in ``eval_streams``
parallel pieces) picks the saved checkpoint; the test files are not read here.

With ``--corpus broad`` the training text is the fortunes' training files plus the Debian documentation and
literature of ``recipes/text/sources.py`` (its training files; licences recorded in the report), and validation is
the fortunes' validation files plus up to ``BROAD_VALIDATION_CHARS`` of each source's validation files.

Run: ``python -m lstm_edge.recipes.text.train_lm --out models/text --minutes 45 [--corpus broad] [--init DIR]``
(``--init``: continue from a trained model of the same shape, e.g. the fortunes model, without warm-up).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lstm_edge.recipes.text.corpus import DOCUMENT_SEPARATOR, VOCAB, split_by_file, tokenizer
from lstm_edge.recipes.text.model import CharLSTM, build_model, count_parameters, load_model, save_model

REPORT_FILE = "lm_train_report.json"
BROAD_VALIDATION_CHARS = 60_000


@dataclass(frozen=True)
class LmTrainConfig:
    """Training settings (recorded in the report)."""

    seed: int = 0
    embed_size: int = 48
    hidden_size: int = 384
    num_layers: int = 1
    dropout: float = 0.15
    batch_size: int = 32
    window: int = 128
    learning_rate: float = 3e-3
    min_learning_rate: float = 5e-5
    warmup_steps: int = 200
    weight_decay: float = 1e-6
    grad_clip: float = 1.0
    max_minutes: float = 45.0
    eval_every_steps: int = 400
    eval_streams: int = 8
    threads: int = 1


def bits_per_char_torch(model: CharLSTM, ids: np.ndarray, streams: int) -> float:
    """Mean bits per predicted character over ``ids``, cut into ``streams`` contiguous pieces (state carried)."""
    model.eval()
    length = (len(ids) - 1) // streams
    x = torch.from_numpy(ids[: streams * length].reshape(streams, length))
    y = torch.from_numpy(ids[1: streams * length + 1].reshape(streams, length))
    total, state = 0.0, None
    with torch.no_grad():
        for start in range(0, length, 1024):
            logits, state = model.forward_with_state(x[:, start:start + 1024], state)
            total += float(nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                       y[:, start:start + 1024].reshape(-1), reduction="sum"))
    model.train()
    return total / (streams * length) / math.log(2)


def _epoch_streams(documents: Sequence[str], batch_size: int, rng: random.Random) -> torch.Tensor:
    order = list(documents)
    rng.shuffle(order)
    ids = tokenizer().encode(DOCUMENT_SEPARATOR.join(order) + DOCUMENT_SEPARATOR)
    length = len(ids) // batch_size
    return torch.from_numpy(ids[: batch_size * length].reshape(batch_size, length))


def train_language_model(train_docs: Sequence[str], val_text: str, config: LmTrainConfig, out_dir: Path,
                         log=print, init: Path | None = None) -> dict[str, Any]:
    """Train, save the best-validation weights and config into ``out_dir``, return the report. ``init``: a trained
    model directory (float.pt + config.json of the same shape) to start from instead of random weights."""
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    model_config = {"vocab_size": len(VOCAB), "n_out": len(VOCAB), "embed_size": config.embed_size,
                    "hidden_size": config.hidden_size, "num_layers": config.num_layers, "dropout": config.dropout,
                    "task": "language_model"}
    model = build_model(model_config)
    if init is not None:
        trained, trained_config = load_model(init)
        if {k: trained_config.get(k) for k in model_config} != model_config:
            raise ValueError(f"--init {init}: a model of another shape ({trained_config}); "
                             f"this run builds {model_config}")
        model.load_state_dict(trained.state_dict())
        model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    val_ids = tokenizer().encode(val_text)
    budget = config.max_minutes * 60.0
    started = time.monotonic()
    step, epoch, best, history = 0, 0, float("inf"), []
    chars_seen = 0
    done = False
    while not done:
        data = _epoch_streams(train_docs, config.batch_size, rng)
        state = None
        for start in range(0, data.shape[1] - 1 - config.window, config.window):
            elapsed = time.monotonic() - started
            progress = min(1.0, elapsed / budget)
            warm = min(1.0, (step + 1) / config.warmup_steps) if config.warmup_steps else 1.0
            lr = config.min_learning_rate + (config.learning_rate - config.min_learning_rate) * 0.5 * (
                1 + math.cos(math.pi * progress))
            for group in optimizer.param_groups:
                group["lr"] = lr * warm
            x = data[:, start:start + config.window]
            y = data[:, start + 1:start + 1 + config.window]
            logits, state = model.forward_with_state(x, state)
            state = (state[0].detach(), state[1].detach())
            loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            step += 1
            chars_seen += x.numel()
            last = elapsed >= budget
            if step % config.eval_every_steps == 0 or last:
                val_bpc = bits_per_char_torch(model, val_ids, config.eval_streams)
                history.append({"step": step, "epoch": epoch, "minutes": round(elapsed / 60, 2),
                                "train_bpc": round(float(loss.detach()) / math.log(2), 4), "val_bpc": round(val_bpc, 4),
                                "lr": lr})
                log(json.dumps(history[-1]))
                if val_bpc < best:
                    best = val_bpc
                    save_model(model, model_config, out_dir)
            if last:
                done = True
                break
        epoch += 1
    report = {"config": asdict(config), "parameters": count_parameters(model), "steps": step, "epochs": epoch,
              "train_chars_seen": chars_seen, "minutes": round((time.monotonic() - started) / 60, 2),
              "best_val_bpc": round(best, 4), "history": history}
    (out_dir / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=LmTrainConfig.max_minutes)
    parser.add_argument("--hidden", type=int, default=LmTrainConfig.hidden_size)
    parser.add_argument("--dropout", type=float, default=LmTrainConfig.dropout)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--corpus", choices=("fortunes", "broad"), default="fortunes")
    parser.add_argument("--init", type=Path, help="start from this trained model directory (same shape)")
    parser.add_argument("--learning-rate", type=float, default=LmTrainConfig.learning_rate)
    args = parser.parse_args(argv)
    splits = split_by_file()
    config = LmTrainConfig(max_minutes=args.minutes, hidden_size=args.hidden, dropout=args.dropout, seed=args.seed,
                           learning_rate=args.learning_rate,
                           warmup_steps=0 if args.init else LmTrainConfig.warmup_steps)
    train_docs, val_text = list(splits.documents["train"]), splits.text("validation")
    if args.corpus == "broad":
        from lstm_edge.recipes.text.sources import broad_splits, licences

        broad = broad_splits()
        for docs in broad["train"].values():
            train_docs += docs
        for docs in broad["validation"].values():
            val_text += (DOCUMENT_SEPARATOR.join(docs) + DOCUMENT_SEPARATOR)[:BROAD_VALIDATION_CHARS]
    args.out.mkdir(parents=True, exist_ok=True)
    report = train_language_model(train_docs, val_text, config, args.out, init=args.init)
    report["corpus"] = args.corpus
    report["init"] = str(args.init) if args.init else None
    report["split_files"] = splits.files
    if args.corpus == "broad":
        report["sources"] = licences()
        report["train_chars"] = {name: sum(map(len, docs)) for name, docs in broad["train"].items()}
    (args.out / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "history"}, indent=2))


if __name__ == "__main__":
    main()
