"""Reading a ``.tflite`` flatbuffer: signature I/O with quantization, op counts, integer ops and weight buffers."""

from __future__ import annotations

import collections
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lstm_edge.runtime.errors import QuantizationError

# TensorType codes of the TFLite schema that hold integer activations or weights.
_INTEGER_ACTIVATION_TYPES = ("INT8", "UINT8", "INT16")
_INTEGER_WEIGHT_TYPES = ("INT8", "UINT8", "INT4", "INT2")
# The weight operand of each op (FULLY_CONNECTED's filter, CONV_2D's kernel ...; a DEQUANTIZE of an int8 kernel).
_WEIGHT_OPERAND = {"FULLY_CONNECTED": 1, "CONV_2D": 1, "DEPTHWISE_CONV_2D": 1, "BATCH_MATMUL": 1,
                   "EMBEDDING_LOOKUP": 1, "TRANSPOSE_CONV": 1, "DEQUANTIZE": 0}


def _schema() -> Any:
    try:
        from ai_edge_litert import schema_py_generated
    except ImportError as err:
        raise QuantizationError(f"reading .tflite files needs ai-edge-litert ({err}); install it with: "
                                "pip install 'lstm-edge[tflite]'") from None
    return schema_py_generated


def _enum_names(enum_class: type) -> dict[int, str]:
    return {value: name for name, value in vars(enum_class).items() if not name.startswith("_")}


@dataclass(frozen=True)
class _Model:
    """A parsed flatbuffer plus the lookups every check needs."""

    model: Any
    op_names: dict[int, str]
    type_names: dict[int, str]

    @classmethod
    def read(cls, path: Path) -> _Model:
        schema = _schema()
        try:
            data = Path(path).read_bytes()
            model = schema.ModelT.InitFromPackedBuf(data, 0)
        except OSError as err:
            raise QuantizationError(f"{path}: cannot read the file: {err}") from None
        except Exception as err:  # a truncated or foreign file fails deep in the flatbuffer reader
            raise QuantizationError(f"{path}: not a readable .tflite flatbuffer "
                                    f"({type(err).__name__}: {err})") from None
        return cls(model, _enum_names(schema.BuiltinOperator), _enum_names(schema.TensorType))

    def op_name(self, op: Any) -> str:
        code = self.model.operatorCodes[op.opcodeIndex]
        # Codes above 127 live in builtinCode; older files keep them in deprecatedBuiltinCode.
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        if self.op_names.get(builtin) == "CUSTOM" and code.customCode:
            return f"CUSTOM:{code.customCode.decode(errors='replace')}"
        return self.op_names.get(builtin, f"BUILTIN_{builtin}")

    def type_name(self, tensor: Any) -> str:
        return self.type_names.get(tensor.type, f"TYPE_{tensor.type}")

    def is_constant(self, tensor: Any) -> bool:
        if tensor.buffer <= 0 or tensor.buffer >= len(self.model.buffers):
            return False
        buffer = self.model.buffers[tensor.buffer]
        return (buffer.data is not None and len(buffer.data) > 0) or bool(buffer.size)

    def signatures(self) -> dict[str, Any]:
        return {_text(sig.signatureKey): sig for sig in self.model.signatureDefs or []}


def _text(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else (value or "")


def _quant_params(tensor: Any) -> tuple[float, int] | None:
    """Per-tensor (scale, zero point) of a tensor, None when it has none."""
    q = tensor.quantization
    if q is None or q.scale is None or len(q.scale) == 0:
        return None
    return float(q.scale[0]), int(q.zeroPoint[0]) if q.zeroPoint is not None and len(q.zeroPoint) else 0


def signature_io(path: Path) -> dict[str, dict[str, dict[str, dict[str, Any]]]]:
    """``{signature: {"inputs"|"outputs": {name: {"dtype", "shape", "scale", "zero_point"}}}}`` of a ``.tflite``.

    ``scale``/``zero_point`` are the tensor's per-tensor quantization (None for float tensors); they are the
    values the interpreter reports as ``get_input_details()[i]["quantization"]``.
    """
    parsed = _Model.read(path)
    result: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    for key, sig in parsed.signatures().items():
        tensors = parsed.model.subgraphs[sig.subgraphIndex].tensors
        entry: dict[str, dict[str, dict[str, Any]]] = {}
        for side, maps in (("inputs", sig.inputs), ("outputs", sig.outputs)):
            entry[side] = {}
            for tensor_map in maps or []:
                tensor = tensors[tensor_map.tensorIndex]
                params = _quant_params(tensor)
                entry[side][_text(tensor_map.name)] = {
                    "dtype": parsed.type_name(tensor).lower(),
                    "shape": [int(n) for n in tensor.shape],
                    "scale": None if params is None else params[0],
                    "zero_point": None if params is None else params[1],
                }
        result[key] = entry
    return result


def count_tflite_ops(path: Path) -> dict[str, Any]:
    """Structural facts of a ``.tflite`` file, to refuse a "quantized" file that stayed float.

    Returns ``{"ops": {op: {"count", "integer", "int8_weights", "int8_activations"}}, "signatures": {key:
    {"ops": {...}, "inputs": {name: dtype}, "outputs": {name: dtype}}}, "weights": {dtype: unique constant buffers},
    "weight_bytes": {dtype: bytes}, "weight_operand_buffers": {dtype: n}, "shared_weight_buffers": n}``.

    An op is ``integer`` when it consumes an integer weight (the dynamic-range case) or all its non-constant
    inputs and its outputs are int8/uint8/int16 (the static case); ``int8_activations`` when they are all int8.
    ``int8_weights`` counts the ops whose weight operand (FULLY_CONNECTED's filter, CONV_2D's kernel ...) is a
    constant integer tensor; ``weight_operand_buffers`` counts the distinct buffers behind those operands by dtype.
    ``shared_weight_buffers`` counts constant buffers used by more than one subgraph (weights shared between
    signatures).
    """
    parsed = _Model.read(path)
    subgraph_keys = {sig.subgraphIndex: key for key, sig in parsed.signatures().items()}
    io = signature_io(path)
    totals: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    signatures: dict[str, Any] = {}
    buffer_users: dict[int, set[int]] = collections.defaultdict(set)
    buffer_types: dict[int, str] = {}
    weight_operand_buffers: dict[int, str] = {}

    for index, subgraph in enumerate(parsed.model.subgraphs or []):
        counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        for tensor in subgraph.tensors or []:
            if parsed.is_constant(tensor):
                buffer_users[tensor.buffer].add(index)
                buffer_types[tensor.buffer] = parsed.type_name(tensor)
        for op in subgraph.operators or []:
            name = parsed.op_name(op)
            inputs = [subgraph.tensors[i] for i in op.inputs if i >= 0]
            outputs = [subgraph.tensors[i] for i in op.outputs if i >= 0]
            constant_types = [parsed.type_name(t) for t in inputs if parsed.is_constant(t)]
            activations = [parsed.type_name(t) for t in inputs if not parsed.is_constant(t)]
            activations += [parsed.type_name(t) for t in outputs]
            weight_at = _WEIGHT_OPERAND.get(name)
            int8_weight = (weight_at is not None and weight_at < len(op.inputs) and op.inputs[weight_at] >= 0
                           and parsed.is_constant(subgraph.tensors[op.inputs[weight_at]])
                           and parsed.type_name(subgraph.tensors[op.inputs[weight_at]]) in _INTEGER_WEIGHT_TYPES)
            if int8_weight or (weight_at is not None and weight_at < len(op.inputs) and op.inputs[weight_at] >= 0
                               and parsed.is_constant(subgraph.tensors[op.inputs[weight_at]])):
                weight = subgraph.tensors[op.inputs[weight_at]]
                weight_operand_buffers[weight.buffer] = parsed.type_name(weight).lower()
            integer = (any(t in _INTEGER_WEIGHT_TYPES for t in constant_types)
                       or (bool(activations) and all(t in _INTEGER_ACTIVATION_TYPES for t in activations)))
            for counter in (counts[name], totals[name]):
                counter["count"] += 1
                counter["integer"] += int(integer)
                counter["int8_weights"] += int(int8_weight)
                counter["int8_activations"] += int(bool(activations) and all(t == "INT8" for t in activations))
        key = subgraph_keys.get(index, f"subgraph_{index}")
        signatures[key] = {"ops": {op: dict(c) for op, c in sorted(counts.items())}}
        if key in io:
            signatures[key]["inputs"] = {n: d["dtype"] for n, d in io[key]["inputs"].items()}
            signatures[key]["outputs"] = {n: d["dtype"] for n, d in io[key]["outputs"].items()}

    weights: collections.Counter = collections.Counter()
    weight_bytes: collections.Counter = collections.Counter()
    for buffer_index, type_name in buffer_types.items():
        buffer = parsed.model.buffers[buffer_index]
        weights[type_name.lower()] += 1
        weight_bytes[type_name.lower()] += len(buffer.data) if buffer.data is not None else int(buffer.size or 0)
    return {
        "ops": {op: dict(c) for op, c in sorted(totals.items())},
        "signatures": signatures,
        "weights": dict(weights),
        "weight_bytes": dict(weight_bytes),
        "weight_operand_buffers": dict(collections.Counter(weight_operand_buffers.values())),
        "shared_weight_buffers": sum(1 for users in buffer_users.values() if len(users) > 1),
    }


def fc_bias_mismatches(path: Path, float_path: Path) -> list[str]:
    """FULLY_CONNECTED ops of an integer ``.tflite`` whose integer bias, dequantized with its own scale, is not the
    float file's bias (within one step), or whose bias scale is not input scale x weight scale.

    Integer kernels add the bias to the input x weight accumulator as is, so its scale must be their product. A bias
    buffer shared by ops with different input scales (two signatures, or the unrolled steps of one) can only be
    right for one of them: ai-edge-quantizer 0.10 overwrites the shared buffer with the last op's quantization (and
    logs "overriding other previously quantized data"). Returns one line per wrong op (empty: all consistent)."""
    import numpy as np

    parsed, raw = _Model.read(path), Path(path).read_bytes()
    float_model, float_raw = _Model.read(float_path), Path(float_path).read_bytes()
    float_biases = {}
    for subgraph in float_model.model.subgraphs or []:
        for op in subgraph.operators or []:
            if float_model.op_name(op) == "FULLY_CONNECTED" and len(op.inputs) > 2 and op.inputs[2] >= 0:
                bias = subgraph.tensors[op.inputs[2]]
                float_biases[_text(bias.name)] = _buffer_array(float_model, float_raw, bias, np.float32)
    keys = {sig.subgraphIndex: key for key, sig in parsed.signatures().items()}
    found = []
    for index, subgraph in enumerate(parsed.model.subgraphs or []):
        for op in subgraph.operators or []:
            if parsed.op_name(op) != "FULLY_CONNECTED" or len(op.inputs) < 3 or op.inputs[2] < 0:
                continue
            data, weight, bias = (subgraph.tensors[i] for i in op.inputs[:3])
            kind = parsed.type_name(bias)
            if kind not in ("INT32", "INT64") or not all(t.quantization is not None and t.quantization.scale
                                                         is not None for t in (data, weight, bias)):
                continue
            where = f"{keys.get(index, index)}: bias {_text(bias.name)} of the op reading {_text(data.name)}"
            scale = np.asarray(bias.quantization.scale, dtype=np.float64)
            expected = float(data.quantization.scale[0]) * np.asarray(weight.quantization.scale, dtype=np.float64)
            if not np.allclose(scale, expected, rtol=1e-5, atol=0):
                found.append(f"{where}: scale is not input x weight scale")
                continue
            reference = float_biases.get(_text(bias.name).split("_duplicated")[0])
            values = _buffer_array(parsed, raw, bias, np.int32 if kind == "INT32" else np.int64)
            if reference is not None and values is not None and (
                    values.shape != reference.shape or np.any(np.abs(values * scale - reference) > scale)):
                found.append(f"{where}: its integers do not dequantize to the float bias")
    return found


def _buffer_array(parsed: _Model, raw: bytes, tensor: Any, dtype: Any) -> Any:
    """A constant tensor's values (buffers stored inline or after the flatbuffer by offset); None if absent."""
    import numpy as np

    buffer = parsed.model.buffers[tensor.buffer]
    if buffer.data is not None and len(buffer.data):
        return np.frombuffer(bytes(np.asarray(buffer.data, dtype=np.uint8)), dtype=dtype)
    if buffer.offset and buffer.offset > 1 and buffer.size:
        return np.frombuffer(raw[buffer.offset:buffer.offset + buffer.size], dtype=dtype)
    return None


def weight_layers(path: Path) -> list[dict[str, Any]]:
    """The weight-bearing layers of a ``.tflite``: one per constant float weight buffer (the signatures and the
    unrolled steps of one signature share it), with ``{"buffer", "kind", "shape", "params", "scopes", "weights"}``.
    ``scopes`` are ai-edge-quantizer's op scopes (output tensor names) of every op that reads the buffer, so a recipe
    rule can address exactly that layer; ``weights`` are its float values (to name it after the ONNX graph's layer).
    """
    import numpy as np
    from ai_edge_quantizer.utils.tfl_flatbuffer_utils import get_op_scope

    parsed, raw = _Model.read(path), Path(path).read_bytes()
    layers: dict[int, dict[str, Any]] = {}
    for subgraph in parsed.model.subgraphs or []:
        for op in subgraph.operators or []:
            kind = parsed.op_name(op)
            weight_at = _WEIGHT_OPERAND.get(kind)
            if kind == "DEQUANTIZE" or weight_at is None or weight_at >= len(op.inputs) or op.inputs[weight_at] < 0:
                continue
            weight = subgraph.tensors[op.inputs[weight_at]]
            if not parsed.is_constant(weight) or parsed.type_name(weight) != "FLOAT32":
                continue
            layer = layers.setdefault(weight.buffer, {
                "buffer": weight.buffer, "kind": kind, "shape": [int(n) for n in weight.shape],
                "params": int(np.prod(weight.shape)), "scopes": [],
                "weights": _buffer_array(parsed, raw, weight, np.float32)})
            layer["scopes"].append(get_op_scope(op, subgraph.tensors))
    return list(layers.values())
