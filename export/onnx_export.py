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
NONFINITE_OUTPUT = "x_nonfinite"


def write_onnx(module: torch.nn.Module, example_x: torch.Tensor, example_states: tuple[torch.Tensor, ...],
               input_name: str, output_name: str, state_inputs: list[str], state_outputs: list[str],
               dynamic_time: bool, metadata: Mapping[str, Any], path: Path) -> dict[str, str]:
    """Export ``module(x, *state_in) -> (y, *state_out)`` to ``path``.

    Uses the TorchScript exporter: it gives one fused ``LSTM``/``GRU`` op per layer and a time axis that stays
    dynamic (the dynamo exporter records the example's length inside Reshape nodes).
    Float inputs also get an auxiliary scalar output ``x_nonfinite`` (sum of ``x - x``: 0 when every value is
    finite, NaN otherwise), so the runtime validates values inside the call. Returns the manifest's ``checks``.
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
    graph.producer_version = str(metadata.get("lstm_edge.version", ""))  # torch writes its own version here
    checks = {}
    if example_x.dtype.is_floating_point:
        _add_nonfinite_output(graph, input_name)
        checks["nonfinite_input"] = NONFINITE_OUTPUT
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


def _add_nonfinite_output(graph: onnx.ModelProto, input_name: str) -> None:
    """Append ``x_nonfinite = ReduceSum(x - x)`` (keepdims 0) as a graph output."""
    from onnx import TensorProto, helper

    difference = f"{NONFINITE_OUTPUT}_difference"
    graph.graph.node.extend([
        helper.make_node("Sub", [input_name, input_name], [difference], name="lstm_edge_nonfinite_sub"),
        helper.make_node("ReduceSum", [difference], [NONFINITE_OUTPUT], name="lstm_edge_nonfinite_sum", keepdims=0),
    ])
    graph.graph.output.append(helper.make_tensor_value_info(NONFINITE_OUTPUT, TensorProto.FLOAT, []))
