"""The C weight file (``model.lec`` float32, ``model.int8.lec`` int8): the layers of the float ONNX graph, in order.

The float ONNX graph is the source because every model directory has one and its dataflow is already resolved
(the user's ``forward``, feature normalisation folded in as Sub/Div, the state threaded by name). Each node maps
onto a layer of ``runtime/native/lstm_edge_model.c``: MatMul/Gemm (+Add) -> linear, LSTM/GRU -> recurrent layer
reading and writing its slice of the named state, Gather of a table by the token ids -> embedding,
LayerNormalization, Relu/Tanh/Sigmoid/Softmax/LogSoftmax, Add of two activations (residual), Sub/Div/Mul/Add by a
constant -> elementwise affine, the unprojected form of an LSTM with ``proj_size`` -> projected LSTM, Conv over a
context window (export/conv.py: Concat(context state, frames)) -> causal conv. Each value's layout in its buffer is
tracked (which axis is time, which are the frame's features, zero frames padded along time and not yet sliced
off), so Transpose/Squeeze/Unsqueeze/Reshape/Pad/Slice that keep the frames intact are no-ops; nodes of constants
only (pad amounts, shapes) are evaluated. Slices, splits, pads and concatenations over the features of a frame
become gathers (the node evaluated on the frame's value indices); products, sqrt, erf and pooling have their own
layers. Step models (one call = one C frame, the batch axis standing for time): the nodes of an nn.LSTMCell /
nn.GRUCell scope become one recurrent layer (checked by evaluating them), Concat(context state, x) along the features
a context-window layer. Anything else is refused with the layer's name. The format is specified in
docs/manifest.md ("C weight file"); the int8 file keeps float the layers mixed precision kept float.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from lstm_edge.export.c_cells import cell_scopes, read_cell
from lstm_edge.runtime.errors import ExportError
from lstm_edge.runtime.manifest import Manifest, check_file, file_entry

MAGIC = b"LEMW"
FILE_VERSION = 3  # the newest version written; each file is written with the oldest version that holds it
HEADER_BYTES = 64
C_FILES = {"float": "model.lec", "int8": "model.int8.lec"}
(OP_LINEAR, OP_AFFINE, OP_ADD, OP_ACT, OP_LSTM, OP_GRU, OP_EMBED, OP_LAYERNORM, OP_LSTM_PROJ, OP_CONV, OP_GATHER,
 OP_MUL, OP_CONTEXT, OP_POOL) = range(1, 15)
VERSION_2_LAYERS = (OP_LSTM_PROJ, OP_CONV)  # files holding them are version 2; others stay version 1
VERSION_3_LAYERS = (OP_GATHER, OP_MUL, OP_CONTEXT, OP_POOL)  # and files holding these (or mixed precision) 3
WEIGHT_LAYERS = (OP_LINEAR, OP_LSTM, OP_GRU, OP_LSTM_PROJ, OP_CONV)  # their matrices are int8 in int8 files
ACTIVATIONS = {"Relu": 1, "Tanh": 2, "Sigmoid": 3, "Softmax": 4, "LogSoftmax": 5, "Sqrt": 6, "Erf": 7, "Gelu": 8}
VERSION_3_ACTIVATIONS = (6, 7, 8)
POOL_MAX, POOL_AVERAGE, POOL_AVERAGE_WITH_PADDING = 1, 2, 3
GATHER_ZERO = -1.0  # a gather's index of a zero value (constant padding)
ALIASES = ("Transpose", "Squeeze", "Unsqueeze", "Reshape", "Identity", "Flatten")
QUANTIZATION = {
    "mode": "dynamic",
    "tool": "lstm-edge C exporter",
    "weights": "int8 per output row, symmetric (scale = max|row| / 127, values in [-127, 127])",
    "activations": "int8 per input vector at run time (scale = max|v| / 127): each frame's input, each h",
    "state": "float32",
    "io_dtype": "float32",
}
NONFINITE_PREFIX = "lstm_edge_nonfinite"


@dataclass
class Layer:
    """One layer of the C file: type, buffer indices, integer parameters and its tensors (float32)."""

    type: int
    in0: int
    out: int
    in1: int = 0
    params: list[int] = field(default_factory=list)
    extra: list[int] = field(default_factory=list)  # causal conv: six more parameters (file version 2)
    matrices: list[np.ndarray] = field(default_factory=list)  # quantized in int8 files
    vectors: list[np.ndarray] = field(default_factory=list)  # always float32
    name: str = ""
    sources: list[str] = field(default_factory=list)  # per matrix: the ONNX layer name (mixed precision's naming)


SENTINEL_T = 1_000_003  # stands for the time length where a Shape output is folded into a constant

Axis = str | int  # "T" time, "U" a unit axis, k: the k-th dimension of the buffer's frame


@dataclass(frozen=True)
class View:
    """How an ONNX value lies in its buffer: per ONNX axis time, unit or a frame dimension; the frame's dimensions
    (row-major in memory); frames of zero padding before/after the real ones (a Pad along time not yet sliced off)."""

    axes: tuple[Axis, ...]
    frame: tuple[int, ...]
    lead: int = 0
    trail: int = 0

    @staticmethod
    def of(axes: Sequence[Axis], frame: Sequence[int], lead: int = 0, trail: int = 0) -> View:
        """Normalised: frame dimensions of size 1 become unit axes."""
        keep = [k for k, size in enumerate(frame) if size != 1]
        renumber = {k: i for i, k in enumerate(keep)}
        new_axes = tuple(a if isinstance(a, str) else ("U" if a not in renumber else renumber[a]) for a in axes)
        return View(new_axes, tuple(frame[k] for k in keep), lead, trail)

    @property
    def width(self) -> int:
        return int(np.prod(self.frame)) if self.frame else 1

    @property
    def flat(self) -> bool:
        """[.., T, .., features] with the features on the last axis (or a width of 1)."""
        return (self.lead == self.trail == 0 and "T" in self.axes
                and (not self.frame or (len(self.frame) == 1 and self.axes[-1] == 0)))

    def dims(self) -> list[int]:
        return [SENTINEL_T if a == "T" else 1 if a == "U" else self.frame[int(a)] for a in self.axes]


@dataclass
class Program:
    input_kind: int  # 0 float features, 1 token ids
    input_width: int
    widths: list[int]
    output_buffer: int
    states: list[tuple[str, int, np.ndarray | None]]  # name, size, learned initial values
    layers: list[Layer]

    @property
    def output_width(self) -> int:
        return self.widths[self.output_buffer]


def layer_name(node: Any) -> str:
    """The user's layer path from a TorchScript node name ("/model/lstm/inner/LSTM_1" -> "lstm")."""
    parts = [p for p in str(node.name).split("/") if p and p != "inner"]
    if parts and parts[0] == "model":
        parts = parts[1:]
    return ".".join(parts[:-1]) or "forward()"  # a node outside any submodule: the model's own forward


def onnx_layer_name(node: Any) -> str:
    """The name mixed precision records for a weight layer (quantize/onnx_quant.py): the node name without the
    exporter's ``/model/`` prefix."""
    return str(node.name).removeprefix("/model/").removeprefix("/") or str(node.output[0])


def _refuse(node: Any, reason: str) -> ExportError:
    return ExportError(f"the C exporter cannot convert layer '{layer_name(node)}' (ONNX {node.op_type} node "
                       f"{node.name!r}): {reason}. It supports Linear, Embedding, LayerNorm, ReLU/tanh/sigmoid/"
                       "softmax/log-softmax/GELU/sqrt, residual adds and products, constant affine steps, LSTM (also "
                       "with proj_size) and GRU stacks, LSTMCell/GRUCell steps, causal Conv1d/Conv2d over time, "
                       "Conv1d within a step, pooling, slicing and padding over features.")


class _Converter:
    def __init__(self, graph_model: Any, manifest: Manifest) -> None:
        import onnx
        from onnx import numpy_helper, shape_inference

        self.manifest = manifest
        inferred = shape_inference.infer_shapes(graph_model)
        self.graph = inferred.graph
        self.consts: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in self.graph.initializer}
        self.shapes: dict[str, list[Any]] = {}
        for info in [*self.graph.value_info, *self.graph.input, *self.graph.output]:
            dims = info.type.tensor_type.shape.dim
            self.shapes[info.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
        self.onnx = onnx
        self.opsets = list(graph_model.opset_import)
        self.numpy_helper = numpy_helper
        self.buffers: dict[str, int] = {}  # value name -> buffer
        self.views: dict[str, View] = {}  # value name -> its layout in the buffer
        self.windows: dict[str, tuple[str, str]] = {}  # Concat(context state, frames) -> (state input, frames)
        self.widths: list[int] = []
        self.layers: list[Layer] = []
        self.uses: dict[str, int] = {}
        for node in self.graph.node:
            for name in node.input:
                self.uses[name] = self.uses.get(name, 0) + 1
        self.producer: dict[int, Layer] = {}
        # state bookkeeping: name -> (state name, first value); finals: value -> (layer index, "h" | "c")
        self.state_offsets: dict[str, int] = {}
        offset = 0
        for spec in manifest.states:
            self.state_offsets[spec.input] = offset
            offset += int(np.prod(spec.shape))
        self.state_slices: dict[str, tuple[str, int, int]] = {}  # value -> (state input, start row, rows)
        self.finals: dict[str, tuple[str, int, int]] = {}  # value -> (state input it must return to, row, rows)
        # projected LSTMs (export/wrap.py's _UnprojectedLSTM): h slice @ lift, and the LSTM outputs awaiting @ project
        self.lifted: dict[str, tuple[tuple[str, int, int], np.ndarray]] = {}
        self.unprojected: dict[str, tuple[np.ndarray, int | tuple[str, int, int]]] = {}
        self.consumers: dict[str, list[Any]] = {}
        for node in self.graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.feature_windows: dict[str, tuple[str, int, int]] = {}  # Concat(context, frame): (state, values, width)
        # a step model's Concat(past steps, step) along a unit axis: (state input, frames, axis), read by a Conv1d
        self.step_windows: dict[str, tuple[str, str, int]] = {}
        self.cells = cell_scopes(self.graph.node, NONFINITE_PREFIX)  # LSTMCell/GRUCell: last node -> scope's nodes
        self.in_cell = {n.name for nodes in self.cells.values() for n in nodes}

    # ------------------------------------------------------------------ helpers
    def new_buffer(self, name: str, width: int) -> int:
        self.buffers[name] = len(self.widths)
        self.widths.append(int(width))
        return self.buffers[name]

    def const(self, name: str) -> np.ndarray | None:
        return self.consts.get(name)

    def add(self, layer: Layer, out_name: str, width: int, view: View) -> None:
        """Append ``layer``, writing a new buffer for ``out_name`` laid out as ``view``."""
        layer.out = self.new_buffer(out_name, width)
        self.layers.append(layer)
        self.producer[layer.out] = layer
        self.views[out_name] = view

    def flat_out(self, name: str, width: int) -> View:
        """The view of a per-frame product of ``name`` with ``width`` outputs (features stay on the last axis)."""
        base = self.views[name]
        return View.of(base.axes[:-1] + (0,), (width,)) if base.axes[-1] != "T" else View.of(base.axes + (0,),
                                                                                                   (width,))

    def width_of(self, name: str) -> int:
        return self.widths[self.buffers[name]]

    # ------------------------------------------------------------------ conversion
    def run(self) -> Program:
        manifest = self.manifest
        spec = manifest.input
        ids = spec.dtype == "int64"
        step = manifest.kind == "step"
        if manifest.kind not in ("sequence", "step") or (step and ids):
            raise ExportError(f"the C exporter converts sequence models ([1, T, F] or [1, T] inputs) and step models "
                              f"over float features ([1, F] per call); this is a {manifest.kind} model with "
                              f"{spec.dtype} input {list(spec.shape)}")
        # a step model's calls are the C file's frames: its batch axis (of size 1) stands for time
        frame = [] if ids else [int(d) for d in spec.shape[1 if step else 2:]]
        features = 1 if ids else int(np.prod(frame))
        self.new_buffer(spec.name, 1 if ids else features)
        self.views[spec.name] = View.of(("T", *range(len(frame))) if step else ("U", "T", *range(len(frame))), frame)
        for node in self.graph.node:
            if node.name.startswith(NONFINITE_PREFIX):
                continue
            if node.name in self.in_cell:
                if node.name in self.cells:
                    self.cell(node, self.cells[node.name])
                continue
            self.convert(node)
        output = manifest.output.name
        if output not in self.buffers:
            raise ExportError(f"the C exporter found no layer producing the output {output!r}")
        self.check_state_outputs()
        states = []
        for state in manifest.states:
            init = state.initial_value().astype(np.float32).reshape(-1) if state.init != "zeros" else None
            states.append((state.name, int(np.prod(state.shape)), init))
        return Program(1 if ids else 0, features, self.widths, self.buffers[output], states, self.layers)

    def convert(self, node: Any) -> None:
        op = node.op_type
        ins, outs = list(node.input), list(node.output)
        if op == "Constant":
            self.consts[outs[0]] = self.numpy_helper.to_array(node.attribute[0].t)
            return
        if op == "If":
            self.if_node(node)
            return
        if all(name in self.consts for name in ins if name) and any(ins) or op == "ConstantOfShape":
            self.fold(node)
            return
        if op == "Shape" and ins[0] in self.views:
            self.consts[outs[0]] = np.array(self.views[ins[0]].dims(), np.int64)
            return
        if op in ALIASES:
            self.alias(node)
            return
        if op == "Slice" and ins[0] in self.state_offsets:
            self.state_slice(node)
            return
        if op == "Gather" and ins[0] in self.state_offsets:
            self.state_gather(node)
            return
        if op == "Slice" and ins[0] in self.step_windows:
            self.step_window_slice(node)
            return
        if op == "Slice":
            if ins[0] in self.windows or not self._touches_features_only(node):
                self.time_slice(node)
            elif ins[0] in self.feature_windows and self._is_context_out(node):
                return
            else:
                self.feature_gather(node)
            return
        if op == "Pad":
            if self._touches_features_only(node):
                self.feature_gather(node)
            else:
                self.time_pad(node)
            return
        if op == "Split":
            self.feature_gather(node)
            return
        if op == "Pow":
            self.power(node)
            return
        if op in ("MaxPool", "AveragePool", "GlobalMaxPool", "GlobalAveragePool"):
            self.pool(node)
            return
        if op in ("ReduceMean", "ReduceMax"):
            self.reduce_features(node)
            return
        if op == "Concat":
            if ins and ins[0] in self.state_offsets and ins[0] not in self.state_slices and len(ins) == 2:
                self.context_window(node)
            else:
                self.concat_finals(node)
            return
        if op == "Conv":
            self.conv(node)
            return
        if op == "MatMul":
            self.matmul(node)
            return
        if op == "Gemm":
            self.gemm(node)
            return
        if op in ("Add", "Sub", "Mul", "Div"):
            self.elementwise(node)
            return
        if op in ACTIVATIONS:
            self.activation(node)
            return
        if op in ("LSTM", "GRU"):
            self.recurrent(node)
            return
        if op == "Gather":
            self.embedding(node)
            return
        if op == "LayerNormalization":
            self.layer_norm(node)
            return
        raise _refuse(node, "this operation has no C layer")

    def fold(self, node: Any) -> None:
        """A node of constants only (pad amounts, shapes): evaluated here, its outputs become constants."""
        from onnx.reference import ReferenceEvaluator

        feeds = {name: self.consts[name] for name in node.input if name}
        try:
            values = ReferenceEvaluator(node).run(None, feeds)
        except Exception as error:  # noqa: BLE001 - any evaluation failure is a refusal of this node
            raise _refuse(node, f"its constant inputs could not be evaluated ({error})") from error
        for name, value in zip(node.output, values):
            self.consts[name] = np.asarray(value)

    def attrs(self, node: Any) -> dict[str, Any]:
        return {a.name: self.onnx.helper.get_attribute_value(a) for a in node.attribute}

    def _axes_input(self, node: Any, rank: int) -> list[int] | None:
        attrs = self.attrs(node)
        if len(node.input) > 1 and node.input[1]:
            value = self.const(node.input[1])
            if value is None:
                raise _refuse(node, "its axes are not constant")
            axes = [int(a) for a in value.reshape(-1)]
        elif "axes" in attrs:
            axes = [int(a) for a in attrs["axes"]]
        else:
            return None
        return [a + rank if a < 0 else a for a in axes]

    def alias(self, node: Any) -> None:
        source, out = node.input[0], node.output[0]
        if source in self.state_slices and node.op_type in ("Squeeze", "Unsqueeze", "Identity"):
            self.state_slices[out] = self.state_slices[source]  # one layer of a state, with or without its unit axis
            return
        if source in self.state_offsets or source in self.state_slices:
            raise _refuse(node, "reshaping a state tensor is not supported")
        if source in self.finals:
            self.finals[out] = self.finals[source]
            if source not in self.views:
                return
        if source not in self.views:
            raise _refuse(node, "its input is not an activation of the model")
        view = self.views[source]
        axes = list(view.axes)
        op = node.op_type
        if op == "Identity":
            new = view
        elif op == "Transpose":
            perm = self.attrs(node).get("perm") or list(range(len(axes)))[::-1]
            new = View(tuple(axes[p] for p in perm), view.frame, view.lead, view.trail)
        elif op == "Squeeze":
            drop = self._axes_input(node, len(axes))
            drop = [i for i, a in enumerate(axes) if a == "U"] if drop is None else drop
            if any(axes[i] != "U" for i in drop):
                raise _refuse(node, f"it squeezes an axis that is not of size 1 (layout {axes})")
            new = View(tuple(a for i, a in enumerate(axes) if i not in drop), view.frame, view.lead, view.trail)
        elif op == "Unsqueeze":
            insert = self._axes_input(node, len(axes) + len(self._axes_input(node, 0) or []))
            for index in sorted(insert or []):
                axes.insert(index, "U")
            new = View(tuple(axes), view.frame, view.lead, view.trail)
        else:
            new = self.reshape_view(node, view)
        if source in self.unprojected:
            self.unprojected[out] = self.unprojected[source]
        else:
            self.buffers[out] = self.buffers[source]
        self.views[out] = new

    def reshape_view(self, node: Any, view: View) -> View:
        """Reshape/Flatten: only regrouping the features of each frame, time the outermost axis before and after."""
        dims = view.dims()
        if node.op_type == "Flatten":
            axis = int(self.attrs(node).get("axis", 1))
            axis = axis + len(dims) if axis < 0 else axis
            target = [int(np.prod(dims[:axis])), int(np.prod(dims[axis:]))]
        else:
            shape = self.const(node.input[1])
            if shape is None:
                raise _refuse(node, "its target shape is not constant")
            target = [int(d) for d in shape.reshape(-1)]
            target = [dims[i] if d == 0 and not self.attrs(node).get("allowzero", 0) else d
                      for i, d in enumerate(target)]
            if self.manifest.kind == "step" and view.axes[:1] == ("T",) and target[:1] == [1]:
                target[0] = SENTINEL_T  # a step model's batch axis of 1 is its time axis
        big_in = [a for a in view.axes if a != "U"]
        ordered = [a for a in big_in if a != "T"] == list(range(len(view.frame)))
        known = int(np.prod([d for d in target if d not in (-1, SENTINEL_T)]))
        time_slots = [i for i, d in enumerate(target) if d == SENTINEL_T or (d % SENTINEL_T == 0 and d > 0
                                                                            and d != SENTINEL_T)]
        if (view.lead or view.trail or not big_in or big_in[0] != "T" or not ordered or len(time_slots) != 1
                or target[time_slots[0]] != SENTINEL_T):
            raise _refuse(node, f"it changes the [T, features] layout (layout {list(view.axes)}, target {target})")
        target = [view.width // known if d == -1 else d for d in target]
        if any(d not in (1, SENTINEL_T) for d in target[:time_slots[0]]) or int(np.prod(
                [d for d in target if d != SENTINEL_T])) != view.width:
            raise _refuse(node, f"it moves features across time (layout {list(view.axes)}, target {target})")
        axes: list[Axis] = []
        frame: list[int] = []
        for d in target:
            if d == SENTINEL_T:
                axes.append("T")
            elif d == 1:
                axes.append("U")
            else:
                axes.append(len(frame))
                frame.append(d)
        return View.of(axes, frame)

    def _time_axis(self, node: Any, view: View) -> int:
        if view.axes.count("T") != 1:
            raise _refuse(node, f"its input has no single time axis (layout {list(view.axes)})")
        return view.axes.index("T")

    def time_pad(self, node: Any) -> None:
        """Zero padding along time only: counted as frames before/after the real ones, until sliced off."""
        source = node.input[0]
        pad_values = self.const(node.input[1]) if len(node.input) > 1 else None
        value = self.const(node.input[2]) if len(node.input) > 2 and node.input[2] else np.zeros(1)
        mode = self.attrs(node).get("mode", b"constant")
        if source not in self.views or pad_values is None or value is None or float(np.abs(value).max()) != 0.0 or (
                mode not in (b"constant", "constant")) or (len(node.input) > 3 and node.input[3]):
            raise _refuse(node, "only a constant zero padding of an activation along time")
        view = self.views[source]
        rank = len(view.axes)
        pads = [int(v) for v in pad_values.reshape(-1)]
        axis = self._time_axis(node, view)
        if len(pads) != 2 * rank or any(pads[i] or pads[rank + i] for i in range(rank) if i != axis) or min(pads) < 0:
            raise _refuse(node, f"it pads {pads} (begin..., end...) along axes other than time (axis {axis})")
        self.buffers[node.output[0]] = self.buffers[source]
        self.views[node.output[0]] = replace(view, lead=view.lead + pads[axis], trail=view.trail + pads[rank + axis])

    def time_slice(self, node: Any) -> None:
        """A slice along time that removes padded frames, or a conv's context (the window's last frames)."""
        source = node.input[0]
        starts, ends = self.const(node.input[1]), self.const(node.input[2])
        axes = self.const(node.input[3]) if len(node.input) > 3 and node.input[3] else None
        steps = self.const(node.input[4]) if len(node.input) > 4 and node.input[4] else None
        frames = self.windows[source][1] if source in self.windows else source
        if frames not in self.views or starts is None or ends is None or (len(node.input) > 3 and axes is None):
            raise _refuse(node, "only a constant slice of an activation along time")
        view = self.views[frames]
        axis = self._time_axis(node, view)
        rank = len(view.axes)
        axes_list = [int(a) + (rank if int(a) < 0 else 0) for a in (axes.reshape(-1) if axes is not None
                                                                    else range(starts.size))]
        if axes_list != [axis] or (steps is not None and int(steps.reshape(-1)[0]) != 1):
            raise _refuse(node, f"it slices axes {axes_list}, not the time axis {axis} with step 1")
        start, end = int(starts.reshape(-1)[0]), int(ends.reshape(-1)[0])
        if source in self.windows:
            state_in, _ = self.windows[source]
            spec = next(st for st in self.manifest.states if st.input == state_in)
            if start != -int(spec.shape[axis]) or end < 2 ** 31:
                raise _refuse(node, f"a convolution's context must be the last {spec.shape[axis]} frames of its window")
            self.finals[node.output[0]] = (state_in, 0, int(spec.shape[0]))
            return
        lead = view.lead - start if start >= 0 else -1
        trail = view.trail if end >= 2 ** 31 else view.trail + end if end < 0 else -1
        if lead < 0 or trail < 0:
            raise _refuse(node, f"the slice [{start}:{end}] along time drops real frames (only padding frames may "
                                "be sliced off: a stream has no fixed length)")
        self.buffers[node.output[0]] = self.buffers[source]
        self.views[node.output[0]] = replace(view, lead=lead, trail=trail)

    def context_window(self, node: Any) -> None:
        """Concat(context state, frames) along time (export/conv.py): the input of a streaming convolution."""
        state_in, frames = node.input
        if frames not in self.views or self.views[frames].lead or self.views[frames].trail:
            raise _refuse(node, "a context state must be concatenated with the new frames of an activation")
        view = self.views[frames]
        axis = self._time_axis(node, view)
        rank = len(view.axes)
        concat_axis = int(self.attrs(node).get("axis", 0)) % rank
        if concat_axis != axis and view.flat and concat_axis == rank - 1:
            self.feature_window(node, state_in, frames)
            return
        if concat_axis != axis and view.axes[concat_axis] == "U" and self.manifest.kind == "step":
            self.step_windows[node.output[0]] = (state_in, frames, concat_axis)  # past steps along a unit axis
            return
        if concat_axis != axis:
            raise _refuse(node, "a context state must be concatenated along time, or along the features of a "
                                "[T, features] activation")
        self.windows[node.output[0]] = (state_in, frames)

    def feature_window(self, node: Any, state_in: str, frames: str) -> None:
        """Concat(context state, frame) along the features (a step model's window of past samples): each frame
        gets the context in front of it, and the context carried on is the window's last values."""
        spec = next(st for st in self.manifest.states if st.input == state_in)
        values = int(np.prod(spec.shape))
        if values != int(spec.shape[-1]):
            raise _refuse(node, f"a context state concatenated along the features must be [1, values], got "
                                f"{list(spec.shape)}")
        source = self._input_buffer(node, frames)
        width = values + self.widths[source]
        view = self.views[frames]
        self.add(Layer(OP_CONTEXT, source, 0, params=[self.state_offsets[state_in], values], name=layer_name(node)),
                 node.output[0], width, View.of(view.axes[:-1] + (0,), (width,)))
        self.feature_windows[node.output[0]] = (state_in, values, width)

    def _is_context_out(self, node: Any) -> bool:
        """Slice(window, -values:) along the features: the context carried on (the state's output)."""
        state_in, values, width = self.feature_windows[node.input[0]]
        starts, ends = self.const(node.input[1]), self.const(node.input[2])
        axes = self.const(node.input[3]) if len(node.input) > 3 and node.input[3] else np.zeros(1, np.int64)
        steps = self.const(node.input[4]) if len(node.input) > 4 and node.input[4] else np.ones(1, np.int64)
        if starts is None or ends is None or axes is None or steps is None or starts.size != 1:
            return False
        rank = len(self.views[node.input[0]].axes)
        start, end = int(starts.reshape(-1)[0]), int(ends.reshape(-1)[0])
        start = start + width if start < 0 else start
        if int(axes.reshape(-1)[0]) % rank != rank - 1 or start != width - values or end < width or int(
                steps.reshape(-1)[0]) != 1:
            return False
        spec = next(st for st in self.manifest.states if st.input == state_in)
        self.finals[node.output[0]] = (state_in, 0, int(spec.shape[0]))
        return True

    def conv(self, node: Any) -> None:
        """Conv1d/Conv2d over a context window (or over frames, kernel 1 along time): the C causal conv layer."""
        attrs = self.attrs(node)
        source = node.input[0]
        weight = self.const(node.input[1])
        bias = self.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if source in self.step_windows and weight is not None:
            self.step_window_conv(node, weight, bias)
            return
        state_in, frames = self.windows.get(source, ("", source))
        if weight is None or weight.ndim not in (3, 4) or frames not in self.views:
            raise _refuse(node, "only a Conv1d/Conv2d with constant weights over the model's frames")
        view = self.views[frames]
        if view.lead or view.trail:
            raise _refuse(node, "its input still holds padding frames along time")
        axis = self._time_axis(node, view)
        spatial = weight.ndim - 2
        if axis == 0 and not state_in:
            self.frame_conv(node, frames, weight, bias)
            return
        if axis < 2:
            raise _refuse(node, f"time is on axis {axis}, not a spatial axis of the convolution")
        out_ch, in_group = int(weight.shape[0]), int(weight.shape[1])
        groups = int(attrs.get("group", 1))
        kernel = [int(k) for k in weight.shape[2:]]
        dilations = [int(d) for d in attrs.get("dilations", [1] * spatial)]
        strides = [int(d) for d in attrs.get("strides", [1] * spatial)]
        pads = [int(d) for d in attrs.get("pads", [0] * 2 * spatial)]
        if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            raise _refuse(node, "auto_pad is not supported")
        t = axis - 2
        if strides[t] != 1 or pads[t] or pads[spatial + t]:
            raise _refuse(node, f"stride {strides[t]} and padding {pads[t]}/{pads[spatial + t]} along time (a "
                                "streaming convolution has stride 1 and no padding along time)")
        receptive = (kernel[t] - 1) * dilations[t]
        context = 0
        if state_in:
            spec = next(st for st in self.manifest.states if st.input == state_in)
            context = int(spec.shape[axis])
        if receptive != context:
            raise _refuse(node, f"it reads {receptive} past frames but its context state holds {context}")
        channels = in_group * groups
        f_axis = 5 - axis if spatial == 2 else None  # the other spatial axis (2 <-> 3)
        dims = view.dims()
        features = dims[f_axis] if f_axis is not None else 1
        if dims[1] != channels or view.width != channels * features:
            raise _refuse(node, f"input of {dims[1]} channels x {features}, weights for {channels} channels")
        order = [a for a in (view.axes[1], view.axes[f_axis] if f_axis is not None else "U") if a != "U"]
        if order != sorted(order):
            raise _refuse(node, "its input frames are laid out features before channels")
        if spatial == 2:
            f = 1 - t
            kf, sf, df, pf0, pf1 = kernel[f], strides[f], dilations[f], pads[f], pads[spatial + f]
            out_features = (features + pf0 + pf1 - df * (kf - 1) - 1) // sf + 1
            w = weight if t == 0 else weight.transpose(0, 1, 3, 2)
        else:
            kf, sf, df, pf0, out_features = 1, 1, 1, 0, 1
            w = weight[:, :, :, None]
        if out_features < 1 or out_ch % groups:
            raise _refuse(node, f"output of {out_ch} channels x {out_features} features with {groups} groups")
        vector = (bias if bias is not None else np.zeros(out_ch)).astype(np.float32).reshape(-1)
        out_axes: list[Axis] = ["U"] * len(view.axes)
        out_axes[axis] = "T"
        out_axes[1] = 0
        if f_axis is not None:
            out_axes[f_axis] = 1
        out_view = View.of(out_axes, (out_ch, out_features))
        src = self._input_buffer(node, frames, flat=False)
        if receptive == 0 and groups == 1 and features == 1 and out_features == 1:  # pointwise: a linear layer
            layer = Layer(OP_LINEAR, src, 0, matrices=[w[:, :, 0, 0].astype(np.float32)], vectors=[vector],
                          name=layer_name(node), sources=[onnx_layer_name(node)])
        else:
            time_last = 1 if (spatial == 2 and axis == 3) else 0
            offset = self.state_offsets[state_in] if state_in else 0
            layer = Layer(OP_CONV, src, 0, params=[offset, channels, groups, kernel[t], dilations[t], time_last],
                          extra=[features, kf, sf, pf0, df, out_features],
                          matrices=[w.reshape(out_ch, -1).astype(np.float32)], vectors=[vector],
                          name=layer_name(node), sources=[onnx_layer_name(node)])
        self.add(layer, node.output[0], out_ch * out_features, out_view)

    # ------------------------------------------------------------------ within a frame: gathers, cells, pooling
    def _touches_features_only(self, node: Any) -> bool:
        """True for a Slice/Pad of an activation that leaves the time axis alone (it rearranges each frame)."""
        source = node.input[0]
        if source not in self.views:
            return False
        view = self.views[source]
        if view.axes.count("T") != 1:
            return False
        rank, axis = len(view.axes), view.axes.index("T")
        if node.op_type == "Pad":
            pad_values = self.const(node.input[1]) if len(node.input) > 1 else None
            pad_axes = self._axes_input_at(node, 3, rank)
            if pad_values is None:
                return False
            pads = [int(v) for v in pad_values.reshape(-1)]
            pad_axes = pad_axes if pad_axes is not None else list(range(rank))
            touched = [a for k, a in enumerate(pad_axes) if pads[k] or pads[len(pad_axes) + k]]
            return bool(touched) and axis not in touched
        axes = self._axes_input_at(node, 3, rank)
        starts = self.const(node.input[1])
        if axes is None:
            axes = list(range(starts.size)) if starts is not None else []
        return bool(axes) and axis not in axes

    def _axes_input_at(self, node: Any, position: int, rank: int) -> list[int] | None:
        if len(node.input) <= position or not node.input[position]:
            return None
        value = self.const(node.input[position])
        if value is None:
            raise _refuse(node, "its axes are not constant")
        return [int(a) % rank for a in value.reshape(-1)]

    def feature_gather(self, node: Any) -> None:
        """Slice, Split or Pad (zero, reflect, edge) over the features of each frame: the node is evaluated on the
        frame's value indices, which gives the gather table of each output."""
        from onnx.reference import ReferenceEvaluator

        source = node.input[0]
        src = self._input_buffer(node, source, flat=False)
        view = self.views[source]
        axis = self._time_axis(node, view)
        frame_axes = [a for a in view.axes if not isinstance(a, str)]
        index = np.arange(view.width, dtype=np.float32).reshape(view.frame) if view.frame else np.zeros((),
                                                                                                       np.float32)
        index = index.transpose(frame_axes).reshape([1 if isinstance(a, str) else view.frame[a] for a in view.axes])
        feeds = {name: self.consts[name] for name in node.input[1:] if name}
        feeds[source] = index
        if node.op_type == "Pad":
            mode = self.attrs(node).get("mode", b"constant")
            value = feeds.get(node.input[2]) if len(node.input) > 2 and node.input[2] else np.zeros(1)
            if mode in (b"constant", "constant"):
                if value is None or float(np.abs(value).max()) != 0.0:
                    raise _refuse(node, "only a zero constant padding")
                if len(node.input) > 2 and node.input[2]:
                    feeds[node.input[2]] = np.array(GATHER_ZERO, np.float32).reshape(np.shape(value))
                else:  # no value given (zeros): give the index of a zero explicitly
                    inputs = (list(node.input) + ["", ""])[:max(len(node.input), 3)]
                    inputs[2] = "__zero"
                    node = self.onnx.helper.make_node("Pad", inputs, list(node.output), name=node.name,
                                                      mode="constant")
                    feeds["__zero"] = np.array(GATHER_ZERO, np.float32)
        try:
            results = ReferenceEvaluator(node).run(None, feeds)
        except Exception as error:  # noqa: BLE001 - any evaluation failure is a refusal of this node
            raise _refuse(node, f"it cannot be evaluated over one frame ({error})") from error
        for name, result in zip(node.output, results):
            result = np.asarray(result)
            if result.ndim != len(view.axes) or result.shape[axis] != 1:
                raise _refuse(node, f"it changes the time axis (frame of shape {list(result.shape)})")
            axes: list[Axis] = []
            frame: list[int] = []
            for k, size in enumerate(result.shape):
                if k == axis:
                    axes.append("T")
                else:
                    axes.append(len(frame))
                    frame.append(int(size))
            out_view = View.of(axes, frame)
            table = result.reshape(-1).astype(np.float32)
            if table.size == view.width and np.array_equal(table, np.arange(view.width, dtype=np.float32)):
                self.buffers[name] = src
                self.views[name] = out_view
                continue
            self.add(Layer(OP_GATHER, src, 0, vectors=[table], name=layer_name(node)), name, table.size, out_view)

    def state_gather(self, node: Any) -> None:
        """state[k] (a constant index on the layer axis): one layer of a stacked state, e.g. Silero's (h, c)."""
        index = self.const(node.input[1])
        spec = next(s for s in self.manifest.states if s.input == node.input[0])
        if index is None or index.size != 1 or int(self.attrs(node).get("axis", 0)) != 0:
            raise _refuse(node, "only one layer of a state (a constant index on its first axis)")
        row = int(index.reshape(-1)[0]) % int(spec.shape[0])
        self.state_slices[node.output[0]] = (node.input[0], row, 1)

    def if_node(self, node: Any) -> None:
        """An If on a condition that is constant here (a Squeeze guarded by a shape test): its branch, inlined."""
        condition = self.const(node.input[0])
        if condition is None:
            raise _refuse(node, "its condition depends on the model's values")
        branch = self.attrs(node)["then_branch" if bool(np.asarray(condition).reshape(-1)[0]) else "else_branch"]
        for inner in branch.node:
            self.convert(inner)
        for name, inner_out in zip(node.output, branch.output):
            got = inner_out.name
            if got in self.buffers:
                self.buffers[name] = self.buffers[got]
            if got in self.views:
                self.views[name] = self.views[got]
            if got in self.finals:
                self.finals[name] = self.finals[got]
            if got in self.consts:
                self.consts[name] = self.consts[got]
            if got in self.state_slices:
                self.state_slices[name] = self.state_slices[got]

    def power(self, node: Any) -> None:
        """x ** 2 (a product of the value with itself) and x ** 0.5 (square root)."""
        exponent = self.const(node.input[1])
        if exponent is None or exponent.size != 1 or float(exponent.reshape(-1)[0]) not in (2.0, 0.5):
            raise _refuse(node, "only a constant exponent of 2 or 0.5")
        source = self._input_buffer(node, node.input[0], flat=False)
        if float(exponent.reshape(-1)[0]) == 2.0:
            layer = Layer(OP_MUL, source, 0, in1=source, name=layer_name(node))
        else:
            layer = Layer(OP_ACT, source, 0, params=[ACTIVATIONS["Sqrt"]], name=layer_name(node))
        self.add(layer, node.output[0], self.widths[source], self.views[node.input[0]])

    def pool(self, node: Any) -> None:
        """MaxPool/AveragePool (and their global forms) over the features of each channel: kernel 1 along time."""
        attrs = self.attrs(node)
        source = node.input[0]
        src = self._input_buffer(node, source, flat=False)
        view = self.views[source]
        axis = self._time_axis(node, view)
        dims = view.dims()
        spatial = len(dims) - 2
        if axis == 1 or spatial < 1:
            raise _refuse(node, f"time on axis {axis} (pooling needs [N, C, spatial...] with time not the channels)")
        feature_axes = [k for k in range(2, len(dims)) if k != axis]
        if len(feature_axes) > 1:
            raise _refuse(node, "pooling over more than one feature axis")
        global_pool = node.op_type.startswith("Global")
        kernel = [1] * spatial if global_pool else [int(k) for k in attrs["kernel_shape"]]
        strides = [int(k) for k in attrs.get("strides", [1] * spatial)]
        pads = [int(k) for k in attrs.get("pads", [0] * 2 * spatial)]
        if (attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET") or attrs.get("ceil_mode", 0)
                or any(d != 1 for d in attrs.get("dilations", [1] * spatial)) or attrs.get("storage_order", 0)
                or len(node.output) > 1 and node.output[1]):
            raise _refuse(node, "auto_pad, ceil_mode, dilations and indices are not supported")
        if axis >= 2:
            t = axis - 2
            if kernel[t] != 1 or strides[t] != 1 or pads[t] or pads[spatial + t]:
                raise _refuse(node, "pooling along time (only over features: kernel 1 and stride 1 along time)")
        channels = dims[1]
        features = dims[feature_axes[0]] if feature_axes else 1
        if feature_axes:
            f = feature_axes[0] - 2
            kf, sf, pf0, pf1 = kernel[f], strides[f], pads[f], pads[spatial + f]
        else:
            kf, sf, pf0, pf1 = 1, 1, 0, 0
        if global_pool:
            kf, sf, pf0, pf1 = features, 1, 0, 0
        order = [a for a in (view.axes[1], view.axes[feature_axes[0]] if feature_axes else "U") if a != "U"]
        if order != sorted(order) or view.width != channels * features:
            raise _refuse(node, "its input frames are laid out features before channels")
        out_features = (features + pf0 + pf1 - kf) // sf + 1
        if out_features < 1 or pf0 >= kf or pf1 >= kf:
            raise _refuse(node, f"a window of {kf} over {features} features padded {pf0}/{pf1}")
        if node.op_type.endswith("MaxPool"):
            kind = POOL_MAX
        else:
            kind = POOL_AVERAGE_WITH_PADDING if attrs.get("count_include_pad", 0) and (pf0 or pf1) else POOL_AVERAGE
        out_axes: list[Axis] = ["U"] * len(view.axes)
        out_axes[axis] = "T"
        out_axes[1] = 0
        if feature_axes:
            out_axes[feature_axes[0]] = 1
        self.add(Layer(OP_POOL, src, 0, params=[kind, channels, features, kf, sf, pf0], name=layer_name(node)),
                 node.output[0], channels * out_features, View.of(out_axes, (channels, out_features)))

    def reduce_features(self, node: Any) -> None:
        """ReduceMean/ReduceMax over the frame's last feature axis (x.mean(-1) of [N, C, F]): pooling over all F."""
        source = node.input[0]
        src = self._input_buffer(node, source, flat=False)
        view = self.views[source]
        rank = len(view.axes)
        axes = self._axes_input(node, rank)
        last = len(view.frame) - 1
        if axes is None or len(axes) != 1 or view.axes[axes[0]] != last or last < 0:
            raise _refuse(node, f"only a reduction over the frame's last feature axis (layout {list(view.axes)}, "
                                f"axes {axes})")
        features = view.frame[last]
        channels = view.width // features
        keep = int(self.attrs(node).get("keepdims", 1))
        out_axes = [("U" if keep else None) if k == axes[0] else a for k, a in enumerate(view.axes)]
        out_view = View.of([a for a in out_axes if a is not None], view.frame[:-1])
        kind = POOL_MAX if node.op_type == "ReduceMax" else POOL_AVERAGE
        self.add(Layer(OP_POOL, src, 0, params=[kind, channels, features, features, 1, 0], name=layer_name(node)),
                 node.output[0], channels, out_view)

    def cell(self, last: Any, nodes: list[Any]) -> None:
        """The nodes of one nn.LSTMCell / nn.GRUCell step (export/c_cells.py): one C recurrent layer whose h (and c)
        are the step model's state."""
        if self.manifest.kind != "step":
            raise _refuse(last, "an LSTMCell/GRUCell outside a step model")
        for node in nodes:
            if node.op_type == "Constant":
                self.consts[node.output[0]] = self.numpy_helper.to_array(node.attribute[0].t)
        members = {n.name for n in nodes}
        graph_outputs = {g.name for g in self.graph.output}
        outputs = [o for n in nodes for o in n.output
                   if o in graph_outputs or any(c.name not in members for c in self.consumers.get(o, []))]
        cell = read_cell(nodes, self.consts, lambda name: self._piece_of(name) is not None, outputs, self.opsets,
                         lambda reason: _refuse(last, reason))
        hidden = cell.hidden
        source = self._input_buffer(last, cell.x)
        if cell.w_ih.shape[1] != self.widths[source]:
            raise _refuse(last, f"input width {self.widths[source]} != weight columns {cell.w_ih.shape[1]}")
        pieces = {"h": self._state_piece(last, self._piece_of(cell.h), hidden, "h")}
        if cell.lstm:
            pieces["c"] = self._state_piece(last, self._piece_of(cell.c), hidden, "c")
        matrices = [cell.w_ih.astype(np.float32), cell.w_hh.astype(np.float32)]
        sources = [onnx_layer_name(n) for n in cell.sources]
        if cell.lstm:
            layer = Layer(OP_LSTM, source, 0, params=[hidden, pieces["h"][1], pieces["c"][1]], matrices=matrices,
                          vectors=[(cell.b_ih + cell.b_hh).astype(np.float32)], name=layer_name(last), sources=sources)
        else:
            layer = Layer(OP_GRU, source, 0, params=[hidden, pieces["h"][1], 0], matrices=matrices,
                          vectors=[cell.b_ih.astype(np.float32), cell.b_hh.astype(np.float32)], name=layer_name(last),
                          sources=sources)
        h_out = next(name for name, role in cell.roles.items() if role == "h")
        self.add(layer, h_out, hidden, View.of(("T", 0), (hidden,)))
        for name, role in cell.roles.items():
            if role == "h" and name != h_out:
                self.buffers[name] = layer.out
                self.views[name] = self.views[h_out]
            piece = pieces[role][0]
            self.finals[name] = (piece[0], piece[1], 1)

    def step_window_conv(self, node: Any, weight: np.ndarray, bias: np.ndarray | None) -> None:
        """A Conv1d over a step model's own window of past steps (Concat(context, x.unsqueeze(-1)), kernel = window):
        the C causal conv, its context laid out [channels, steps] as the state holds it."""
        state_in, frames, axis = self.step_windows[node.input[0]]
        attrs = self.attrs(node)
        spec = next(st for st in self.manifest.states if st.input == state_in)
        view = self.views[frames]
        context = int(spec.shape[axis])
        if weight.ndim != 3 or axis != 2 or len(view.axes) != 3:
            raise _refuse(node, "a window of past steps must be read by a Conv1d over [1, channels, steps]")
        kernel, dilation = int(weight.shape[2]), int(attrs.get("dilations", [1])[0])
        if (int(attrs.get("strides", [1])[0]) != 1 or any(int(p) for p in attrs.get("pads", [0, 0]))
                or (kernel - 1) * dilation != context):
            raise _refuse(node, f"a window of {context} past steps read by a kernel of {kernel} (dilation "
                                f"{dilation}), stride {attrs.get('strides', [1])[0]}, pads {attrs.get('pads')}")
        groups = int(attrs.get("group", 1))
        out_ch, channels = int(weight.shape[0]), int(weight.shape[1]) * groups
        if view.width != channels or list(spec.shape) != [1, channels, context]:
            raise _refuse(node, f"{view.width} values per step and a context of {list(spec.shape)}, weights for "
                                f"{channels} channels")
        src = self._input_buffer(node, frames, flat=False)
        vector = (bias if bias is not None else np.zeros(out_ch)).astype(np.float32).reshape(-1)
        layer = Layer(OP_CONV, src, 0, params=[self.state_offsets[state_in], channels, groups, kernel, dilation, 1],
                      extra=[1, 1, 1, 0, 1, 1], matrices=[weight[:, :, :, None].reshape(out_ch, -1).astype(np.float32)],
                      vectors=[vector], name=layer_name(node), sources=[onnx_layer_name(node)])
        self.add(layer, node.output[0], out_ch, View.of(("T", 0, "U"), (out_ch,)))

    def step_window_slice(self, node: Any) -> None:
        """window[..., -context:] along the window's axis: the context a step model carries on."""
        state_in, frames, axis = self.step_windows[node.input[0]]
        spec = next(st for st in self.manifest.states if st.input == state_in)
        context = int(spec.shape[axis])
        starts, ends = self.const(node.input[1]), self.const(node.input[2])
        axes = self.const(node.input[3]) if len(node.input) > 3 and node.input[3] else np.zeros(1, np.int64)
        steps = self.const(node.input[4]) if len(node.input) > 4 and node.input[4] else np.ones(1, np.int64)
        if starts is None or ends is None or axes is None or steps is None or starts.size != 1:
            raise _refuse(node, "only a constant slice of a window of past steps")
        start, end = int(starts.reshape(-1)[0]), int(ends.reshape(-1)[0])
        start = start + context + 1 if start < 0 else start
        if (int(axes.reshape(-1)[0]) % 3 != axis or start != 1 or end < context + 1
                or int(steps.reshape(-1)[0]) != 1):
            raise _refuse(node, f"a window of past steps must be carried on as its last {context} steps")
        self.finals[node.output[0]] = (state_in, 0, int(spec.shape[0]))

    def frame_conv(self, node: Any, frames: str, weight: np.ndarray, bias: np.ndarray | None) -> None:
        """A Conv1d within one frame (a step model's input window: the batch axis is time): the C conv layer with
        kernel 1 along time, its kernel, stride and padding along the frame's features."""
        attrs = self.attrs(node)
        view = self.views[frames]
        if weight.ndim != 3:
            raise _refuse(node, "only a Conv1d within a step (a Conv2d over one step's features has no C layer)")
        out_ch, in_group = int(weight.shape[0]), int(weight.shape[1])
        groups = int(attrs.get("group", 1))
        kf = int(weight.shape[2])
        sf = int(attrs.get("strides", [1])[0])
        df = int(attrs.get("dilations", [1])[0])
        pf0, pf1 = (int(p) for p in attrs.get("pads", [0, 0]))
        if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            raise _refuse(node, "auto_pad is not supported")
        dims = view.dims()
        channels = in_group * groups
        features = dims[2]
        if dims[1] != channels or view.width != channels * features:
            raise _refuse(node, f"input of {dims[1]} channels x {features}, weights for {channels} channels")
        order = [a for a in (view.axes[1], view.axes[2]) if a != "U"]
        if order != sorted(order):
            raise _refuse(node, "its input frames are laid out features before channels")
        out_features = (features + pf0 + pf1 - df * (kf - 1) - 1) // sf + 1
        if out_features < 1 or out_ch % groups:
            raise _refuse(node, f"output of {out_ch} channels x {out_features} features with {groups} groups")
        vector = (bias if bias is not None else np.zeros(out_ch)).astype(np.float32).reshape(-1)
        src = self._input_buffer(node, frames, flat=False)
        out_view = View.of(("T", 0, 1), (out_ch, out_features))
        if groups == 1 and features == 1 and out_features == 1 and kf == 1:  # pointwise: a linear layer
            layer = Layer(OP_LINEAR, src, 0, matrices=[weight[:, :, 0].astype(np.float32)], vectors=[vector],
                          name=layer_name(node), sources=[onnx_layer_name(node)])
        else:
            layer = Layer(OP_CONV, src, 0, params=[0, channels, groups, 1, 1, 0],
                          extra=[features, kf, sf, pf0, df, out_features],
                          matrices=[weight.reshape(out_ch, -1).astype(np.float32)], vectors=[vector],
                          name=layer_name(node), sources=[onnx_layer_name(node)])
        self.add(layer, node.output[0], out_ch * out_features, out_view)

    def state_slice(self, node: Any) -> None:
        state_in = node.input[0]
        starts, ends = self.const(node.input[1]), self.const(node.input[2])
        axes = self.const(node.input[3]) if len(node.input) > 3 and node.input[3] else np.array([0])
        spec = next(s for s in self.manifest.states if s.input == state_in)
        if starts is None or ends is None or axes is None or list(axes.reshape(-1)) != [0]:
            raise _refuse(node, "a state slice must have constant bounds on the layer axis")
        start = int(starts.reshape(-1)[0])
        end = min(int(ends.reshape(-1)[0]), spec.shape[0])
        self.state_slices[node.output[0]] = (state_in, start, end - start)

    def concat_features(self, node: Any) -> None:
        """Concat of [T, features] activations along the features: each placed by a gather (zeros elsewhere), then
        added (x + 0 is exact)."""
        parts = [self._input_buffer(node, name) for name in node.input]
        width = sum(self.widths[p] for p in parts)
        start, total = 0, -1
        for name, part in zip(node.input, parts):
            table = np.full(width, GATHER_ZERO, np.float32)
            table[start:start + self.widths[part]] = np.arange(self.widths[part], dtype=np.float32)
            start += self.widths[part]
            placed = f"{node.output[0]}#part{start}"
            self.add(Layer(OP_GATHER, part, 0, vectors=[table], name=layer_name(node)), placed, width,
                     self.flat_out(name, width))
            if total >= 0:
                self.add(Layer(OP_ADD, total, 0, in1=self.buffers[placed], name=layer_name(node)),
                         f"{placed}#sum", width, self.flat_out(name, width))
                placed = f"{placed}#sum"
            total = self.buffers[placed]
        self.buffers[node.output[0]] = total
        self.views[node.output[0]] = self.flat_out(node.input[0], width)

    def concat_finals(self, node: Any) -> None:
        if all(name in self.views for name in node.input) and all(self.views[n].flat for n in node.input):
            rank = len(self.views[node.input[0]].axes)
            if int(self.attrs(node).get("axis", 0)) % rank == rank - 1 and len(node.input) > 1:
                self.concat_features(node)
                return
        pieces = [self.finals.get(name) for name in node.input]
        if any(p is None for p in pieces) or self.attrs(node).get("axis", 0) != 0:
            raise _refuse(node, "only the final states of recurrent layers can be concatenated (layer axis)")
        row = 0
        for piece in pieces:
            assert piece is not None  # checked above
            state_in, start, rows = piece
            if start != row or (pieces[0] is not None and state_in != pieces[0][0]):
                raise _refuse(node, "the final states are not concatenated in the order of the state slices")
            row += rows
        first = pieces[0]
        assert first is not None
        self.finals[node.output[0]] = (first[0], 0, row)

    def check_state_outputs(self) -> None:
        for spec in self.manifest.states:
            final = self.finals.get(spec.output)
            if final is None or final[0] != spec.input or final[1] != 0 or final[2] != spec.shape[0]:
                raise ExportError(f"the C exporter cannot map state {spec.name!r}: its output {spec.output!r} is not "
                                  "the final state of recurrent layers in the order they read it, nor a causal "
                                  "convolution's context (hand-built state updates have no C layer)")

    def _input_buffer(self, node: Any, name: str, flat: bool = True) -> int:
        if name not in self.buffers:
            raise _refuse(node, f"input {name!r} is not an activation of the model")
        view = self.views[name]
        if view.lead or view.trail:
            raise _refuse(node, f"its input holds {view.lead} + {view.trail} frames of padding along time that the "
                                "model does not slice off")
        if flat and not view.flat:
            raise _refuse(node, f"it reads frames laid out as {list(view.axes)} (features {list(view.frame)}); "
                                "expected time, then the features on the last axis")
        if self.manifest.input.dtype == "int64" and self.buffers[name] == 0:
            raise _refuse(node, "it reads the token ids as numbers")
        return self.buffers[name]

    def matmul(self, node: Any) -> None:
        a, b = node.input
        weight = self.const(b)
        if weight is None or weight.ndim != 2:
            raise _refuse(node, "only a product with a constant [in, out] weight is supported")
        if a in self.state_slices:  # a projected LSTM's carried h lifted into the unprojected space
            self.lifted[node.output[0]] = (self.state_slices[a], weight)
            return
        if a in self.unprojected:  # a projected LSTM's o * tanh(c) projected: the C layer's own output
            project, target = self.unprojected[a]
            if weight.shape != project.shape or not np.array_equal(weight, project):
                raise _refuse(node, "a projected LSTM's unprojected output is multiplied by a matrix other than its "
                                    "projection")
            if isinstance(target, int):
                self.buffers[node.output[0]] = target
                self.views[node.output[0]] = self.flat_out(a, project.shape[1])
            else:
                self.finals[node.output[0]] = target
            return
        source = self._input_buffer(node, a)
        if weight.shape[0] != self.widths[source]:
            raise _refuse(node, f"weight rows {weight.shape[0]} != input width {self.widths[source]}")
        layer = Layer(OP_LINEAR, source, 0, matrices=[weight.T.astype(np.float32)],
                      vectors=[np.zeros(weight.shape[1], np.float32)], name=layer_name(node),
                      sources=[onnx_layer_name(node)])
        self.add(layer, node.output[0], weight.shape[1], self.flat_out(a, weight.shape[1]))

    def gemm(self, node: Any) -> None:
        attrs = self.attrs(node)
        weight = self.const(node.input[1])
        bias = self.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if weight is None or attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0:
            raise _refuse(node, "only Gemm(x, W, b) with a constant weight, no transA, alpha = beta = 1")
        matrix = weight if attrs.get("transB", 0) else weight.T
        source = self._input_buffer(node, node.input[0])
        rows = matrix.shape[0]
        vector = np.broadcast_to(bias, (rows,)).astype(np.float32) if bias is not None else np.zeros(rows, np.float32)
        self.add(Layer(OP_LINEAR, source, 0, matrices=[matrix.astype(np.float32)], vectors=[vector],
                       name=layer_name(node), sources=[onnx_layer_name(node)]), node.output[0], rows,
                 self.flat_out(node.input[0], rows))

    def elementwise(self, node: Any) -> None:
        op = node.op_type
        a, b = node.input
        ca, cb = self.const(a), self.const(b)
        if ca is None and cb is None:
            if op not in ("Add", "Mul"):
                raise _refuse(node, f"{op} of two activations has no C layer (only sums and products)")
            left, right = self._input_buffer(node, a, flat=False), self._input_buffer(node, b, flat=False)
            if self.widths[left] != self.widths[right]:
                raise _refuse(node, "a residual add needs two activations of the same width")
            if self.views[a] != self.views[b]:
                raise _refuse(node, f"{op} of two differently laid out activations ({self.views[a]} vs "
                                    f"{self.views[b]})")
            self.add(Layer(OP_ADD if op == "Add" else OP_MUL, left, 0, in1=right, name=layer_name(node)),
                     node.output[0], self.widths[left], self.views[a])
            return
        value_name, constant = (b, ca) if ca is not None else (a, cb)
        if constant is None:
            raise _refuse(node, "unreachable")
        source = self._input_buffer(node, value_name, flat=False)
        width = self.widths[source]
        vector = self.per_frame(node, constant, self.views[value_name])
        constant_first = ca is not None
        if op in ("Sub", "Div") and constant_first:
            raise _refuse(node, f"constant {op} activation has no C layer")
        scale, shift = np.ones(width), np.zeros(width)
        if op == "Add":
            shift = vector
        elif op == "Sub":
            shift = -vector
        elif op == "Mul":
            scale = vector
        else:
            scale = 1.0 / vector
        producer = self.producer.get(source)
        if (producer is not None and producer is self.layers[-1] and self.uses.get(value_name, 0) == 1
                and value_name not in {o.name for o in self.graph.output}):
            if producer.type == OP_LINEAR:  # fold into the bias / weight
                producer.matrices[0] = (producer.matrices[0] * scale[:, None]).astype(np.float32)
                producer.vectors[0] = (producer.vectors[0] * scale + shift).astype(np.float32)
                self.buffers[node.output[0]] = source
                self.views[node.output[0]] = self.views[value_name]
                return
            if producer.type == OP_AFFINE:
                producer.vectors[0] = (producer.vectors[0] * scale).astype(np.float32)
                producer.vectors[1] = (producer.vectors[1] * scale + shift).astype(np.float32)
                self.buffers[node.output[0]] = source
                self.views[node.output[0]] = self.views[value_name]
                return
        self.add(Layer(OP_AFFINE, source, 0, vectors=[scale.astype(np.float32), shift.astype(np.float32)],
                       name=layer_name(node)), node.output[0], width, self.views[value_name])

    def per_frame(self, node: Any, constant: np.ndarray, view: View) -> np.ndarray:
        """A constant broadcast against a value, as one float64 value per feature in the buffer's frame order."""
        rank = len(view.axes)
        if constant.ndim > rank:
            raise _refuse(node, f"a constant of shape {constant.shape} has more axes than the activation")
        full = constant.astype(np.float64).reshape((1,) * (rank - constant.ndim) + constant.shape)
        if any(full.shape[i] != 1 for i, a in enumerate(view.axes) if isinstance(a, str)):
            raise _refuse(node, f"a constant of shape {constant.shape} varies over time or a unit axis "
                                f"(layout {list(view.axes)})")
        feature_axes = [i for i, a in enumerate(view.axes) if not isinstance(a, str)]
        reduced = full.reshape([full.shape[i] for i in feature_axes])
        order = sorted(range(len(feature_axes)), key=lambda j: int(view.axes[feature_axes[j]]))
        return np.broadcast_to(reduced.transpose(order), view.frame).reshape(-1).copy()

    def activation(self, node: Any) -> None:
        source = self._input_buffer(node, node.input[0], flat=node.op_type in ("Softmax", "LogSoftmax"))
        if node.op_type in ("Softmax", "LogSoftmax"):
            axis = self.attrs(node).get("axis", -1)
            rank = len(self.views[node.input[0]].axes)
            if axis not in (-1, rank - 1):
                raise _refuse(node, f"{node.op_type} over axis {axis} (only the feature axis)")
        if node.op_type == "Gelu" and self.attrs(node).get("approximate", b"none") not in (b"none", "none"):
            raise _refuse(node, "only the exact (erf) GELU")
        self.add(Layer(OP_ACT, source, 0, params=[ACTIVATIONS[node.op_type]], name=layer_name(node)),
                 node.output[0], self.widths[source], self.views[node.input[0]])

    def recurrent(self, node: Any) -> None:
        attrs = self.attrs(node)
        lstm = node.op_type == "LSTM"
        hidden = int(attrs["hidden_size"])
        direction = attrs.get("direction", b"forward")
        if isinstance(direction, bytes):
            direction = direction.decode()
        if (direction != "forward" or attrs.get("clip") is not None or attrs.get("layout", 0)
                or attrs.get("input_forget", 0) or attrs.get("activations")):
            raise _refuse(node, "only forward, unclipped recurrent layers with the default activations")
        if not lstm and attrs.get("linear_before_reset", 0) != 1:
            raise _refuse(node, "a GRU must apply the reset gate after the recurrent product (torch's GRU)")
        ins = list(node.input) + [""] * 8
        weight, recurrent, bias = self.const(ins[1]), self.const(ins[2]), self.const(ins[3])
        if weight is None or recurrent is None or ins[4] or (lstm and ins[7]):
            raise _refuse(node, "constant weights, no sequence lengths and no peepholes are required")
        source = self._input_buffer(node, ins[0])
        gates = 4 if lstm else 3
        order = [0, 2, 3, 1] if lstm else [1, 0, 2]  # ONNX i,o,f,c -> torch i,f,g,o; ONNX z,r,h -> torch r,z,n

        def reorder(matrix: np.ndarray) -> np.ndarray:
            blocks = matrix.reshape(gates, hidden, -1)
            return np.concatenate([blocks[k] for k in order]).astype(np.float32)

        w_ih, w_hh = reorder(weight[0]), reorder(recurrent[0])
        b = bias[0] if bias is not None else np.zeros(2 * gates * hidden, np.float32)
        b_ih, b_hh = reorder(b[:gates * hidden, None])[:, 0], reorder(b[gates * hidden:, None])[:, 0]
        if w_ih.shape[1] != self.widths[source]:
            raise _refuse(node, f"input width {self.widths[source]} != weight columns {w_ih.shape[1]}")
        if lstm and ins[5] in self.lifted:
            self.projected_lstm(node, source, w_ih, w_hh, (b_ih + b_hh).astype(np.float32))
            return
        starts = [self._state_piece(node, self._piece_of(name), hidden, "hc"[index])
                  for index, name in enumerate(ins[5:5 + (2 if lstm else 1)])]
        sources = [onnx_layer_name(node)] * 2
        if lstm:
            layer = Layer(OP_LSTM, source, 0, params=[hidden, starts[0][1], starts[1][1]],
                          matrices=[w_ih, w_hh], vectors=[(b_ih + b_hh).astype(np.float32)], name=layer_name(node),
                          sources=sources)
        else:
            layer = Layer(OP_GRU, source, 0, params=[hidden, starts[0][1], 0], matrices=[w_ih, w_hh],
                          vectors=[b_ih.astype(np.float32), b_hh.astype(np.float32)], name=layer_name(node),
                          sources=sources)
        self.add(layer, node.output[0], hidden, View.of(("T", "U", "U", 0), (hidden,)))
        outs = list(node.output) + ["", "", ""]
        for k, name in enumerate(outs[1:1 + (2 if lstm else 1)]):
            if name:
                piece = starts[k][0]
                self.finals[name] = (piece[0], piece[1], 1)

    def _projection_of(self, node: Any, hidden: int) -> np.ndarray:
        """The constant [H, P] matrix the LSTM's final h is multiplied by (through no-op reshapes)."""
        pending = [node.output[1]] if len(node.output) > 1 and node.output[1] else []
        while pending:
            name = pending.pop()
            for consumer in self.consumers.get(name, []):
                if consumer.op_type in ALIASES:
                    pending.append(consumer.output[0])
                elif consumer.op_type == "MatMul" and consumer.input[0] == name:
                    weight = self.const(consumer.input[1])
                    if weight is not None and weight.ndim == 2 and weight.shape[0] == hidden:
                        return weight
        raise _refuse(node, "its initial h is lifted by a matrix but its final h is not projected back (expected "
                            "export/wrap.py's unprojected LSTM: MatMul(h, lift) -> LSTM -> MatMul(., project))")

    def _piece_of(self, name: str) -> tuple[str, int, int] | None:
        """(state input, first row, rows) of a value that is a named state input or a slice of one."""
        piece = self.state_slices.get(name) if name else None
        if piece is None and name in self.state_offsets:
            spec = next(s for s in self.manifest.states if s.input == name)
            piece = (name, 0, spec.shape[0])
        return piece

    def _state_piece(self, node: Any, piece: tuple[str, int, int] | None, width: int,
                     what: str) -> tuple[tuple[str, int, int], int]:
        """One layer of a named state input and its offset in the C state vector."""
        if piece is None or piece[2] != 1:
            raise _refuse(node, f"its initial {what} must be one layer of a named state input")
        spec = next(s for s in self.manifest.states if s.input == piece[0])
        row = int(np.prod(spec.shape[1:]))
        if row != width:
            raise _refuse(node, f"state {spec.name!r} rows hold {row} values, expected {width} for {what}")
        return piece, self.state_offsets[piece[0]] + piece[1] * width

    def projected_lstm(self, node: Any, source: int, w_ih: np.ndarray, recurrent: np.ndarray,
                       bias: np.ndarray) -> None:
        """nn.LSTM with proj_size, from its unprojected ONNX form: R = W_hh W_hr, lift = pinv(W_hr)^T, project =
        W_hr^T. The C layer carries the projected h (P values) and uses W_hh = R lift^T (exact: W_hr pinv(W_hr) = I)."""
        hidden = recurrent.shape[1]
        h_piece, lift = self.lifted[node.input[5]]
        project = self._projection_of(node, hidden)
        size = project.shape[1]
        if lift.shape != (size, hidden) or size >= hidden:
            raise _refuse(node, f"lift {lift.shape} and projection {project.shape} do not fit hidden size {hidden}")
        identity = project.T.astype(np.float64) @ lift.T.astype(np.float64)
        if float(np.abs(identity - np.eye(size)).max()) > 1e-3:
            raise _refuse(node, "the lift of its initial h is not the inverse of its output projection")
        w_hh = (recurrent.astype(np.float64) @ lift.T.astype(np.float64)).astype(np.float32)
        h_slice, h_offset = self._state_piece(node, h_piece, size, "h")
        c_name = node.input[6] if len(node.input) > 6 else ""
        c_slice, c_offset = self._state_piece(node, self._piece_of(c_name), hidden, "c")
        layer = Layer(OP_LSTM_PROJ, source, 0, params=[hidden, h_offset, c_offset, size],
                      matrices=[w_ih, w_hh, project.T.astype(np.float32)], vectors=[bias], name=layer_name(node),
                      sources=[onnx_layer_name(node)] * 3)
        self.add(layer, node.output[0] + "#projected", size, View.of(("T", "U", "U", 0), (size,)))
        outs = list(node.output) + ["", ""]
        self.unprojected[outs[0]] = (project, layer.out)
        self.views[outs[0]] = View.of(("T", "U", "U", 0), (hidden,))
        if outs[1]:
            self.unprojected[outs[1]] = (project, (h_slice[0], h_slice[1], 1))
        if outs[2]:
            self.finals[outs[2]] = (c_slice[0], c_slice[1], 1)

    def embedding(self, node: Any) -> None:
        table = self.const(node.input[0])
        if (table is None or table.ndim != 2 or node.input[1] != self.manifest.input.name
                or self.attrs(node).get("axis", 0) != 0):
            raise _refuse(node, "only a constant table indexed by the token-id input")
        self.add(Layer(OP_EMBED, 0, 0, matrices=[table.astype(np.float32)], name=layer_name(node)),
                 node.output[0], table.shape[1], self.flat_out(node.input[1], table.shape[1]))

    def layer_norm(self, node: Any) -> None:
        attrs = self.attrs(node)
        source = self._input_buffer(node, node.input[0])
        width = self.widths[source]
        scale = self.const(node.input[1])
        bias = self.const(node.input[2]) if len(node.input) > 2 and node.input[2] else np.zeros(width, np.float32)
        if (attrs.get("axis", -1) not in (-1, len(self.views[node.input[0]].axes) - 1) or scale is None
                or bias is None):
            raise _refuse(node, "only a layer norm over the feature axis with constant scale and bias")
        eps = struct.unpack("<I", struct.pack("<f", float(attrs.get("epsilon", 1e-5))))[0]
        self.add(Layer(OP_LAYERNORM, source, 0, params=[eps],
                       vectors=[scale.astype(np.float32).reshape(-1), bias.astype(np.float32).reshape(-1)],
                       name=layer_name(node)), node.output[0], width, self.views[node.input[0]])


def program_from_onnx(onnx_path: Path, manifest: Manifest) -> Program:
    """The layer list of a float ONNX graph written by lstm-edge (refusing unsupported nodes by layer name)."""
    import onnx

    return _Converter(onnx.load(str(onnx_path)), manifest).run()


# ---------------------------------------------------------------------------------------------------- writing
def quantize_rows(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per row: values in [-127, 127] and one float32 scale per row (1 for an all-zero row)."""
    peak = np.abs(matrix).max(axis=1)
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    q = np.clip(np.rint(matrix / scale[:, None]), -127, 127).astype(np.int8)
    return q, scale


def _tensor(matrix: np.ndarray, int8: bool) -> bytes:
    matrix = np.atleast_2d(np.asarray(matrix, dtype=np.float32))
    rows, cols = matrix.shape
    if int8:
        q, scale = quantize_rows(matrix)
        body = _aligned(q.tobytes()) + scale.astype("<f4").tobytes()
        return struct.pack("<3I", 1, rows, cols) + body
    return struct.pack("<3I", 0, rows, cols) + matrix.astype("<f4").tobytes()


def _aligned(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


def metadata_text(manifest: Manifest) -> str:
    """The "key=value" lines a C app reads from the weight file: labels, the frontend's settings, the detector's."""
    lines = []
    if manifest.labels:
        lines.append("labels=" + ",".join(manifest.labels))
    if manifest.output.semantics:
        lines.append(f"output.semantics={manifest.output.semantics}")
    for key, value in (manifest.frontend or {}).items():
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            lines.append(f"frontend.{key}={value!r}" if isinstance(value, float) else f"frontend.{key}={value}")
    for key, value in (manifest.detector or {}).items():
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            lines.append(f"detector.{key}={value!r}" if isinstance(value, float) else f"detector.{key}={value}")
    for line in lines:
        if "\n" in line or any(ord(ch) < 32 for ch in line):
            raise ExportError(f"metadata line {line[:40]!r} holds a control character")
    return "".join(line + "\n" for line in lines)


def program_bytes(program: Program, precision: str, metadata: str = "",
                  float_layers: frozenset[str] = frozenset()) -> bytes:
    """Serialise ``program`` as a C weight file at ``precision`` ("float" or "int8"); in an int8 file the matrices of
    the ONNX layers named in ``float_layers`` (mixed precision's names) stay float32."""
    int8 = precision == "int8"
    mixed = False
    body = [struct.pack(f"<{len(program.widths)}I", *program.widths)]
    for name, size, _ in program.states:
        encoded = name.encode("utf-8")
        body.append(struct.pack("<I", len(encoded)) + _aligned(encoded) + struct.pack("<I", size))
    for _, _, init in program.states:
        body.append(struct.pack("<I", 0) if init is None else struct.pack("<I", 1) + init.astype("<f4").tobytes())
    for layer in program.layers:
        params = (list(layer.params) + [0] * 6)[:6]
        body.append(struct.pack("<10I", layer.type, layer.in0, layer.in1, layer.out, *params))
        if layer.type == OP_CONV:
            body.append(struct.pack("<6I", *layer.extra))
        sources = layer.sources or [""] * len(layer.matrices)
        for matrix, source in zip(layer.matrices, sources):
            quantized = int8 and layer.type in WEIGHT_LAYERS and source not in float_layers
            mixed = mixed or (int8 and layer.type in WEIGHT_LAYERS and not quantized)
            body.append(_tensor(matrix, quantized))
        for vector in layer.vectors:
            body.append(_tensor(vector.reshape(1, -1), False))
    meta = metadata.encode("utf-8")
    body.append(_aligned(meta))
    payload = b"".join(body)
    version = 2 if any(layer.type in VERSION_2_LAYERS for layer in program.layers) else 1
    if mixed or any(layer.type in VERSION_3_LAYERS or (layer.type == OP_ACT and layer.params[0] in
                                                       VERSION_3_ACTIVATIONS) for layer in program.layers):
        version = 3
    header = MAGIC + struct.pack("<12I", version, 1 if int8 else 0, program.input_kind, program.input_width,
                                 program.output_width, len(program.widths), len(program.states), len(program.layers),
                                 program.output_buffer, len(payload), zlib.crc32(payload) & 0xFFFFFFFF, len(meta))
    header += b"\0" * (HEADER_BYTES - len(header))
    return header + payload


def mixed_float_layers(manifest: Manifest) -> list[dict[str, Any]]:
    """The layers mixed precision kept float in the directory's int8 ONNX file (else its int8 TFLite file): the
    C int8 file keeps the same layers float. Empty when neither was written by mixed precision."""
    for fmt in ("onnx", "tflite"):
        if manifest.has_file(fmt, "int8"):
            record = manifest.file(fmt, "int8").quantization or {}
            if record.get("float_layers"):
                return [dict(layer) for layer in record["float_layers"]]
    return []


def _c_outputs(data: bytes, x: np.ndarray, ids: bool) -> np.ndarray:
    """The C library's outputs for every frame of ``x`` (one stream from the initial state)."""
    import ctypes

    from lstm_edge.runtime.backends import native

    lib, model = native.load_c_model(data, "model.int8.lec")
    try:
        frames = len(x)
        stream = lib.lem_stream_create(model, 64, ctypes.byref(ctypes.c_int(0)))
        chunk = np.ascontiguousarray(x.reshape(frames, -1), np.int32 if ids else np.float32)
        y = np.empty((frames, int(lib.lem_model_output_width(model))), np.float32)
        push = lib.lem_stream_push_ids if ids else lib.lem_stream_push
        status = push(stream, chunk.ctypes.data, frames, y.ctypes.data)
        lib.lem_stream_free(stream)
    finally:
        lib.lem_model_free(model)
    if status != 0:
        raise ExportError(f"the C library refused the reference input ({lib.lem_status_string(status).decode()})")
    return y


def _complete_the_mix(program: Program, manifest: Manifest, model_dir: Path, names: frozenset[str],
                      metadata: str) -> frozenset[str]:
    """The float layers of the C int8 file: ``names`` (another file's mix), and when the C file with them misses
    ``int8_relative_error`` on the reference input, the fewest more (greedily: each round, the layer whose float
    weights remove the most error) until it meets it. The C engine quantizes differently (per-row weights, each
    vector on its own scale), so a mix chosen for ONNX Runtime may not be enough here."""
    if not names or manifest.reference is None:
        return names
    from lstm_edge.runtime.manifest import check_reference

    x = np.load(check_reference(model_dir, manifest.reference, "input"), allow_pickle=False)
    want = np.load(check_reference(model_dir, manifest.reference, "output"), allow_pickle=False)
    want = want.reshape(len(want), -1).astype(np.float64)
    spread = float(want.std()) or 1.0
    ids = manifest.input.dtype == "int64"

    def error(kept: frozenset[str]) -> float:
        got = _c_outputs(program_bytes(program, "int8", metadata, kept), x, ids)
        return float(np.sqrt(np.mean((got - want) ** 2))) / spread

    gate = float(manifest.tolerances["int8_relative_error"])
    current = error(names)
    candidates = list(dict.fromkeys(source for layer in program.layers if layer.type in WEIGHT_LAYERS
                                    for source in layer.sources if source and source not in names))
    while current > gate and candidates:
        trials = {candidate: error(names | {candidate}) for candidate in candidates}
        best = min(trials, key=lambda name: trials[name])
        names, current = names | {best}, trials[best]
        candidates.remove(best)
    return names


def _float_layer_records(program: Program, names: frozenset[str], known: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Manifest records (name, kind, params) of the float layers, in the program's order."""
    by_name = {layer["name"]: layer for layer in known}
    records: dict[str, dict[str, Any]] = {}
    for layer in program.layers:
        for source in layer.sources:
            if source in names and source not in records:
                kind = source.rsplit("/", 1)[-1].split("_")[0]
                params = sum(m.size for m, s in zip(layer.matrices, layer.sources) if s == source)
                if set(layer.sources) == {source}:  # the layer's own biases count as its parameters too
                    params += sum(v.size for v in layer.vectors)
                records[source] = dict(by_name.get(source, {"name": source, "kind": kind, "params": int(params)}))
    return list(records.values())


def write_c_files(onnx_path: Path, manifest: Manifest, out_dir: Path,
                  precisions: Sequence[str] = ("float", "int8")) -> Manifest:
    """Write the C weight files next to ``onnx_path`` and return ``manifest`` with their entries added. The int8
    file follows the mixed precision of the directory's int8 ONNX/TFLite file (``quantization.float_layers``),
    completed if the C engine needs more float layers to meet the same gate."""
    program = program_from_onnx(onnx_path, manifest)
    metadata = metadata_text(manifest)
    mix = mixed_float_layers(manifest)
    in_program = {source for layer in program.layers if layer.type in WEIGHT_LAYERS for source in layer.sources}
    names = frozenset(layer["name"] for layer in mix if layer["name"] in in_program)
    if "int8" in precisions:
        names = _complete_the_mix(program, manifest, out_dir, names, metadata)
    for precision in precisions:
        name = C_FILES[precision]
        (out_dir / name).write_bytes(program_bytes(program, precision, metadata,
                                                   names if precision == "int8" else frozenset()))
        quantization: dict[str, Any] | None = None
        if precision == "int8":
            quantization = dict(QUANTIZATION)
            if names:
                quantization["float_layers"] = _float_layer_records(program, names, mix)
        manifest = manifest.with_file(file_entry(out_dir, name, "c", precision, quantization=quantization))
    return manifest


def add_c_files(model_dir: str | Path) -> Manifest:
    """Add (or rewrite) ``model.lec`` and ``model.int8.lec`` in an exported model directory, from its float ONNX
    graph; the manifest gains their entries and checksums. Returns the saved manifest."""
    model_dir = Path(model_dir)
    manifest = Manifest.load(model_dir)
    if not manifest.has_file("onnx", "float"):
        raise ExportError(f"{model_dir}: the C weight file is made from the float ONNX graph, which this directory "
                          "lacks; export with formats including 'onnx'")
    onnx_path = check_file(model_dir, manifest.file("onnx", "float"))
    manifest = write_c_files(onnx_path, manifest, model_dir)
    manifest = replace(manifest)
    manifest.save(model_dir)
    return manifest
