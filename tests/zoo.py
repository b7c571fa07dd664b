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
    table = {**SEQUENCE_MODELS, **STEP_MODELS, **CONV_MODELS, **MANY_TO_ONE_MODELS, **FRONT_END_STEP_MODELS}
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


# ------------------------------------------------------------------ convolutions, step front ends, many-to-one
class CausalCRNN(nn.Module):
    """Conv2d over (time, freq) with causal time padding (padding=k-1, trailing frames trimmed), then an LSTM."""

    def __init__(self, features: int = 16) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, kernel_size=(3, 3), padding=(2, 1))
        self.conv2 = nn.Conv2d(4, 4, kernel_size=(2, 3), stride=(1, 2), padding=(0, 1))
        self.lstm = nn.LSTM(4 * (features // 2), 24, batch_first=True)
        self.head = nn.Linear(24, 5)

    def forward(self, x):  # x [1, T, F]
        h = torch.relu(self.conv(x.unsqueeze(1))[:, :, :-2])  # [1, C, T, F]
        h = torch.relu(self.conv2(nn.functional.pad(h, (0, 0, 1, 0))))  # left pad 1 frame in time
        h = h.permute(0, 2, 1, 3).flatten(2)
        return self.head(self.lstm(h)[0])


class DilatedTCN(nn.Module):
    """Two dilated causal Conv1d (F.pad on the left) with a residual, then a 2-layer LSTM."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(10, 16, kernel_size=3, dilation=1)
        self.conv2 = nn.Conv1d(16, 16, kernel_size=3, dilation=4)
        self.lstm = nn.LSTM(16, 20, num_layers=2, batch_first=True)
        self.head = nn.Linear(20, 4)

    def forward(self, x):
        h = x.transpose(1, 2)
        a = torch.relu(self.conv1(nn.functional.pad(h, (2, 0))))
        b = torch.relu(self.conv2(nn.functional.pad(a, (8, 0)))) + a
        return self.head(self.lstm(b.transpose(1, 2))[0])


class DepthwiseSeparable(nn.Module):
    """Depthwise (groups=channels) causal Conv1d + pointwise Conv1d, twice, then an LSTM."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList()
        for _ in range(2):
            self.blocks.append(nn.ModuleDict({
                "depthwise": nn.Conv1d(12, 12, kernel_size=5, groups=12, padding=4),
                "pointwise": nn.Conv1d(12, 12, kernel_size=1),
                "norm": nn.BatchNorm1d(12),
            }))
        self.lstm = nn.LSTM(12, 16, batch_first=True)
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        h = x.transpose(1, 2)
        for block in self.blocks:
            h = torch.relu(block["norm"](block["pointwise"](block["depthwise"](h)[:, :, :-4])))
        return self.head(self.lstm(h.transpose(1, 2))[0])


class StridedConv(nn.Module):
    """A causal Conv1d with stride 2 over time before an LSTM (downsamples the stream)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(8, 8, kernel_size=3, stride=2)
        self.lstm = nn.LSTM(8, 16, batch_first=True)
        self.head = nn.Linear(16, 2)

    def forward(self, x):
        h = self.conv(nn.functional.pad(x.transpose(1, 2), (2, 0)))
        return self.head(self.lstm(h.transpose(1, 2))[0])


class SameConv(nn.Module):
    """padding='same' over time: output frame t reads frame t+1."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(8, 8, kernel_size=3, padding="same")
        self.lstm = nn.LSTM(8, 16, batch_first=True)
        self.head = nn.Linear(16, 2)

    def forward(self, x):
        return self.head(self.lstm(self.conv(x.transpose(1, 2)).transpose(1, 2))[0])


class VadStep(nn.Module):
    """A voice-activity-detector-style step model over a raw-audio window.

    Context buffer of past samples + new samples -> reflect pad -> STFT as a strided Conv1d -> magnitude ->
    strided convs -> squeeze -> LSTMCell -> 1x1 conv head -> sigmoid. State: stacked (h, c) and the context.
    """

    state_names = ("hc", "context")
    samples, context_samples, n_fft, hop = 128, 32, 64, 32

    def __init__(self) -> None:
        super().__init__()
        bins = self.n_fft // 2 + 1
        self.stft = nn.Conv1d(1, 2 * bins, self.n_fft, stride=self.hop, bias=False)
        self.encoder = nn.Sequential(
            nn.Conv1d(bins, 16, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv1d(16, 16, 3, stride=2, padding=0), nn.ReLU())
        self.cell = nn.LSTMCell(16, 16)
        self.head = nn.Conv1d(16, 1, 1)

    def initial_state(self, batch_size: int = 1):
        return (torch.zeros(2, batch_size, 16), torch.zeros(batch_size, self.context_samples))

    def forward(self, x, state):  # x [1, samples]
        hc, context = state
        window = torch.cat([context, x], dim=1)
        padded = nn.functional.pad(window.unsqueeze(1), (self.n_fft // 4, self.n_fft // 4), mode="reflect")
        real, imag = self.stft(padded).chunk(2, dim=1)
        magnitude = torch.sqrt(real ** 2 + imag ** 2 + 1e-9)
        feature = self.encoder(magnitude).squeeze(-1)
        h, c = self.cell(feature, (hc[0], hc[1]))
        out = torch.sigmoid(self.head(h.unsqueeze(-1))).squeeze(-1)
        return out, (torch.stack([h, c]), window[:, -self.context_samples:])


class GRUCellStep(nn.Module):
    """A step model of two GRUCells."""

    state_names = ("h1", "h2")

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.GRUCell(7, 20)
        self.second = nn.GRUCell(20, 12)
        self.head = nn.Linear(12, 3)

    def initial_state(self, batch_size: int = 1):
        return (torch.zeros(batch_size, 20), torch.zeros(batch_size, 12))

    def forward(self, x, state):
        h1 = self.first(x, state[0])
        h2 = self.second(torch.tanh(h1), state[1])
        return self.head(h2), (h1, h2)


class LastStateClassifier(nn.Module):
    """``_, (h_n, c_n) = lstm(x); return fc(h_n[-1])``: one answer per sequence."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(10, 24, num_layers=2, batch_first=True)
        self.fc = nn.Linear(24, 4)

    def forward(self, x):
        _, (h_n, c_n) = self.lstm(x)
        return self.fc(h_n[-1])


class LastFrameTokenClassifier(nn.Module):
    """Embedding -> LSTM -> ``fc(out[:, -1])``: a sentiment-style token classifier."""

    def __init__(self, vocab: int = 50) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, 12)
        self.lstm = nn.LSTM(12, 20, batch_first=True)
        self.fc = nn.Linear(20, 2)

    def forward(self, tokens):
        out, _ = self.lstm(self.embed(tokens))
        return self.fc(out[:, -1])


class CellStateClassifier(nn.Module):
    """``fc(c_n[-1])``: the cell state is not an answer the stream can give frame by frame."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(8, 16, batch_first=True)
        self.head = nn.Linear(16, 2)

    def forward(self, x):
        _, (_, c_n) = self.lstm(x)
        return self.head(c_n[-1])


CONV_MODELS = {
    "causal_crnn": (CausalCRNN, lambda: torch.randn(1, 10, 16)),
    "dilated_tcn": (DilatedTCN, lambda: torch.randn(1, 10, 10)),
    "depthwise_separable": (DepthwiseSeparable, lambda: torch.randn(1, 10, 12)),
}
MANY_TO_ONE_MODELS = {
    "last_state_classifier": (LastStateClassifier, lambda: torch.randn(1, 10, 10)),
    "last_frame_tokens": (LastFrameTokenClassifier, lambda: torch.randint(0, 50, (1, 10))),
}
FRONT_END_STEP_MODELS = {
    "vad_step": (VadStep, lambda: torch.randn(1, VadStep.samples) * 0.1),
    "grucell_step": (GRUCellStep, lambda: torch.randn(1, 7)),
}
REFUSED.update({
    "strided_conv": (StridedConv, "stride 2 over time"),
    "same_conv": (SameConv, "padding='same'"),
    "cell_state_classifier": (CellStateClassifier, "many-to-one"),
})
