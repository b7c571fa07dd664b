"""``nn.LSTMCell`` / ``nn.GRUCell`` written out as matmuls and static slices.

torch's own cells split their gate vector with ``chunk``; the TorchScript ONNX exporter needs the size of that axis,
and loses it behind shape-dependent ops such as ``squeeze(-1)`` ("ONNX export of operator unsafe_chunk, unknown
dimension size"). Slicing at the hidden size, a Python int, needs no shape information. Same math, same weights.
"""

from __future__ import annotations

import torch
from torch import nn

CELLS = (nn.LSTMCell, nn.GRUCell)


class LSTMCellShim(nn.Module):
    def __init__(self, inner: nn.LSTMCell) -> None:
        super().__init__()
        self.inner = inner
        self.hidden = inner.hidden_size

    def forward(self, x: torch.Tensor, hx: tuple[torch.Tensor, torch.Tensor] | None = None):
        cell = self.inner
        if hx is None:
            zeros = x.new_zeros(x.shape[0], self.hidden)
            hx = (zeros, zeros)
        h, c = hx
        gates = torch.matmul(x, cell.weight_ih.t()) + torch.matmul(h, cell.weight_hh.t())
        if cell.bias:
            gates = gates + (cell.bias_ih + cell.bias_hh)
        n = self.hidden
        i = torch.sigmoid(gates[..., 0:n])
        f = torch.sigmoid(gates[..., n:2 * n])
        g = torch.tanh(gates[..., 2 * n:3 * n])
        o = torch.sigmoid(gates[..., 3 * n:4 * n])
        c_new = f * c + i * g
        return o * torch.tanh(c_new), c_new


class GRUCellShim(nn.Module):
    def __init__(self, inner: nn.GRUCell) -> None:
        super().__init__()
        self.inner = inner
        self.hidden = inner.hidden_size

    def forward(self, x: torch.Tensor, hx: torch.Tensor | None = None) -> torch.Tensor:
        cell = self.inner
        h = x.new_zeros(x.shape[0], self.hidden) if hx is None else hx
        gi = torch.matmul(x, cell.weight_ih.t())
        gh = torch.matmul(h, cell.weight_hh.t())
        if cell.bias:
            gi = gi + cell.bias_ih
            gh = gh + cell.bias_hh
        n = self.hidden
        r = torch.sigmoid(gi[..., 0:n] + gh[..., 0:n])
        z = torch.sigmoid(gi[..., n:2 * n] + gh[..., n:2 * n])
        candidate = torch.tanh(gi[..., 2 * n:3 * n] + r * gh[..., 2 * n:3 * n])
        return (1 - z) * candidate + z * h


def replace_cells(model: nn.Module) -> list[str]:
    """Swap every LSTMCell/GRUCell of ``model`` (in place) for its shim; return their paths."""
    paths = []
    for path, module in list(model.named_modules()):
        if isinstance(module, CELLS):
            parent_path, _, child = path.rpartition(".")
            parent = model.get_submodule(parent_path) if parent_path else model
            parent._modules[child] = LSTMCellShim(module) if isinstance(module, nn.LSTMCell) else GRUCellShim(module)
            paths.append(path)
    return paths
