"""The C weight file (``model.lec`` float32, ``model.int8.lec`` int8): the layers of the float ONNX graph, in order.

The float ONNX graph is the source because every model directory has one and its dataflow is already resolved
(the user's ``forward``, feature normalisation folded in as Sub/Div, the state threaded by name). Each node maps
onto a layer of ``runtime/native/lstm_edge_model.c``: MatMul/Gemm (+Add) -> linear, LSTM/GRU -> recurrent layer
reading and writing its slice of the named state, Gather of a table by the token ids -> embedding,
LayerNormalization, Relu/Tanh/Sigmoid/Softmax/LogSoftmax, Add of two activations (residual), Sub/Div/Mul/Add by a
constant -> elementwise affine; Transpose/Squeeze/Unsqueeze/Reshape that only move unit axes are no-ops. Anything
else is refused with the layer's name. The format is specified in docs/manifest.md ("C weight file").
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from lstm_edge.runtime.errors import ExportError
from lstm_edge.runtime.manifest import Manifest, check_file, file_entry

MAGIC = b"LEMW"
FILE_VERSION = 1
HEADER_BYTES = 64
C_FILES = {"float": "model.lec", "int8": "model.int8.lec"}
OP_LINEAR, OP_AFFINE, OP_ADD, OP_ACT, OP_LSTM, OP_GRU, OP_EMBED, OP_LAYERNORM = range(1, 9)
ACTIVATIONS = {"Relu": 1, "Tanh": 2, "Sigmoid": 3, "Softmax": 4, "LogSoftmax": 5}
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
    matrices: list[np.ndarray] = field(default_factory=list)  # quantized in int8 files
    vectors: list[np.ndarray] = field(default_factory=list)  # always float32
    name: str = ""


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


def _refuse(node: Any, reason: str) -> ExportError:
    return ExportError(f"the C exporter cannot convert layer '{layer_name(node)}' (ONNX {node.op_type} node "
                       f"{node.name!r}): {reason}. It supports Linear, Embedding, LayerNorm, ReLU/tanh/sigmoid/"
                       "softmax/log-softmax, residual adds, constant affine steps, and LSTM/GRU stacks.")


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
        self.numpy_helper = numpy_helper
        self.buffers: dict[str, int] = {}  # value name -> buffer
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

    # ------------------------------------------------------------------ helpers
    def new_buffer(self, name: str, width: int) -> int:
        self.buffers[name] = len(self.widths)
        self.widths.append(int(width))
        return self.buffers[name]

    def const(self, name: str) -> np.ndarray | None:
        return self.consts.get(name)

    def add(self, layer: Layer, out_name: str, width: int) -> None:
        layer.out = self.new_buffer(out_name, width)
        self.layers.append(layer)
        self.producer[layer.out] = layer

    def width_of(self, name: str) -> int:
        return self.widths[self.buffers[name]]

    def time_major(self, name: str, width: int) -> bool:
        """True when the value's memory is [T, width] (every other axis has size 1, time before the features)."""
        shape = self.shapes.get(name)
        if shape is None:
            return False
        big = [d for d in shape if d != 1]
        return big == [None, width] or (width == 1 and big == [None])

    # ------------------------------------------------------------------ conversion
    def run(self) -> Program:
        manifest = self.manifest
        spec = manifest.input
        ids = spec.dtype == "int64"
        if manifest.kind != "sequence":
            raise ExportError("the C exporter converts sequence models ([1, T, F] or [1, T] inputs); this is a "
                              f"{manifest.kind} model")
        features = 1 if ids else int(np.prod([int(d) for d in spec.shape[2:]]))
        self.new_buffer(spec.name, 1 if ids else features)
        for node in self.graph.node:
            if node.name.startswith(NONFINITE_PREFIX):
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
        if op in ALIASES:
            self.alias(node)
            return
        if op == "Slice" and ins[0] in self.state_offsets:
            self.state_slice(node)
            return
        if op == "Concat":
            self.concat_finals(node)
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

    def attrs(self, node: Any) -> dict[str, Any]:
        return {a.name: self.onnx.helper.get_attribute_value(a) for a in node.attribute}

    def alias(self, node: Any) -> None:
        source = node.input[0]
        if source in self.state_offsets or source in self.state_slices:
            raise _refuse(node, "reshaping a state tensor is not supported")
        if source in self.finals:
            self.finals[node.output[0]] = self.finals[source]
            return
        if source not in self.buffers:
            raise _refuse(node, "its input is not an activation of the model")
        width = self.width_of(source)
        if not self.time_major(node.output[0], width):
            raise _refuse(node, f"it changes the [T, {width}] layout (shape {self.shapes.get(node.output[0])})")
        self.buffers[node.output[0]] = self.buffers[source]

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

    def concat_finals(self, node: Any) -> None:
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
                                  "the final state of recurrent layers in the order they read it (convolution "
                                  "contexts and hand-built state updates have no C layer yet)")

    def _input_buffer(self, node: Any, name: str) -> int:
        if name not in self.buffers:
            raise _refuse(node, f"input {name!r} is not an activation of the model")
        if self.manifest.input.dtype == "int64" and self.buffers[name] == 0:
            raise _refuse(node, "it reads the token ids as numbers")
        return self.buffers[name]

    def matmul(self, node: Any) -> None:
        a, b = node.input
        weight = self.const(b)
        if weight is None or weight.ndim != 2:
            raise _refuse(node, "only a product with a constant [in, out] weight is supported")
        source = self._input_buffer(node, a)
        if weight.shape[0] != self.widths[source]:
            raise _refuse(node, f"weight rows {weight.shape[0]} != input width {self.widths[source]}")
        layer = Layer(OP_LINEAR, source, 0, matrices=[weight.T.astype(np.float32)],
                      vectors=[np.zeros(weight.shape[1], np.float32)], name=layer_name(node))
        self.add(layer, node.output[0], weight.shape[1])

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
                       name=layer_name(node)), node.output[0], rows)

    def elementwise(self, node: Any) -> None:
        op = node.op_type
        a, b = node.input
        ca, cb = self.const(a), self.const(b)
        if ca is None and cb is None:
            if op != "Add":
                raise _refuse(node, f"{op} of two activations has no C layer (only residual adds)")
            left, right = self._input_buffer(node, a), self._input_buffer(node, b)
            if self.widths[left] != self.widths[right]:
                raise _refuse(node, "a residual add needs two activations of the same width")
            self.add(Layer(OP_ADD, left, 0, in1=right, name=layer_name(node)), node.output[0], self.widths[left])
            return
        value_name, constant = (b, ca) if ca is not None else (a, cb)
        if constant is None:
            raise _refuse(node, "unreachable")
        source = self._input_buffer(node, value_name)
        width = self.widths[source]
        if constant.size not in (1, width) or (constant.ndim and constant.shape[-1] not in (1, width)):
            raise _refuse(node, f"a constant of shape {constant.shape} does not broadcast over the features only")
        vector = np.broadcast_to(constant.astype(np.float32).reshape(-1), (width,)).astype(np.float64)
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
                return
            if producer.type == OP_AFFINE:
                producer.vectors[0] = (producer.vectors[0] * scale).astype(np.float32)
                producer.vectors[1] = (producer.vectors[1] * scale + shift).astype(np.float32)
                self.buffers[node.output[0]] = source
                return
        self.add(Layer(OP_AFFINE, source, 0, vectors=[scale.astype(np.float32), shift.astype(np.float32)],
                       name=layer_name(node)), node.output[0], width)

    def activation(self, node: Any) -> None:
        source = self._input_buffer(node, node.input[0])
        if node.op_type in ("Softmax", "LogSoftmax"):
            axis = self.attrs(node).get("axis", -1)
            rank = len(self.shapes.get(node.input[0]) or [])
            if axis not in (-1, rank - 1):
                raise _refuse(node, f"{node.op_type} over axis {axis} (only the feature axis)")
        self.add(Layer(OP_ACT, source, 0, params=[ACTIVATIONS[node.op_type]], name=layer_name(node)),
                 node.output[0], self.widths[source])

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
        starts = []
        for index, name in enumerate(ins[5:5 + (2 if lstm else 1)]):
            piece = self.state_slices.get(name) if name else None
            if piece is None and name in self.state_offsets:
                spec = next(s for s in self.manifest.states if s.input == name)
                piece = (name, 0, spec.shape[0])
            if piece is None or piece[2] != 1:
                raise _refuse(node, "its initial state must be one layer of a named state input "
                                    f"(got {name or 'none'} for {'hc'[index]})")
            spec = next(s for s in self.manifest.states if s.input == piece[0])
            if int(np.prod(spec.shape[1:])) != hidden:
                raise _refuse(node, f"state {spec.name!r} rows hold {int(np.prod(spec.shape[1:]))} values, "
                                    f"not the hidden size {hidden}")
            starts.append((piece, self.state_offsets[piece[0]] + piece[1] * hidden))
        if lstm:
            layer = Layer(OP_LSTM, source, 0, params=[hidden, starts[0][1], starts[1][1]],
                          matrices=[w_ih, w_hh], vectors=[(b_ih + b_hh).astype(np.float32)], name=layer_name(node))
        else:
            layer = Layer(OP_GRU, source, 0, params=[hidden, starts[0][1], 0], matrices=[w_ih, w_hh],
                          vectors=[b_ih.astype(np.float32), b_hh.astype(np.float32)], name=layer_name(node))
        self.add(layer, node.output[0], hidden)
        outs = list(node.output) + ["", "", ""]
        if not self.time_major(outs[0], hidden):
            # Y is [T, 1, 1, H]: time-major already
            pass
        for k, name in enumerate(outs[1:1 + (2 if lstm else 1)]):
            if name:
                piece = starts[k][0]
                self.finals[name] = (piece[0], piece[1], 1)

    def embedding(self, node: Any) -> None:
        table = self.const(node.input[0])
        if (table is None or table.ndim != 2 or node.input[1] != self.manifest.input.name
                or self.attrs(node).get("axis", 0) != 0):
            raise _refuse(node, "only a constant table indexed by the token-id input")
        self.add(Layer(OP_EMBED, 0, 0, matrices=[table.astype(np.float32)], name=layer_name(node)),
                 node.output[0], table.shape[1])

    def layer_norm(self, node: Any) -> None:
        attrs = self.attrs(node)
        source = self._input_buffer(node, node.input[0])
        width = self.widths[source]
        scale = self.const(node.input[1])
        bias = self.const(node.input[2]) if len(node.input) > 2 and node.input[2] else np.zeros(width, np.float32)
        if (attrs.get("axis", -1) not in (-1, len(self.shapes.get(node.input[0]) or [0, 0, 0]) - 1) or scale is None
                or bias is None):
            raise _refuse(node, "only a layer norm over the feature axis with constant scale and bias")
        eps = struct.unpack("<I", struct.pack("<f", float(attrs.get("epsilon", 1e-5))))[0]
        self.add(Layer(OP_LAYERNORM, source, 0, params=[eps],
                       vectors=[scale.astype(np.float32).reshape(-1), bias.astype(np.float32).reshape(-1)],
                       name=layer_name(node)), node.output[0], width)


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


def program_bytes(program: Program, precision: str, metadata: str = "") -> bytes:
    """Serialise ``program`` as a C weight file at ``precision`` ("float" or "int8")."""
    int8 = precision == "int8"
    body = [struct.pack(f"<{len(program.widths)}I", *program.widths)]
    for name, size, _ in program.states:
        encoded = name.encode("utf-8")
        body.append(struct.pack("<I", len(encoded)) + _aligned(encoded) + struct.pack("<I", size))
    for _, _, init in program.states:
        body.append(struct.pack("<I", 0) if init is None else struct.pack("<I", 1) + init.astype("<f4").tobytes())
    for layer in program.layers:
        params = (list(layer.params) + [0] * 6)[:6]
        body.append(struct.pack("<10I", layer.type, layer.in0, layer.in1, layer.out, *params))
        quantized = int8 and layer.type in (OP_LINEAR, OP_LSTM, OP_GRU)
        for matrix in layer.matrices:
            body.append(_tensor(matrix, quantized))
        for vector in layer.vectors:
            body.append(_tensor(vector.reshape(1, -1), False))
    meta = metadata.encode("utf-8")
    body.append(_aligned(meta))
    payload = b"".join(body)
    header = MAGIC + struct.pack("<12I", FILE_VERSION, 1 if int8 else 0, program.input_kind, program.input_width,
                                 program.output_width, len(program.widths), len(program.states), len(program.layers),
                                 program.output_buffer, len(payload), zlib.crc32(payload) & 0xFFFFFFFF, len(meta))
    header += b"\0" * (HEADER_BYTES - len(header))
    return header + payload


def write_c_files(onnx_path: Path, manifest: Manifest, out_dir: Path,
                  precisions: Sequence[str] = ("float", "int8")) -> Manifest:
    """Write the C weight files next to ``onnx_path`` and return ``manifest`` with their entries added."""
    program = program_from_onnx(onnx_path, manifest)
    for precision in precisions:
        name = C_FILES[precision]
        (out_dir / name).write_bytes(program_bytes(program, precision, metadata_text(manifest)))
        manifest = manifest.with_file(file_entry(out_dir, name, "c", precision,
                                                 quantization=dict(QUANTIZATION) if precision == "int8" else None))
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
