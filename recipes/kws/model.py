"""Streaming keyword-spotting LSTM, its config, the shipped-model loader, and the clip decision rule.

``KeywordLSTM`` maps log-mel frames ``[B, T, 40]`` (batch-first) to per-frame logits ``[B, T, 12]``. Every layer is
time-local except the unidirectional LSTM, so the model streams frame by frame with ``(h, c)`` carried.

Clip rule (``lstm_edge.runtime.kws.clip_prediction``, run on the device too): softmax per frame, moving average
over ``window_frames`` frames, take the window where the non-silence probability is highest; if that probability is
below ``min_speech_probability`` the clip is ``_silence_``, otherwise the most probable non-silence label of that
window. The same rule serves a 1 s clip and a segment cut out of a long stream.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lstm_edge.runtime.kws import DEFAULT_CLIP_RULE as RUNTIME_CLIP_RULE

N_MELS = 40
N_LABELS = 12
DEFAULT_ARCHITECTURE: dict[str, int] = {
    "n_mels": N_MELS,
    "input_size": 96,
    "hidden_size": 128,
    "num_layers": 2,
    "n_labels": N_LABELS,
}
DEFAULT_CLIP_RULE: dict[str, Any] = dict(RUNTIME_CLIP_RULE)
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "float.pt"


class KwsConfigError(ValueError):
    """A KWS model config is missing keys or holds values of the wrong type."""


class FeatureNormalization(nn.Module):
    """Fixed per-mel-bin ``(x - mean) / std`` (time-local); the statistics come from training features."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, n_mels: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_mels))
        self.register_buffer("std", torch.ones(n_mels))

    def set_statistics(self, mean: np.ndarray, std: np.ndarray) -> None:
        """Copy training statistics into the buffers (std is floored at 1e-3)."""
        self.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.std.copy_(torch.as_tensor(np.maximum(std, 1e-3), dtype=torch.float32))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return (features - self.mean) / self.std


def feature_normalization(model: KeywordLSTM) -> dict[str, Any]:
    """The manifest's ``frontend.feature_normalization``: the graph itself computes ``(x - mean) / std`` per mel bin
    (``KeywordLSTM.normalize``), so a client feeds raw log-mel features and must not normalise them again."""
    return {"where": "graph", "formula": "(x - mean) / std",
            "mean": [float(v) for v in model.normalize.mean], "std": [float(v) for v in model.normalize.std]}


class KeywordLSTM(nn.Module):
    """Normalization -> Linear -> ReLU -> 2-layer LSTM -> Linear, per frame."""

    def __init__(
        self,
        n_mels: int = DEFAULT_ARCHITECTURE["n_mels"],
        input_size: int = DEFAULT_ARCHITECTURE["input_size"],
        hidden_size: int = DEFAULT_ARCHITECTURE["hidden_size"],
        num_layers: int = DEFAULT_ARCHITECTURE["num_layers"],
        n_labels: int = DEFAULT_ARCHITECTURE["n_labels"],
    ) -> None:
        super().__init__()
        self.n_mels = n_mels
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.n_labels = n_labels
        self.normalize = FeatureNormalization(n_mels)
        self.input_projection = nn.Linear(n_mels, input_size)
        self.activation = nn.ReLU()
        self.lstm = nn.LSTM(input_size, hidden_size, num_layers=num_layers, batch_first=True)
        self.classifier = nn.Linear(hidden_size, n_labels)

    def initial_state(self, batch_size: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero ``(h, c)``, each ``[num_layers, batch, hidden_size]``."""
        zeros = torch.zeros(self.num_layers, batch_size, self.hidden_size)
        return zeros, zeros.clone()

    def forward_with_state(
        self, features: torch.Tensor, h_in: torch.Tensor, c_in: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One streaming step: ``(features [B, T, n_mels], h, c) -> (logits [B, T, n_labels], h, c)``."""
        if features.dim() != 3 or features.shape[-1] != self.n_mels:
            raise ValueError(f"features: expected [batch, time, {self.n_mels}], got {tuple(features.shape)}")
        hidden = self.activation(self.input_projection(self.normalize(features)))
        output, (h_out, c_out) = self.lstm(hidden, (h_in, c_in))
        return self.classifier(output), h_out, c_out

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Per-frame logits ``[B, T, n_labels]`` from a zero state."""
        h_in, c_in = self.initial_state(features.shape[0])
        logits, _, _ = self.forward_with_state(features, h_in.to(features), c_in.to(features))
        return logits


def architecture_from_config(config: Mapping[str, Any]) -> dict[str, int]:
    """Validated ``architecture`` section of a model config."""
    if "architecture" not in config:
        raise KwsConfigError(f"KWS config: expected key 'architecture', got keys {sorted(config)}")
    architecture = config["architecture"]
    expected_keys = set(DEFAULT_ARCHITECTURE)
    if not isinstance(architecture, Mapping) or set(architecture) != expected_keys:
        got = sorted(architecture) if isinstance(architecture, Mapping) else type(architecture).__name__
        raise KwsConfigError(f"KWS architecture keys: expected {sorted(expected_keys)}, got {got}")
    for key, value in architecture.items():
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise KwsConfigError(f"KWS architecture.{key}: expected a positive int, got {value!r}")
    return dict(architecture)


def build_model(config: Mapping[str, Any]) -> KeywordLSTM:
    """A fresh (untrained) ``KeywordLSTM`` from a model config dict (the content of ``config.json``)."""
    return KeywordLSTM(**architecture_from_config(config))


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (normalization buffers excluded)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def load_model(model_dir: str | Path) -> tuple[KeywordLSTM, dict[str, Any]]:
    """Rebuild a trained model from ``model_dir/config.json`` and ``model_dir/float.pt``; returns (model, config)."""
    model_dir = Path(model_dir)
    config = json.loads((model_dir / CONFIG_FILE).read_text())
    model = build_model(config)
    state_dict = torch.load(model_dir / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    model.load_state_dict(state_dict)
    model.eval()
    return model, config


def shipped_model_dir() -> Path:
    """The ``kws`` folder of the installed ``lstm_edge.models`` package."""
    models_package = importlib.import_module("lstm_edge.models")
    return Path(next(iter(models_package.__path__))) / "kws"


def load_shipped_model() -> tuple[KeywordLSTM, dict[str, Any]]:
    """The trained KWS model shipped in ``lstm_edge/models/kws`` (eval mode) and its config."""
    return load_model(shipped_model_dir())

