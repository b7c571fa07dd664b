"""Write the streaming function as an ONNX graph with named state and a dynamic time axis."""

from __future__ import annotations

import io
import json
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import onnx
import torch

from lstm_edge.export.graph_io import GraphIO
from lstm_edge.runtime.errors import ExportError

OPSET = 17
NONFINITE_OUTPUT = "nonfinite"


def write_onnx(module: torch.nn.Module, graph_io: GraphIO, metadata: Mapping[str, Any], path: Path,
               verbose: bool = False) -> dict[str, str]:
    """Export ``module(x, *state_in) -> (y, *state_out)`` to ``path``.

    Uses the TorchScript exporter: it gives one fused ``LSTM``/``GRU`` op per layer and a time axis that stays
    dynamic (the dynamo exporter records the example's length inside Reshape nodes).
    The graph also gets an auxiliary scalar output ``nonfinite``: the sum of every value of the float input, the
    output and the new state. It is finite when they all are, so the runtime validates a call's input and result
    with one float comparison inside the same call. Returns the manifest's ``checks``.
    A failure raises one ExportError naming the layer; ``verbose`` adds the exporter's full report and graph.
    """
    x_name, y_name = graph_io.input_name, graph_io.output_name
    dynamic_axes = None if graph_io.is_step else {x_name: {1: "T"}, y_name: {1: "T"}}
    args = (graph_io.example_x, *graph_io.example_states)
    buffer = io.BytesIO()
    try:
        _torchscript_export(module, args, buffer, graph_io, dynamic_axes, verbose)
    except ExportError:
        raise
    except Exception as err:
        where = locate_failing_layer(module, args, verbose)
        detail = f"\n{err}" if verbose else " (run with verbose=True / --verbose for the exporter's graph dump)"
        raise ExportError(f"torch.onnx.export failed {where}: {_first_line(err)}{detail}") from None
    graph = onnx.load_from_string(buffer.getvalue())
    graph.producer_name = "lstm-edge"
    graph.producer_version = str(metadata.get("lstm_edge.version", ""))  # torch writes its own version here
    checked = ([x_name] if graph_io.example_x.dtype.is_floating_point else []) + [y_name, *graph_io.state_outputs]
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


def _torchscript_export(module: torch.nn.Module, args: tuple, target: Any, graph_io: GraphIO | None,
                        dynamic_axes: dict | None, verbose: bool) -> None:
    with warnings.catch_warnings(), _stderr_captured(echo=verbose):
        warnings.simplefilter("ignore")  # the exporter warns about batch_first LSTMs and tracing; both are expected
        torch.onnx.export(module, args, target, dynamic_axes=dynamic_axes, opset_version=OPSET, dynamo=False,
                          do_constant_folding=True,
                          input_names=graph_io.input_names if graph_io is not None else None,
                          output_names=graph_io.output_names if graph_io is not None else None)


@contextmanager
def _stderr_captured(echo: bool) -> Iterator[None]:
    """Hold back what the exporter's C++ side writes to stdout/stderr (it dumps the whole graph on failure)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    with tempfile.TemporaryFile(mode="w+b") as held:
        for fd in saved:
            os.dup2(held.fileno(), fd)
        try:
            yield
        finally:
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
            if echo:
                held.seek(0)
                sys.stderr.write(held.read().decode(errors="replace"))
                sys.stderr.flush()


def _first_line(err: BaseException) -> str:
    lines = [line for line in str(err).strip().splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[0] if lines else ''}"


def locate_failing_layer(module: torch.nn.Module, args: tuple, verbose: bool = False) -> str:
    """'in layer 'a.b' (Type)' for the deepest submodule that fails to export on its own, else 'in forward()'."""
    captured: dict[str, tuple] = {}
    handles = []
    for path, sub in module.named_modules():
        if path:
            def hook(sub, inputs, path=path):
                captured.setdefault(path, inputs)
            handles.append(sub.register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            module(*args)
    except Exception:  # noqa: BLE001,S110 - the hooks have seen every layer that ran before the failure
        pass
    finally:
        for handle in handles:
            handle.remove()
    for path in sorted(captured, key=lambda p: -p.count(".")):
        inputs = captured[path]
        if not inputs or not all(isinstance(t, torch.Tensor) for t in inputs):
            continue
        sub = module.get_submodule(path)
        try:
            _torchscript_export(sub, inputs, io.BytesIO(), None, None, verbose=False)
        except Exception:
            return f"in layer '{_user_path(path)}' ({type(sub).__name__})"
    return f"in forward() of {type(module).__name__} (no single layer fails on its own)"


def _user_path(path: str) -> str:
    """The layer's path in the user's model (without the exporter's wrapper and shim parts)."""
    parts = [p for p in path.split(".") if p != "inner"]
    return ".".join(parts[1:] if parts and parts[0] == "model" else parts)


def _add_nonfinite_output(graph: onnx.ModelProto, names: list[str]) -> None:
    """Append ``nonfinite = Sum(ReduceSum(t) for t in names)`` (a scalar) as a graph output."""
    from onnx import TensorProto, helper

    sums = [f"{NONFINITE_OUTPUT}_{index}" for index in range(len(names))]
    nodes = [helper.make_node("ReduceSum", [name], [total], name=f"lstm_edge_nonfinite_sum_{index}", keepdims=0)
             for index, (name, total) in enumerate(zip(names, sums))]
    nodes.append(helper.make_node("Sum", sums, [NONFINITE_OUTPUT], name="lstm_edge_nonfinite_total"))
    graph.graph.node.extend(nodes)
    graph.graph.output.append(helper.make_tensor_value_info(NONFINITE_OUTPUT, TensorProto.FLOAT, []))
