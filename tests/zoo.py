"""Seeded test models of every kind the exporter accepts, plus ones it must refuse, and a torch reference."""

from __future__ import annotations

import torch
from torch import nn

from lstm_edge.export.wrap import identifier


class FeatureLSTM(nn.Module):
    """Linear -> ReLU -> 2-layer LSTM (dropout between layers) -> Linear."""

    def __init__(self, features: int = 20, hidden: int = 48, classes: int = 7) -> None:
        super().__init__()
        self.inp = nn.Linear(features, 32)
        self.lstm = nn.LSTM(32, hidden, num_layers=2, batch_first=True, dropout=0.1)
        self.out = nn.Linear(hidden, classes)

    def forward(self, x):
        y, _ = self.lstm(torch.relu(self.inp(x)))
        return self.out(y)


class TokenTimeMajor(nn.Module):
    """Embedding -> permute to time-major -> LSTM(batch_first=False) -> permute back -> LayerNorm -> Linear."""

    def __init__(self, vocab: int = 50) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, 16)
        self.lstm = nn.LSTM(16, 24)
        self.norm = nn.LayerNorm(24)
        self.head = nn.Linear(24, vocab)

    def forward(self, tokens):
        h = self.embed(tokens).permute(1, 0, 2)
        h, _ = self.lstm(h)
        return self.head(self.norm(h.permute(1, 0, 2)))


class ProjectedLSTM(nn.Module):
    """nn.LSTM with proj_size, two layers."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(12, 40, num_layers=2, proj_size=16, batch_first=True)
        self.head = nn.Linear(16, 5)

    def forward(self, x):
        y, _ = self.lstm(x)
        return self.head(y)


class LearnedInitialState(nn.Module):
    """An LSTM whose initial (h, c) are learned parameters passed in by forward."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(10, 32, batch_first=True)
        self.h0 = nn.Parameter(torch.randn(1, 1, 32) * 0.5)
        self.c0 = nn.Parameter(torch.randn(1, 1, 32) * 0.5)
        self.head = nn.Linear(32, 4)

    def forward(self, x):
        batch = x.shape[0]
        y, _ = self.lstm(x, (self.h0.expand(-1, batch, -1).contiguous(), self.c0.expand(-1, batch, -1).contiguous()))
        return self.head(y)


class StackedResidual(nn.Module):
    """Two LSTMs in a row with a residual add, GELU, LayerNorm and Dropout between them."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(8, 32)
        self.first = nn.LSTM(32, 32, batch_first=True)
        self.second = nn.LSTM(32, 32, batch_first=True)
        self.norm = nn.LayerNorm(32)
        self.drop = nn.Dropout(0.2)
        self.head = nn.Linear(32, 6)

    def forward(self, x):
        h = self.proj(x)
        a, _ = self.first(h)
        b, _ = self.second(nn.functional.gelu(a))
        return self.head(self.drop(self.norm(a + b)))


class GRUModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(14, 30, num_layers=2, batch_first=True)
        self.head = nn.Linear(30, 3)

    def forward(self, x):
        y, _ = self.gru(x)
        return self.head(y)


class CellStep(nn.Module):
    """A step model built from two nn.LSTMCell layers."""

    state_names = ("h1", "c1", "h2", "c2")

    def __init__(self) -> None:
        super().__init__()
        self.cell1 = nn.LSTMCell(9, 24)
        self.cell2 = nn.LSTMCell(24, 16)
        self.head = nn.Linear(16, 4)

    def initial_state(self, batch_size: int = 1):
        return (torch.zeros(batch_size, 24), torch.zeros(batch_size, 24),
                torch.zeros(batch_size, 16), torch.zeros(batch_size, 16))

    def forward(self, x, state):
        h1, c1, h2, c2 = state
        h1, c1 = self.cell1(x, (h1, c1))
        h2, c2 = self.cell2(h1, (h2, c2))
        return self.head(h2), (h1, c1, h2, c2)


class ContextStep(nn.Module):
    """A step model with its own context buffer: a causal conv over the last 3 frames, then an LSTMCell."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(6, 12, kernel_size=3)
        self.cell = nn.LSTMCell(12, 20)
        self.head = nn.Linear(20, 2)

    def initial_state(self, batch_size: int = 1):
        return (torch.zeros(batch_size, 6, 2), torch.zeros(batch_size, 20), torch.zeros(batch_size, 20))

    def forward(self, x, state):  # x: [1, 6] one frame
        context, h, c = state
        window = torch.cat([context, x.unsqueeze(-1)], dim=-1)  # [1, 6, 3]
        feature = torch.relu(self.conv(window)).squeeze(-1)
        h, c = self.cell(feature, (h, c))
        return self.head(h), (window[:, :, 1:], h, c)


class SmallKws(nn.Module):
    """Linear 40->64, LSTM 64x2, Linear 64->12: the size of a small keyword spotter."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(40, 64)
        self.lstm = nn.LSTM(64, 64, 2, batch_first=True)
        self.out = nn.Linear(64, 12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.lstm(self.inp(x))
        return self.out(y)


# ------------------------------------------------------------------ refused
class Bidirectional(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(8, 16, batch_first=True, bidirectional=True)
        self.head = nn.Linear(32, 2)

    def forward(self, x):
        return self.head(self.lstm(x)[0])


class ConvOverTime(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(8, 8, kernel_size=3, padding=1)
        self.lstm = nn.LSTM(8, 16, batch_first=True)
        self.head = nn.Linear(16, 2)

    def forward(self, x):
        h = self.conv(x.transpose(1, 2)).transpose(1, 2)
        return self.head(self.lstm(h)[0])


class Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(8, 16, batch_first=True)
        self.attn = nn.MultiheadAttention(16, 2, batch_first=True)
        self.head = nn.Linear(16, 2)

    def forward(self, x):
        h = self.lstm(x)[0]
        return self.head(self.attn(h, h, h)[0])


class MeanOverTime(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(8, 16, batch_first=True)
        self.head = nn.Linear(16, 2)

    def forward(self, x):
        h = self.lstm(x)[0]
        return self.head(h - h.mean(dim=1, keepdim=True))


SEQUENCE_MODELS = {
    "feature_lstm": (FeatureLSTM, lambda: torch.randn(1, 10, 20)),
    "tokens_time_major": (TokenTimeMajor, lambda: torch.randint(0, 50, (1, 10))),
    "projected": (ProjectedLSTM, lambda: torch.randn(1, 10, 12)),
    "learned_h0": (LearnedInitialState, lambda: torch.randn(1, 10, 10)),
    "stacked_residual": (StackedResidual, lambda: torch.randn(1, 10, 8)),
    "gru": (GRUModel, lambda: torch.randn(1, 10, 14)),
}
STEP_MODELS = {
    "cell_step": (CellStep, lambda: torch.randn(1, 9)),
    "context_step": (ContextStep, lambda: torch.randn(1, 6)),
}
REFUSED = {
    "bidirectional": (Bidirectional, "bidirectional"),
    "conv_over_time": (ConvOverTime, "conv"),
    "attention": (Attention, "attention"),
    "mean_over_time": (MeanOverTime, "forward() itself"),
}


def build(name: str, seed: int = 0):
    """The seeded model and an example input for a zoo entry."""
    table = {**SEQUENCE_MODELS, **STEP_MODELS}
    factory, example = table[name]
    torch.manual_seed(seed)
    model = factory().eval()
    return model, example()


def random_input(name: str, frames: int, seed: int = 1) -> torch.Tensor:
    """A [1, frames, ...] input (sequence models) for a zoo entry."""
    _, example = build(name)
    generator = torch.Generator().manual_seed(seed)
    if example.dtype == torch.int64:
        return torch.randint(0, 50, (1, frames), generator=generator)
    return torch.randn((1, frames, *example.shape[2:]), generator=generator)


def torch_reference(model: nn.Module, x: torch.Tensor):
    """The unmodified model on the whole sequence: outputs, and each recurrent layer's final state by state name."""
    finals: dict[str, torch.Tensor] = {}
    handles = []
    for path, module in model.named_modules():
        if isinstance(module, (nn.LSTM, nn.GRU, nn.RNN)):
            def hook(module, args, output, path=path):
                hx = output[1]
                if isinstance(module, nn.LSTM):
                    finals[f"{identifier(path)}_h"], finals[f"{identifier(path)}_c"] = hx
                else:
                    finals[f"{identifier(path)}_h"] = hx
            handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            y = model(x)
    finally:
        for handle in handles:
            handle.remove()
    return y[0].numpy(), {name: value.numpy() for name, value in finals.items()}


def step_reference(model: nn.Module, inputs: list[torch.Tensor]):
    """A step model run step by step in torch: stacked outputs and the final state (by state index)."""
    with torch.no_grad():
        state = model.initial_state(1)
        outputs = []
        for x in inputs:
            y, state = model(x, state)
            outputs.append(y[0].numpy())
    return outputs, [s.numpy() for s in state]
