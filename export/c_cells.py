"""nn.LSTMCell / nn.GRUCell steps in a step model's ONNX graph, for the C exporter (export/c_export.py).

The TorchScript exporter writes a cell as loose nodes under the module's scope: two MatMuls (input and recurrent
products), bias Adds, Slices into the gates, Sigmoid/Tanh and the element-wise gate arithmetic. A scope holding only
such nodes (3 sigmoids and 2 tanh: an LSTM cell; 2 and 1: a GRU cell) is read back as one recurrent layer: its
weights, biases and which values are its input, h and c. The reading is checked by evaluating the scope's nodes on
random values against the cell computed from the recovered weights, so a look-alike scope is refused, not
mistranslated.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

CELL_OPS = {"MatMul", "Add", "Sub", "Mul", "Slice", "Split", "Sigmoid", "Tanh", "Constant"}


def cell_scopes(nodes: Sequence[Any], skip_prefix: str) -> dict[str, list[Any]]:
    """The nodes of each module scope that looks like a cell step, keyed by the scope's last node name."""
    scopes: dict[str, list[Any]] = {}
    for node in nodes:
        if "/" in node.name and not node.name.startswith(skip_prefix):
            scopes.setdefault(node.name.rsplit("/", 1)[0], []).append(node)
    cells = {}
    for members in scopes.values():
        kinds = [n.op_type for n in members]
        if (set(kinds) <= CELL_OPS and kinds.count("MatMul") == 2
                and (kinds.count("Sigmoid"), kinds.count("Tanh")) in ((3, 2), (2, 1))):
            cells[members[-1].name] = members
    return cells


@dataclass
class Cell:
    """One cell read from its nodes: torch gate order (i, f, g, o / r, z, n), weights as [gates x H, in]."""

    lstm: bool
    x: str  # the value names of its input, h and c ("" for a GRU)
    h: str
    c: str
    w_ih: np.ndarray
    w_hh: np.ndarray
    b_ih: np.ndarray
    b_hh: np.ndarray
    roles: dict[str, str]  # each output of the scope: "h" (the new h) or "c" (the new c)
    sources: tuple[Any, Any]  # the input and recurrent MatMul nodes

    @property
    def hidden(self) -> int:
        return int(self.w_hh.shape[1])


def _sigmoid(v: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-v))


def read_cell(nodes: list[Any], consts: Mapping[str, np.ndarray], is_state: Callable[[str], bool],
              outputs: list[str], opsets: list[Any], refuse: Callable[[str], Exception]) -> Cell:
    """The cell computed by ``nodes`` (``consts``: every constant value; ``is_state``: whether a value is a piece of a
    state input; ``outputs``: the scope's values used outside it). ``refuse(reason)`` makes the error raised."""
    produced = {o for n in nodes for o in n.output}
    external = list(dict.fromkeys(i for n in nodes for i in n.input if i and i not in produced and i not in consts))
    matmuls = [n for n in nodes if n.op_type == "MatMul"]
    recurrent = [n for n in matmuls if is_state(n.input[0])]
    h_mm = recurrent[0] if len(recurrent) == 1 else None
    x_mm = next((n for n in matmuls if n is not h_mm), None)
    x_weight = consts.get(x_mm.input[1]) if x_mm is not None else None
    h_weight = consts.get(h_mm.input[1]) if h_mm is not None else None
    if x_mm is None or h_mm is None or x_weight is None or h_weight is None:
        raise refuse("a cell's input product and recurrent product (of a state) must have constant weights")
    lstm = sum(n.op_type == "Sigmoid" for n in nodes) == 3
    gates = 4 if lstm else 3
    w_x, w_h = x_weight.astype(np.float64), h_weight.astype(np.float64)
    hidden = w_h.shape[0]
    if w_h.shape != (hidden, gates * hidden) or w_x.shape[1] != gates * hidden:
        raise refuse(f"weights {list(w_x.shape)} and {list(w_h.shape)} do not make {gates} gates")
    x_name, h_name = x_mm.input[0], h_mm.input[0]
    others = [name for name in external if name not in (x_name, h_name)]
    if len(others) != (1 if lstm else 0):
        raise refuse(f"a cell reads {external}: expected its input, h{' and c' if lstm else ''}")
    c_name = others[0] if lstm else ""
    b_ih, b_hh = np.zeros(gates * hidden), np.zeros(gates * hidden)
    for node in nodes:
        constant = [consts[i] for i in node.input if i in consts] if node.op_type == "Add" else []
        if not constant:
            continue
        bias = constant[0].astype(np.float64).reshape(-1)
        if bias.size != gates * hidden:
            raise refuse(f"a bias of {bias.size} values, expected {gates * hidden}")
        if h_mm.output[0] in node.input:
            b_hh = b_hh + bias
        else:
            b_ih = b_ih + bias
    rng = np.random.default_rng(0)
    x, h, c = rng.normal(size=(1, w_x.shape[0])), rng.normal(size=(1, hidden)), rng.normal(size=(1, hidden))
    gi, gh = x @ w_x + b_ih, h @ w_h + b_hh
    if lstm:
        i, f, g, o = np.split(gi + gh, 4, axis=1)
        c_new = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        expected = {"h": _sigmoid(o) * np.tanh(c_new), "c": c_new}
    else:
        r = _sigmoid(gi[:, :hidden] + gh[:, :hidden])
        z = _sigmoid(gi[:, hidden:2 * hidden] + gh[:, hidden:2 * hidden])
        n_gate = np.tanh(gi[:, 2 * hidden:] + r * gh[:, 2 * hidden:])
        expected = {"h": (1 - z) * n_gate + z * h}
    feeds = {x_name: x, h_name: h, **({c_name: c} if lstm else {})}
    got = _evaluate(nodes, consts, feeds, outputs, opsets, refuse)
    roles: dict[str, str] = {}
    for name, value in got.items():
        match = [k for k, v in expected.items()
                 if value.size == v.size and np.allclose(value.reshape(v.shape), v, atol=1e-4)]
        if not match:
            raise refuse(f"its output {name!r} is neither the new h nor the new c of an {'LSTM' if lstm else 'GRU'} "
                         "cell with these weights")
        roles[name] = match[0]
    if "h" not in roles.values():
        raise refuse("the cell's new h is not used")
    return Cell(lstm, x_name, h_name, c_name, w_x.T, w_h.T, b_ih, b_hh, roles, (x_mm, h_mm))


def _evaluate(nodes: list[Any], consts: Mapping[str, np.ndarray], feeds: dict[str, np.ndarray], outputs: list[str],
              opsets: list[Any], refuse: Callable[[str], Exception]) -> dict[str, np.ndarray]:
    from onnx import TensorProto, helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    used = {i for n in nodes for i in n.input if i in consts and i not in feeds}
    graph = helper.make_graph(
        list(nodes), "cell", [helper.make_tensor_value_info(k, TensorProto.FLOAT, list(v.shape))
                              for k, v in feeds.items()],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
        [numpy_helper.from_array(np.asarray(consts[k]), k) for k in sorted(used)])
    model = helper.make_model(graph, opset_imports=opsets)
    try:
        values = ReferenceEvaluator(model).run(None, {k: v.astype(np.float32) for k, v in feeds.items()})
    except Exception as error:  # noqa: BLE001 - any failure is a refusal of this cell
        raise refuse(f"its nodes cannot be evaluated as a cell ({error})") from error
    return {name: np.asarray(value, np.float64) for name, value in zip(outputs, values)}
