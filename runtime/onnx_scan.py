"""Find tensors stored outside an ONNX file, without importing onnx (the runtime may not).

An ONNX ``TensorProto`` whose ``data_location`` is EXTERNAL (or that lists ``external_data``) makes onnxruntime
open another file next to the model, a file no checksum of the manifest covers. This walks the protobuf wire
format of the places a tensor can sit (graph initializers, sparse initializers, node attributes, nested graphs,
functions, training info) and reports such tensors, so the runtime can refuse the file.
"""

from __future__ import annotations

from collections.abc import Iterator

from lstm_edge.runtime.errors import ModelFileError

MAX_GRAPH_DEPTH = 32

# Field numbers from onnx.proto (message fields only, as (field number -> kind of message)).
_MODEL = {7: "graph", 20: "training", 25: "function"}
_TRAINING = {1: "graph", 2: "graph"}
_FUNCTION = {7: "node"}
_GRAPH = {1: "node", 5: "tensor", 15: "sparse"}
_NODE = {5: "attribute"}
_ATTRIBUTE = {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"}
_SPARSE = {1: "tensor", 2: "tensor"}
_TENSOR_NAME, _TENSOR_EXTERNAL_DATA, _TENSOR_DATA_LOCATION = 8, 13, 14
EXTERNAL = 1


def _varint(data: memoryview, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ModelFileError("ONNX file: truncated or malformed protobuf varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(data: memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """(field number, wire type, value): ints for varints, memoryviews for length-delimited fields."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            yield number, wire, value
        elif wire == 2:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise ModelFileError("ONNX file: truncated protobuf field")
            yield number, wire, data[pos:pos + length]
            pos += length
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise ModelFileError(f"ONNX file: unsupported protobuf wire type {wire}")
    if pos != len(data):
        raise ModelFileError("ONNX file: truncated protobuf message")


_LAYOUTS = {"graph": _GRAPH, "training": _TRAINING, "function": _FUNCTION, "node": _NODE,
            "attribute": _ATTRIBUTE, "sparse": _SPARSE}


def external_tensors(data: bytes | memoryview) -> list[str]:
    """Names of the tensors of a serialised ``ModelProto`` that keep their data in another file."""
    found: list[str] = []
    stack: list[tuple[memoryview, dict[int, str], int]] = [(memoryview(data), _MODEL, 0)]
    while stack:
        message, layout, depth = stack.pop()
        if depth > MAX_GRAPH_DEPTH * 4:
            raise ModelFileError(f"ONNX file: graphs nested deeper than {MAX_GRAPH_DEPTH}")
        for number, _, value in _fields(message):
            kind = layout.get(number)
            if kind is None or not isinstance(value, memoryview):
                continue
            if kind == "tensor":
                name, external = "", False
                for t_number, _, t_value in _fields(value):
                    if t_number == _TENSOR_NAME and isinstance(t_value, memoryview):
                        name = bytes(t_value).decode("utf-8", "replace")
                    elif t_number == _TENSOR_DATA_LOCATION and t_value == EXTERNAL:
                        external = True
                    elif t_number == _TENSOR_EXTERNAL_DATA:
                        external = True
                if external:
                    found.append(name or "(unnamed tensor)")
            else:
                stack.append((value, _LAYOUTS[kind], depth + 1))
    return found
