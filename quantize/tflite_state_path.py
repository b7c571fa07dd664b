"""Which ops of a decomposed streaming ``.tflite`` carry an LSTM's cell state, found from the graph alone.

litert-torch unrolls an LSTM into basic ops: per step ``c = f * c_prev + i * g`` (MUL, MUL, ADD) and
``h = o * tanh(c)``. ``c`` is not bounded by any activation function; on a trained keyword spotter it reaches
+-90 in some units while others stay near 0, so one int8 scale per tensor cannot hold it. The cell-state path is
every tensor reachable from a state input through ops that pass or accumulate values (SLICE, RESHAPE,
CONCATENATION, MUL, ADD), for the states whose path contains an ADD (the accumulating ones: ``c``; ``h`` only
reaches slices before its FULLY_CONNECTED). Its ops, the products added into it and the TANH read from it are
the ops that get int16 activations in the mixed-precision static recipe; everything else stays int8.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from pathlib import Path

from lstm_edge.quantize.tflite_inspect import _Model, _text

# Ops through which a value is passed on or accumulated without a bounding nonlinearity.
_PASS_THROUGH = ("SLICE", "RESHAPE", "CONCATENATION", "MUL", "ADD", "SQUEEZE", "EXPAND_DIMS", "STRIDED_SLICE",
                 "SPLIT", "UNPACK", "PACK")


def cell_state_ops(path: Path, state_inputs: Sequence[str]) -> dict[str, list[str]]:
    """``{signature: [output tensor names of the cell-state ops]}`` of the ``.tflite`` at ``path``.

    ``state_inputs`` are the manifest's state input names (``lstm_c_in`` ...). An op is named by its first output
    tensor, the name ai-edge-quantizer's recipe regexes match (its "scope"). Signatures without an accumulating
    state map to an empty list.
    """
    parsed = _Model.read(path)
    result: dict[str, list[str]] = {}
    for key, sig in parsed.signatures().items():
        subgraph = parsed.model.subgraphs[sig.subgraphIndex]
        tensors = subgraph.tensors
        ops = subgraph.operators or []
        consumers: dict[int, list[int]] = collections.defaultdict(list)
        producer: dict[int, int] = {}
        for index, op in enumerate(ops):
            for t in op.inputs:
                if t >= 0:
                    consumers[t].append(index)
            for t in op.outputs:
                producer[t] = index
        names = {_text(m.name): m.tensorIndex for m in sig.inputs or []}
        chosen: set[int] = set()
        for state in state_inputs:
            if state not in names:
                continue
            path_ops = _forward_closure(parsed, ops, consumers, names[state])
            if not any(parsed.op_name(ops[i]) == "ADD" for i in path_ops):
                continue
            chosen |= path_ops
            on_path = {t for i in path_ops for t in ops[i].outputs}
            for i in path_ops:
                if parsed.op_name(ops[i]) != "ADD":
                    continue
                for t in ops[i].inputs:  # the products added into c (i * g) share the ADD's int16 input type
                    if t >= 0 and t not in on_path and t in producer and parsed.op_name(ops[producer[t]]) == "MUL":
                        chosen.add(producer[t])
            for t in on_path:  # tanh(c): its input is int16, so is the op
                chosen |= {c for c in consumers[t] if parsed.op_name(ops[c]) == "TANH"}
        result[key] = sorted({_text(tensors[ops[i].outputs[0]].name) for i in chosen})
    return result


def _forward_closure(parsed: _Model, ops: list, consumers: dict[int, list[int]], start: int) -> set[int]:
    """Indices of the pass-through ops reachable from tensor ``start``."""
    seen: set[int] = set()
    frontier = [start]
    while frontier:
        tensor = frontier.pop()
        for index in consumers.get(tensor, []):
            if index in seen or parsed.op_name(ops[index]) not in _PASS_THROUGH:
                continue
            seen.add(index)
            frontier.extend(t for t in ops[index].outputs if t >= 0)
    return seen
