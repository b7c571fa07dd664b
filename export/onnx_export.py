"""Write the streaming function as an ONNX graph with named state and a dynamic time axis."""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import Any, Mapping

import onnx
import torch

from lstm_edge.runtime.errors import ExportError

OPSET = 17
NONFINITE_OUTPUT = "nonfinite"


def write_onnx(module: torch.nn.Module, example_x: torch.Tensor, example_states: tuple[torch.Tensor, ...],
               input_name: str, output_name: str, state_inputs: list[str], state_outputs: list[str],
               dynamic_time: bool, metadata: Mapping[str, Any], path: Path) -> dict[str, str]:
    """Export ``module(x, *state_in) -> (y, *state_out)`` to ``path``.

    Uses the TorchScript exporter: it gives one fused ``LSTM``/``GRU`` op per layer and a time axis that stays
    dynamic (the dynamo exporter records the example's length inside Reshape nodes).
    The graph also gets an auxiliary scalar output ``nonfinite``: the sum of every value of the float input, the
    output and the new state. It is finite when they all are, so the runtime validates a call's input and result
    with one float comparison inside the same call. Returns the manifest's ``checks``.
    """
    dynamic_axes = {input_name: {1: "T"}, output_name: {1: "T"}} if dynamic_time else None
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter warns about batch_first LSTMs and tracing; both are expected
        try:
            torch.onnx.export(module, (example_x, *example_states), buffer, input_names=[input_name, *state_inputs],
                              output_names=[output_name, *state_outputs], dynamic_axes=dynamic_axes,
                              opset_version=OPSET, dynamo=False, do_constant_folding=True)
        except ExportError:
            raise
        except Exception as err:
            raise ExportError(f"torch.onnx.export failed: {str(err).splitlines()[0]}") from None
    graph = onnx.load_from_string(buffer.getvalue())
    graph.producer_name = "lstm-edge"
    checked = ([input_name] if example_x.dtype.is_floating_point else []) + [output_name, *state_outputs]
    _add_nonfinite_output(graph, checked)
    checks = {"nonfinite_any": NONFINITE_OUTPUT}
    for key, value in metadata.items():
        entry = graph.metadata_props.add()
        entry.key = key
        entry.value = value if isinstance(value, str) else json.dumps(value)
    try:
        onnx.checker.check_model(graph, full_check=True)
        onnx.shape_inference.infer_shapes(graph, check_type=True, strict_mode=True)
    except Exception as err:
        raise ExportError(f"the exported ONNX graph fails onnx.checker: {err}") from None
    path.write_bytes(graph.SerializeToString())
    return checks


def _add_nonfinite_output(graph: onnx.ModelProto, names: list[str]) -> None:
    """Append ``nonfinite = Sum(ReduceSum(t) for t in names)`` (a scalar) as a graph output."""
    from onnx import TensorProto, helper

    sums = [f"{NONFINITE_OUTPUT}_{index}" for index in range(len(names))]
    nodes = [helper.make_node("ReduceSum", [name], [total], name=f"lstm_edge_nonfinite_sum_{index}", keepdims=0)
             for index, (name, total) in enumerate(zip(names, sums))]
    nodes.append(helper.make_node("Sum", sums, [NONFINITE_OUTPUT], name="lstm_edge_nonfinite_total"))
    graph.graph.node.extend(nodes)
    graph.graph.output.append(helper.make_tensor_value_info(NONFINITE_OUTPUT, TensorProto.FLOAT, []))
