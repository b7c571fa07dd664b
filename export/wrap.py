"""Turn a user's PyTorch model into a stateless streaming function ``(x, *state_in) -> (y, *state_out)``.

Sequence models: every ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN`` inside is swapped for a shim that reads its initial
state from the graph's state inputs and writes its final state to the state outputs, and every causal
``nn.Conv1d`` / ``nn.Conv2d`` over time for one that carries its receptive field (``export/conv.py``); the user's
``forward`` runs unchanged around them. A many-to-one model (one answer per sequence, ``fc(h_n[-1])`` or
``fc(out[:, -1])``) gets its last recurrent layer's per-frame h on the batch axis, so the head answers every frame.
Step models (``forward(x, state) -> (y, new_state)`` plus ``initial_state``) already are such a function; their
``nn.LSTMCell`` / ``nn.GRUCell`` become static-slice shims (``export/cells.py``). Layers that cannot stream are
refused with the layer's name and the reason.
"""

from __future__ import annotations

import copy
import inspect
import re
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn

from lstm_edge.export.cells import replace_cells
from lstm_edge.export.conv import (
    CONVS,
    POOLS,
    ConvProbe,
    ConvShim,
    classify,
    probe_of,
    refuse_time_pooling,
)
from lstm_edge.runtime.errors import ExportError

RECURRENT = (nn.LSTM, nn.GRU, nn.RNN)
ATTENTION = (nn.MultiheadAttention, nn.TransformerEncoderLayer, nn.TransformerDecoderLayer, nn.Transformer,
             nn.TransformerEncoder, nn.TransformerDecoder)


@dataclass
class StateSlot:
    """One carried state tensor of the exported graph."""

    name: str  # identifier used in graph names: "<name>_in" / "<name>_out"
    shape: tuple[int, ...]
    dtype: torch.dtype
    initial: torch.Tensor  # the value at the start of a stream (zeros or learned)
    source: str  # human description

    @property
    def input(self) -> str:
        return f"{self.name}_in"

    @property
    def output(self) -> str:
        return f"{self.name}_out"


def identifier(path: str) -> str:
    """A module path as a graph-name-safe identifier ("encoder.lstm.0" -> "encoder_lstm_0")."""
    text = re.sub(r"[^0-9A-Za-z_]", "_", path).strip("_") or "rnn"
    return text if not text[0].isdigit() else f"m{text}"


def is_step_model(model: nn.Module) -> bool:
    """A step model has ``initial_state()`` and a ``forward(x, state)`` taking the state as a second argument."""
    if not callable(getattr(model, "initial_state", None)):
        return False
    try:
        parameters = inspect.signature(model.forward).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind is p.VAR_POSITIONAL for p in parameters)


def refuse_unstreamable_layers(model: nn.Module) -> None:
    """Refuse layers that mix time steps by construction (found by type, before anything runs)."""
    for path, module in model.named_modules():
        where = path or type(model).__name__
        if isinstance(module, RECURRENT) and module.bidirectional:
            raise ExportError(f"layer '{where}' ({type(module).__name__}, bidirectional=True) cannot stream: its "
                              "backward direction reads future frames. Export a unidirectional model.")
        if isinstance(module, ATTENTION):
            raise ExportError(f"layer '{where}' ({type(module).__name__}) cannot stream: attention over the "
                              "sequence mixes time steps, so a chunk's output depends on frames outside it.")


class _Context:
    """Side channel between the export wrapper and the recurrent shims during one forward call."""

    def __init__(self) -> None:
        self.mode = "plain"  # "plain" | "probe" | "stream"
        self.state_in: dict[str, tuple[torch.Tensor, ...]] = {}
        self.state_out: dict[str, tuple[torch.Tensor, ...]] = {}
        self.probed_hx: dict[str, Any] = {}
        self.calls: dict[str, int] = {}
        self.conv_probes: dict[str, list[ConvProbe]] = {}


class _RecurrentShim(nn.Module):
    """Stands in for one nn.LSTM/GRU/RNN; carries its (h, c) through the context."""

    def __init__(self, inner: nn.Module, path: str, context: _Context) -> None:
        super().__init__()
        self.inner = inner
        self.path = path
        self._context = [context]  # a list so nn.Module does not register it
        self.unprojected = _UnprojectedLSTM(cast(nn.LSTM, inner)) if getattr(inner, "proj_size", 0) > 0 else None
        # Many-to-one models: this layer's per-frame top-layer h is handed to the head with time on the batch axis.
        self.summary = False

    def forward(self, input: torch.Tensor, hx: Any = None):
        context = self._context[0]
        context.calls[self.path] = context.calls.get(self.path, 0) + 1
        if context.mode == "probe":
            context.probed_hx[self.path] = hx
            return self.inner(input, hx)
        if context.mode != "stream":
            return self.inner(input, hx)
        if context.calls[self.path] > 1:
            raise ExportError(f"layer '{self.path}' ({type(self.inner).__name__}) runs more than once per forward; "
                              "each recurrent layer must run once per chunk so its state has one place to go")
        state = context.state_in[self.path]
        hx_in = state if isinstance(self.inner, nn.LSTM) else state[0]
        if self.unprojected is not None:
            output, hx_out = self.unprojected(input, hx_in)
        else:
            output, hx_out = self.inner(input, hx_in)
        context.state_out[self.path] = tuple(hx_out) if isinstance(self.inner, nn.LSTM) else (hx_out,)
        if self.summary:
            return self._as_summary(output)
        return output, hx_out

    def _as_summary(self, output: torch.Tensor):
        """Time moved onto the batch axis: ``out[:, -1]`` / ``out[-1]`` and ``h_n[-1]`` become every frame's h_t.

        Lower layers' h and every c read as zeros here: a head that uses them is caught by the prefix check.
        """
        inner: Any = self.inner
        top = output[0] if inner.batch_first else output[:, 0]  # [T, H]: the top layer's h at every frame
        layers = inner.num_layers
        h_all = top.unsqueeze(0)
        if layers > 1:
            h_all = torch.cat([torch.zeros_like(top).unsqueeze(0).expand(layers - 1, -1, -1), h_all], dim=0)
        if isinstance(inner, nn.LSTM):
            c_all = torch.zeros_like(top[:, :1]).expand(-1, inner.hidden_size).unsqueeze(0).expand(layers, -1, -1)
            return output.transpose(0, 1), (h_all, c_all)
        return output.transpose(0, 1), h_all


class SequenceStreamer(nn.Module):
    """``forward(x, *state_in) -> (y, *state_out)`` around a sequence model with its recurrent layers shimmed."""

    def __init__(self, model: nn.Module, example: torch.Tensor) -> None:
        super().__init__()
        refuse_unstreamable_layers(model)
        self.model = copy.deepcopy(model).eval()
        self._context = _Context()
        self.rnn_paths: list[str] = []
        self.conv_paths: list[str] = []
        self.many_to_one = False
        self.summary_layer: str | None = None
        for path, module in list(self.model.named_modules()):
            if isinstance(module, (*RECURRENT, *CONVS)):
                parent_path, _, child = path.rpartition(".")
                parent = self.model.get_submodule(parent_path) if parent_path else self.model
                if isinstance(module, RECURRENT):
                    parent._modules[child] = _RecurrentShim(module, path, self._context)
                    self.rnn_paths.append(path)
                else:
                    parent._modules[child] = ConvShim(module, path, self._context)
                    self.conv_paths.append(path)
        self.slots: list[StateSlot] = []
        self._slot_index: list[tuple[str, int]] = []
        self._probe_initial_state(example)
        self._probe_time_axes(example)
        if not self.slots:
            raise ExportError(f"{type(model).__name__} has no nn.LSTM/nn.GRU/nn.RNN layer, no causal convolution "
                              "over time and no initial_state(): nothing to stream. A step model defines "
                              "forward(x, state) and initial_state().")
        self.eval()  # exporters restore the mode they found; dropout must stay off afterwards

    def _probe_time_axes(self, example: torch.Tensor) -> None:
        """Run at two lengths: which axis of each conv/pool input is time, and is the output per frame?"""
        context = self._context
        lengths = (PROBE_LONG, PROBE_SHORT)
        pools: dict[str, list[ConvProbe]] = {}
        handles = []
        for path, module in self.model.named_modules():
            if isinstance(module, POOLS):
                def hook(module, args, path=path):
                    pools.setdefault(path, []).append(probe_of(args[0]))
                handles.append(module.register_forward_pre_hook(hook))
        outputs, order = [], []
        try:
            for index, frames in enumerate(lengths):
                context.conv_probes = {}
                outputs.append(self._call_plain(random_like(example, frames, seed=11 + index), "probe"))
                order = list(context.calls)
                if index == 0:
                    first_probes = dict(context.conv_probes)
        finally:
            for handle in handles:
                handle.remove()
        for path, module in self.model.named_modules():
            if isinstance(module, POOLS) and len(pools.get(path, [])) == 2:
                refuse_time_pooling(path, module, *pools[path])
        for path in self.conv_paths:
            shim: Any = self.model.get_submodule(path)
            probes = first_probes.get(path, []) + context.conv_probes.get(path, [])
            if len(probes) != 2:
                continue  # not run, or run more than once: the time-locality check judges it
            classify(shim, probes[0], probes[1])
            if shim.carries_state:
                shape = list(probes[0].shape)
                shape[shim.time_axis] = shim.receptive
                shape[0] = 1
                self.slots.append(StateSlot(f"{identifier(path)}_context", tuple(shape), torch.float32,
                                            torch.zeros(shape), f"{path} context: the last {shim.receptive} input "
                                            f"frames ({type(shim.inner).__name__} input, time on axis "
                                            f"{shim.time_axis}, batch 1)"))
                self._slot_index.append((path, 1))
        long_out, short_out = outputs
        per_frame = (long_out.ndim >= 2 and long_out.shape[1] == lengths[0] and short_out.shape[1] == lengths[1])
        if not per_frame and self.rnn_paths:
            if long_out.shape != short_out.shape or long_out.ndim < 2 or long_out.shape[0] != 1:
                raise ExportError(f"a sequence model must return [1, T, ...] (one row per frame) or one answer "
                                  f"[1, ...] per sequence (many-to-one); got {tuple(long_out.shape)} for T="
                                  f"{lengths[0]} and {tuple(short_out.shape)} for T={lengths[1]}")
            last = [p for p in order if p in self.rnn_paths][-1]
            cast(Any, self.model.get_submodule(last)).summary = True
            self.many_to_one = True
            self.summary_layer = last

    def _modules_by_path(self) -> dict[str, nn.Module]:
        return {path: cast(Any, self.model.get_submodule(path)).inner for path in self.rnn_paths}

    def _call_plain(self, x: torch.Tensor, mode: str) -> Any:
        context = self._context
        context.mode, context.calls = mode, {}
        try:
            with torch.no_grad():
                return self.model(x)
        finally:
            context.mode = "plain"

    def _probe_initial_state(self, example: torch.Tensor) -> None:
        """Run the model once to learn each recurrent layer's initial state (zeros, or learned h0/c0)."""
        context = self._context
        out = self._call_plain(example, "probe")
        if not isinstance(out, torch.Tensor):
            raise ExportError(f"a sequence model's forward must return one tensor [1, T, ...]; "
                              f"got {type(out).__name__}")
        first_hx = dict(context.probed_hx)
        for path in self.rnn_paths:
            if context.calls.get(path, 0) != 1:
                raise ExportError(f"layer '{path}' ran {context.calls.get(path, 0)} times in one forward; each "
                                  "recurrent layer must run exactly once per chunk")
        # A learned initial state must not depend on the input: probe again with other data and compare.
        self._call_plain(_other_input(example), "probe")
        for path, module in self._modules_by_path().items():
            names = ("h", "c") if isinstance(module, nn.LSTM) else ("h",)
            shapes = _state_shapes(module)
            hx = first_hx[path]
            again = context.probed_hx[path]
            values: tuple[torch.Tensor, ...]
            if hx is None:
                values = tuple(torch.zeros(shape) for shape in shapes)
            else:
                values = tuple(hx) if isinstance(hx, (tuple, list)) else (hx,)
                values_again = tuple(again) if isinstance(again, (tuple, list)) else (again,)
                for name, value, value_again, shape in zip(names, values, values_again, shapes):
                    if tuple(value.shape) != shape:
                        raise ExportError(f"layer '{path}': initial {name} has shape {tuple(value.shape)}, expected "
                                          f"{shape} (layers x batch 1 x hidden)")
                    if not torch.equal(value, value_again):
                        raise ExportError(f"layer '{path}': the initial {name} passed to it depends on the input; "
                                          "a streaming model's initial state must be zeros or learned parameters")
            for name, value, shape in zip(names, values, shapes):
                slot_name = f"{identifier(path)}_{name}"
                self.slots.append(StateSlot(slot_name, shape, torch.float32, value.detach().clone().float(),
                                            f"{path} {name} ({type(module).__name__}: layers x batch x size)"))
                self._slot_index.append((path, len(names)))

    def forward(self, x: torch.Tensor, *state_in: torch.Tensor):
        context = self._context
        grouped: dict[str, list[torch.Tensor]] = {}
        for (path, _), tensor in zip(self._slot_index, state_in):
            grouped.setdefault(path, []).append(tensor)
        context.state_in = {path: tuple(tensors) for path, tensors in grouped.items()}
        context.state_out = {}
        context.mode, context.calls = "stream", {}
        try:
            y = self.model(x)
        finally:
            context.mode = "plain"
        outs: list[torch.Tensor] = []
        for path in dict.fromkeys(p for p, _ in self._slot_index):
            if path not in context.state_out:
                raise ExportError(f"layer '{path}' did not run in forward(); every streaming layer must run each "
                                  "chunk")
            outs.extend(context.state_out[path])
        if self.many_to_one:
            y = y.unsqueeze(0)  # [T, ...] answers (time on the batch axis) -> [1, T, ...]
        return (y, *outs)


class _UnprojectedLSTM(nn.Module):
    """An LSTM with ``proj_size`` rewritten as plain LSTM layers plus matmuls (ONNX's LSTM op has no projection).

    Per layer, the recurrence ``W_hh @ (W_hr @ u)`` is folded into one ``(W_hh @ W_hr) @ u`` on the unprojected
    output ``u = o * tanh(c)``; the carried (projected) ``h`` is lifted into that space with the pseudo-inverse of
    ``W_hr`` (exact while ``W_hr`` has full row rank, which ``proj_size < hidden_size`` allows) and projected back
    at the end. The carried state keeps torch's own meaning and shapes.
    """

    def __init__(self, inner: nn.LSTM) -> None:
        super().__init__()
        self.batch_first = inner.batch_first
        self.layers = nn.ModuleList()
        for layer in range(inner.num_layers):
            w_ih = getattr(inner, f"weight_ih_l{layer}").detach()
            w_hh = getattr(inner, f"weight_hh_l{layer}").detach()
            w_hr = getattr(inner, f"weight_hr_l{layer}").detach()
            plain: Any = nn.LSTM(w_ih.shape[1], inner.hidden_size, batch_first=inner.batch_first, bias=inner.bias)
            with torch.no_grad():
                plain.weight_ih_l0.copy_(w_ih)
                plain.weight_hh_l0.copy_((w_hh.double() @ w_hr.double()).float())
                if inner.bias:
                    plain.bias_ih_l0.copy_(getattr(inner, f"bias_ih_l{layer}").detach())
                    plain.bias_hh_l0.copy_(getattr(inner, f"bias_hh_l{layer}").detach())
            self.layers.append(plain)
            self.register_buffer(f"project_{layer}", w_hr.t().contiguous())
            self.register_buffer(f"lift_{layer}", torch.linalg.pinv(w_hr.double()).t().float().contiguous())

    def forward(self, x: torch.Tensor, hx: tuple[torch.Tensor, torch.Tensor]):
        h0, c0 = hx
        hs, cs = [], []
        for index, plain in enumerate(self.layers):
            project = getattr(self, f"project_{index}")
            lift = getattr(self, f"lift_{index}")
            u0 = torch.matmul(h0[index:index + 1], lift)
            u, (u_last, c_last) = plain(x, (u0, c0[index:index + 1]))
            x = torch.matmul(u, project)
            hs.append(torch.matmul(u_last, project))
            cs.append(c_last)
        return x, (torch.cat(hs, 0), torch.cat(cs, 0))


def _state_shapes(module: Any) -> tuple[tuple[int, ...], ...]:
    layers = module.num_layers * (2 if module.bidirectional else 1)
    if isinstance(module, nn.LSTM):
        h_size = module.proj_size if module.proj_size > 0 else module.hidden_size
        return ((layers, 1, h_size), (layers, 1, module.hidden_size))
    return ((layers, 1, module.hidden_size),)


PROBE_LONG, PROBE_SHORT = 29, 19


def random_like(example: torch.Tensor, frames: int, seed: int) -> torch.Tensor:
    """A random input like ``example`` with ``frames`` time steps (token ids stay in the example's range)."""
    generator = torch.Generator().manual_seed(seed)
    shape = (example.shape[0], frames, *example.shape[2:])
    if example.dtype.is_floating_point:
        scale = float(example.float().std()) if example.numel() > 1 else 1.0
        return torch.randn(shape, generator=generator) * (scale if scale > 0 else 1.0)
    high = int(example.max()) + 1
    return torch.randint(0, max(high, 2), shape, generator=generator, dtype=example.dtype)


def _other_input(example: torch.Tensor) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1234)
    if example.dtype.is_floating_point:
        return torch.randn(example.shape, generator=generator, dtype=example.dtype)
    high = int(example.max().item()) + 1
    return torch.randint(0, max(high, 1), example.shape, generator=generator, dtype=example.dtype)


class StepStreamer(nn.Module):
    """``forward(x, *state_in) -> (y, *state_out)`` around a step model ``forward(x, state) -> (y, state)``."""

    def __init__(self, model: nn.Module, example: torch.Tensor) -> None:
        super().__init__()
        refuse_unstreamable_layers(model)
        self.model = copy.deepcopy(model).eval()
        self.cell_paths = replace_cells(self.model)
        with torch.no_grad():
            initial = cast(Any, self.model).initial_state(1)
        if isinstance(initial, torch.Tensor):
            initial = (initial,)
        if not isinstance(initial, (tuple, list)) or not all(isinstance(t, torch.Tensor) for t in initial):
            raise ExportError(f"initial_state(1) must return a tuple of tensors; got {type(initial).__name__}")
        names = getattr(self.model, "state_names", None) or [f"state{i}" for i in range(len(initial))]
        if len(names) != len(initial):
            raise ExportError(f"state_names has {len(names)} names for {len(initial)} state tensors")
        self.slots = [StateSlot(identifier(name), tuple(t.shape), t.dtype, t.detach().clone(), f"state {name}")
                      for name, t in zip(names, initial)]
        for slot in self.slots:
            if slot.dtype != torch.float32:
                raise ExportError(f"state '{slot.name}': expected float32, got {slot.dtype}")
        with torch.no_grad():
            out = self.model(example, tuple(initial))
        if not (isinstance(out, (tuple, list)) and len(out) == 2 and isinstance(out[0], torch.Tensor)):
            raise ExportError("a step model's forward(x, state) must return (y, new_state); "
                              f"got {type(out).__name__}")
        new_state = out[1] if isinstance(out[1], (tuple, list)) else (out[1],)
        for slot, tensor in zip(self.slots, new_state):
            if tuple(tensor.shape) != slot.shape:
                raise ExportError(f"state '{slot.name}': forward returned shape {tuple(tensor.shape)}, "
                                  f"initial_state has {slot.shape}")
        if len(new_state) != len(self.slots):
            raise ExportError(f"forward returned {len(new_state)} state tensors, initial_state has {len(self.slots)}")
        self.eval()

    def forward(self, x: torch.Tensor, *state_in: torch.Tensor):
        y, new_state = self.model(x, tuple(state_in))
        if isinstance(new_state, torch.Tensor):
            new_state = (new_state,)
        return (y, *new_state)
