"""The character models: a next-character LSTM language model and an as-you-type topic classifier.

Both map token ids ``[B, T]`` (batch-first, int64) to per-step logits ``[B, T, n_out]``; every layer is time-local
except the unidirectional LSTM, so they stream one character at a time with ``(h, c)`` carried. For the
classifier, row t of the output is its answer for the first t+1 characters (the streaming form of a many-to-one
classifier: the head is applied to every step's hidden state).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "float.pt"

State = tuple[torch.Tensor, torch.Tensor]


class CharLSTM(nn.Module):
    """Embedding -> LSTM -> dropout -> Linear, logits per step."""

    def __init__(self, vocab_size: int, n_out: int, embed_size: int = 48, hidden_size: int = 384,
                 num_layers: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_size)
        self.lstm = nn.LSTM(embed_size, hidden_size, num_layers=num_layers, batch_first=True,
                            dropout=dropout if num_layers > 1 else 0.0)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, n_out)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        logits, _ = self.forward_with_state(tokens, None)
        return logits

    def forward_with_state(self, tokens: torch.Tensor, state: State | None) -> tuple[torch.Tensor, State]:
        """Training form: carry ``state`` (``None``: zeros) across windows."""
        hidden, new_state = self.lstm(self.drop(self.embed(tokens)), state)
        return self.head(self.drop(hidden)), new_state


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def build_model(config: Mapping[str, Any]) -> CharLSTM:
    keys = ("vocab_size", "n_out", "embed_size", "hidden_size", "num_layers", "dropout")
    missing = [k for k in keys if k not in config]
    if missing:
        raise ValueError(f"text model config: missing keys {missing} (has {sorted(config)})")
    return CharLSTM(**{k: config[k] for k in keys})


def save_model(model: CharLSTM, config: Mapping[str, Any], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out_dir / WEIGHTS_FILE)
    (out_dir / CONFIG_FILE).write_text(json.dumps(dict(config), indent=2) + "\n")


def load_model(model_dir: Path) -> tuple[CharLSTM, dict[str, Any]]:
    """Weights and config written by a text training script (``torch.load(weights_only=True)``)."""
    config = json.loads((Path(model_dir) / CONFIG_FILE).read_text())
    model = build_model(config)
    model.load_state_dict(torch.load(Path(model_dir) / WEIGHTS_FILE, weights_only=True))
    model.eval()
    return model, config
