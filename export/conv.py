"""Causal convolutions over time as streaming layers: each keeps its receptive field as named state.

A causal ``Conv1d``/``Conv2d`` with kernel ``k`` and dilation ``d`` along time reads the current frame and the
``(k-1)*d`` frames before it. Run on a chunk, it needs those past frames from the previous chunk: the shim keeps
them as a state tensor (the last ``(k-1)*d`` input frames, zeros at the start of a stream, which is what the
causal zero padding of the whole-sequence model feeds the first frames). Two causal spellings are recognised:

- left padding outside the layer (``F.pad(x, ((k-1)*d, 0))``, layer ``padding=0``): the padded frames of each
  chunk are replaced by the carried ones;
- ``padding=(k-1)*d`` on the layer with the last ``(k-1)*d`` output frames trimmed afterwards: the layer runs
  without time padding on carried + new frames and its output gets ``(k-1)*d`` placeholder frames at the end,
  which the model's own trim removes.

Which axis is time is found by probing the model at two lengths. Strided or non-causal convolutions over time
are refused with the reason and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lstm_edge.runtime.errors import ExportError

CONVS = (nn.Conv1d, nn.Conv2d)
POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d)


@dataclass
class ConvProbe:
    """What one conv layer saw in one probe run."""

    shape: tuple[int, ...]
    leading_zeros: list[int] = field(default_factory=list)  # per axis: all-zero frames at the start
    trailing_zeros: list[int] = field(default_factory=list)


def _zero_run(x: torch.Tensor, axis: int, from_end: bool) -> int:
    """How many consecutive all-zero slices along ``axis`` start (or end) ``x``."""
    moved = x.detach().movedim(axis, 0)
    flat = moved.reshape(moved.shape[0], -1)
    is_zero = (flat == 0).all(dim=1).tolist()
    if from_end:
        is_zero = is_zero[::-1]
    count = 0
    for zero in is_zero:
        if not zero:
            break
        count += 1
    return count


def probe_of(x: torch.Tensor) -> ConvProbe:
    return ConvProbe(tuple(x.shape), [_zero_run(x, a, False) for a in range(x.ndim)],
                     [_zero_run(x, a, True) for a in range(x.ndim)])


def _at(axis: int, index: slice) -> tuple:
    return (slice(None),) * axis + (index,)


class ConvShim(nn.Module):
    """Stands in for one Conv1d/Conv2d. Plain or probe mode: the layer itself. Stream mode: carries its context."""

    def __init__(self, inner: nn.Conv1d | nn.Conv2d, path: str, context: Any) -> None:
        super().__init__()
        self.inner: nn.Conv1d | nn.Conv2d = inner
        self.path = path
        self._context = [context]
        self.time_axis: int | None = None  # axis of the layer's input that is time (None: time-local layer)
        self.receptive = 0  # (k-1)*d along time
        self.trims_output = False  # padding=(k-1)*d on the layer, trailing frames trimmed by the model

    def configure(self, time_axis: int, receptive: int, trims_output: bool) -> None:
        self.time_axis, self.receptive, self.trims_output = time_axis, receptive, trims_output

    @property
    def carries_state(self) -> bool:
        return self.time_axis is not None and self.receptive > 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        context = self._context[0]
        context.calls[self.path] = context.calls.get(self.path, 0) + 1
        if context.mode == "probe":
            context.conv_probes.setdefault(self.path, []).append(probe_of(x))
        if context.mode != "stream" or not self.carries_state:
            return self.inner(x)
        if context.calls[self.path] > 1:
            raise ExportError(f"layer '{self.path}' ({type(self.inner).__name__}) runs more than once per forward; "
                              "a streaming convolution must run once per chunk so its context has one place to go")
        axis, r = self.time_axis, self.receptive
        if axis is None:  # unreachable: carries_state checked it
            return self.inner(x)
        carried = context.state_in[self.path][0]
        fresh = x if self.trims_output else x[_at(axis, slice(r, None))]
        window = torch.cat([carried, fresh], dim=axis)
        context.state_out[self.path] = (window[_at(axis, slice(-r, None))],)
        y = self._conv_without_time_padding(window, axis)
        if self.trims_output:  # placeholders for the frames the model trims (they would read future padding)
            pad = [0, 0] * (y.ndim - 1 - axis) + [0, r]
            y = F.pad(y, pad)
        return y

    def _conv_without_time_padding(self, x: torch.Tensor, axis: int) -> torch.Tensor:
        conv = self.inner
        padding = [int(p) for p in conv.padding]
        padding[axis - 2] = 0
        if isinstance(conv, nn.Conv1d):
            return F.conv1d(x, conv.weight, conv.bias, conv.stride, padding, conv.dilation, conv.groups)
        return F.conv2d(x, conv.weight, conv.bias, conv.stride, padding, conv.dilation, conv.groups)


def _fix(k: int, d: int) -> str:
    r = (k - 1) * d
    return (f"Fix: pad on the left only, e.g. x = F.pad(x, ({r}, 0)) before the layer with padding=0, or use "
            f"padding={r} and drop the last {r} output frames (y[..., :-{r}]); the exporter then streams the layer "
            f"with its last {r} input frames as state")


def classify(shim: ConvShim, first: ConvProbe, second: ConvProbe) -> None:
    """Decide from two probe runs (different lengths) how the layer relates to time; configure it or refuse."""
    conv = shim.inner
    kernel_size, dilation, stride = tuple(conv.kernel_size), tuple(conv.dilation), tuple(conv.stride)
    varying = [a for a in range(2, len(first.shape)) if first.shape[a] != second.shape[a]]
    if not varying:
        return  # the layer does not run along the time axis (e.g. a conv over frequency only)
    where = f"layer '{shim.path}' ({type(conv).__name__})"
    if len(varying) > 1:
        raise ExportError(f"{where}: more than one of its spatial axes changes with the input length "
                          f"({first.shape} vs {second.shape}); expected time on one axis only")
    axis = varying[0]
    spatial = axis - 2
    k, d, s = int(kernel_size[spatial]), int(dilation[spatial]), int(stride[spatial])
    r = (k - 1) * d
    if s > 1:
        raise ExportError(f"{where} has stride {s} over time: it downsamples the stream, which this exporter does "
                          "not stream yet (each chunk would produce a varying number of frames). Move the "
                          "downsampling after the recurrent layers, or write the model as a step model "
                          "(forward(x, state)) that consumes a fixed window per call.")
    if isinstance(conv.padding, str):
        if conv.padding == "same" and r > 0:
            raise ExportError(f"{where} uses padding='same': output frame t reads {r // 2 or r} future frames, "
                              "so a chunk's output depends on input not yet received. " + _fix(k, d) + ".")
        padding = 0
    else:
        padding = int(conv.padding[spatial])
    if r == 0:
        if padding:
            raise ExportError(f"{where} pads {padding} frames on both ends of time with a kernel of 1: the padded "
                              "outputs do not exist in a stream. Use padding=0 along time.")
        return
    lead, trail = first.leading_zeros[axis], first.trailing_zeros[axis]
    lead2, trail2 = second.leading_zeros[axis], second.trailing_zeros[axis]
    if padding == r and conv.padding_mode == "zeros":
        shim.configure(axis, r, trims_output=True)
        return
    if padding == 0 and min(lead, lead2) >= r and max(trail, trail2) == 0:
        shim.configure(axis, r, trims_output=False)
        return
    if padding or (lead and trail) or (lead2 and trail2):
        raise ExportError(f"{where} is not causal: kernel {k}, dilation {d} and padding {padding} along time "
                          f"(plus {lead} zero frames before and {trail} after its input) let output frame t read "
                          f"future frames. " + _fix(k, d) + ".")
    raise ExportError(f"{where} is unpadded along time (kernel {k}, dilation {d}): its output is {r} frames "
                      f"shorter than its input, so the model's output cannot follow the input frame by frame. "
                      + _fix(k, d) + ".")


def refuse_time_pooling(path: str, module: Any, first: ConvProbe, second: ConvProbe) -> None:
    """Pooling layers that run along time with a window or stride > 1 mix or drop frames: refuse them."""
    varying = [a for a in range(2, len(first.shape)) if first.shape[a] != second.shape[a]]
    if not varying:
        return
    spatial = varying[0] - 2
    kernel = module.kernel_size if isinstance(module.kernel_size, int) else module.kernel_size[spatial]
    stride = module.stride if isinstance(module.stride, int) else module.stride[spatial]
    if kernel > 1 or stride > 1:
        raise ExportError(f"layer '{path}' ({type(module).__name__}, kernel {kernel}, stride {stride} over time) "
                          "pools over time: it drops or mixes frames, which this exporter does not stream. Pool "
                          "over frequency only (kernel 1 along time), or move time pooling after the recurrent "
                          "layers into a step model.")
