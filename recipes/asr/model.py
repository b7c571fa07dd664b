"""Streaming CTC acoustic model: per-frame log-probabilities over characters from stacked log-mel frames.

``CtcLSTM`` maps ``[B, T, n_mels * stack]`` features to ``[B, T, n_tokens]`` log-probabilities (log_softmax in the
graph). Everything but the unidirectional LSTM is time-local, so it streams frame by frame with ``(h, c)`` carried.
Frame stacking (pairs of 10 ms log-mel frames -> one 20 ms frame) happens before the model, in the frontend stage
(``lstm_edge.runtime.asr.stack_frames``), so the exported graph is an ordinary per-frame model.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

DEFAULT_ARCHITECTURE: dict[str, int] = {"n_mels": 40, "stack": 2, "input_size": 256, "hidden_size": 256,
                                        "num_layers": 2, "n_tokens": 26}


class CtcLSTM(nn.Module):
    """Normalization -> Linear -> ReLU -> LSTM -> Linear -> log_softmax, per frame."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, n_mels: int = 40, stack: int = 2, input_size: int = 192, hidden_size: int = 192,
                 num_layers: int = 2, n_tokens: int = 26) -> None:
        super().__init__()
        self.architecture: dict[str, Any] = {"n_mels": n_mels, "stack": stack, "input_size": input_size,
                                             "hidden_size": hidden_size, "num_layers": num_layers,
                                             "n_tokens": n_tokens}
        features = n_mels * stack
        self.register_buffer("mean", torch.zeros(features))
        self.register_buffer("std", torch.ones(features))
        self.project = nn.Linear(features, input_size)
        self.lstm = nn.LSTM(input_size, hidden_size, num_layers=num_layers, batch_first=True)
        self.classify = nn.Linear(hidden_size, n_tokens)

    def set_statistics(self, mean: np.ndarray, std: np.ndarray) -> None:
        """Copy training feature statistics (std floored at 1e-3)."""
        self.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.std.copy_(torch.as_tensor(np.maximum(std, 1e-3), dtype=torch.float32))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.project((features - self.mean) / self.std))
        y, _ = self.lstm(x)
        return torch.log_softmax(self.classify(y), dim=-1)
