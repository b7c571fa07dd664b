"""Write a wrapped streaming module as one ``.tflite`` file with one signature per chunk length.

The module has the exporter's signature ``forward(x, *state_in) -> (y, *state_out)``. Each signature of the
file takes and returns tensors under the manifest's names (``x``, ``lstm_h_in`` ... ``y``, ``lstm_h_out`` ...),
so a runtime never matches anything by position. All signatures live in one file and share its weights.

Sequence models may also get signatures for several streams per call (``write_tflite_batch``, e.g. 4, 16, 64):
signature ``chunk_10_b16`` takes 16 streams' chunks stacked on axis 0 and their states joined along each state's
batch axis. They go into a companion file (``model.batch.tflite``) with its own copy of the weights, because
XNNPACK packs the weights of every signature of a file at its first call: a process running one stream loads only
the one-stream file. ``export.tflite_batch`` checks that every stream's results equal a run of its own before the
manifest declares them.

Token-id inputs (int64 in torch) come out as int32 in the file: litert-torch downcasts 64-bit I/O, and most
on-device runtimes do not take int64. The LiteRT backend casts the ids it is given to the file's dtype.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from lstm_edge.export.graph_io import GraphIO
from lstm_edge.runtime.errors import ExportError, expected_got

STEP_SIGNATURE = "step"
# Sum of every value of the float input, the output and the new state: finite when they all are (as in the ONNX graph).
NONFINITE_OUTPUT = "nonfinite"


def chunk_signature(length: int) -> str:
    """The signature key of chunk length ``length`` (``chunk_10``)."""
    return f"chunk_{length}"


def batch_signature(length: int, batch: int) -> str:
    """The signature key of chunk length ``length`` for ``batch`` streams per call (``chunk_10_b16``)."""
    return f"chunk_{length}_b{batch}"


def _check_batch_sizes(batch_sizes: tuple[int, ...], state_axes: tuple[int, ...] | None, n_states: int) -> None:
    if not all(isinstance(b, int) and not isinstance(b, bool) and b >= 2 for b in batch_sizes) \
            or len(set(batch_sizes)) != len(batch_sizes):
        raise ExportError(expected_got("TFLite batch sizes", "distinct ints >= 2, e.g. (4, 16, 64)", batch_sizes))
    if batch_sizes and (state_axes is None or len(state_axes) != n_states):
        raise ExportError(expected_got("state batch axes for TFLite batch signatures", f"{n_states} axes (one per "
                                       "state)", state_axes))


def _batched(example: torch.Tensor, axis: int, batch: int) -> torch.Tensor:
    """``example`` (size 1 on ``axis``) repeated to ``batch`` streams on that axis."""
    repeats = [1] * example.dim()
    repeats[axis] = batch
    return example.repeat(*repeats).contiguous()


class _NamedIO(torch.nn.Module):
    """Adapter that takes the inputs as keyword arguments and returns the outputs as a dict.

    litert-torch names a signature's inputs after the keyword arguments of the sample call and its outputs
    after the keys of the returned dict.
    """

    def __init__(self, module: torch.nn.Module, input_name: str, state_inputs: list[str], output_name: str,
                 state_outputs: list[str], check_input: bool = False) -> None:
        super().__init__()
        self.module = module
        self.input_name = input_name
        self.state_inputs = list(state_inputs)
        self.output_names = [output_name, *state_outputs]
        self.check_input = check_input

    def forward(self, **inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        outputs = self.module(inputs[self.input_name], *(inputs[name] for name in self.state_inputs))
        if not isinstance(outputs, (tuple, list)) or len(outputs) != len(self.output_names):
            got = f"{len(outputs)} values" if isinstance(outputs, (tuple, list)) else type(outputs).__name__
            raise ExportError(expected_got("wrapped module outputs",
                                           f"a tuple of {len(self.output_names)} tensors (y, *state_out)", got))
        named = dict(zip(self.output_names, outputs))
        checked = ([inputs[self.input_name]] if self.check_input else []) + list(outputs)
        named[NONFINITE_OUTPUT] = torch.stack([t.float().sum() for t in checked]).sum()
        return named


def _check_names(input_name: str, output_name: str, state_inputs: list[str], state_outputs: list[str],
                 n_states: int) -> None:
    if len(state_inputs) != n_states or len(state_outputs) != n_states:
        raise ExportError(expected_got("state names", f"{n_states} input and {n_states} output names "
                                       "(one per example state)",
                                       f"{len(state_inputs)} inputs, {len(state_outputs)} outputs"))
    for group, names in (("input", [input_name, *state_inputs]), ("output", [output_name, *state_outputs])):
        bad = [name for name in names if not name.isidentifier()]
        if bad:
            raise ExportError(expected_got(f"TFLite {group} names", "Python identifiers", bad))
        if len(set(names)) != len(names):
            raise ExportError(expected_got(f"TFLite {group} names", "distinct names", names))


def _with_length(example_x: torch.Tensor, length: int) -> torch.Tensor:
    """``example_x`` cut or tiled along the time axis (dim 1) to ``length`` frames."""
    have = example_x.shape[1]
    if have >= length:
        return example_x[:, :length].contiguous()
    repeats = [1] * example_x.dim()
    repeats[1] = -(-length // have)
    return example_x.repeat(*repeats)[:, :length].contiguous()


def _signature_examples(example_x: torch.Tensor,
                        lengths: tuple[int, ...] | None) -> dict[str, tuple[str, torch.Tensor]]:
    """``{str(length): (signature key, example x)}``; one ``step`` signature when ``lengths`` is None."""
    if lengths is None:
        return {STEP_SIGNATURE: (STEP_SIGNATURE, example_x)}
    if not lengths or not all(isinstance(n, int) and n > 0 for n in lengths) or len(set(lengths)) != len(lengths):
        raise ExportError(expected_got("chunk lengths", "distinct positive ints, e.g. (10, 1)", lengths))
    if example_x.dim() < 2 or example_x.shape[1] < 1:
        raise ExportError(expected_got("example input", "[1, T, ...] with T >= 1 (time on dim 1)",
                                       list(example_x.shape)))
    return {str(n): (chunk_signature(n), _with_length(example_x, n)) for n in lengths}


def write_tflite(module: torch.nn.Module, graph_io: GraphIO, path: Path,
                 metadata: dict | None = None) -> dict[str, str]:
    """Convert ``module`` to one ``.tflite`` at ``path``: a signature per chunk length, weights shared.

    A step model (``graph_io.chunk_lengths`` None) gets one signature ``step`` at the example's shape.
    Returns ``{str(length): signature key}`` (``{"step": "step"}`` for a step model). Every signature gets an extra
    scalar output ``nonfinite``, the sum of the (float) input, the output and the new state, as the ONNX graph has
    (``tflite_checks`` gives the manifest's ``checks``). ``metadata`` is stored as the file's metadata entry
    "lstm_edge" (JSON).
    """
    _check_names(graph_io.input_name, graph_io.output_name, list(graph_io.state_inputs),
                 list(graph_io.state_outputs), len(graph_io.example_states))
    examples = _signature_examples(graph_io.example_x, graph_io.chunk_lengths)
    samples = [(key, {graph_io.input_name: x, **dict(zip(graph_io.state_inputs, graph_io.example_states))})
               for key, x in examples.values()]
    _convert(module, graph_io, path, metadata, samples)
    return {length: key for length, (key, _) in examples.items()}


def write_tflite_batch(module: torch.nn.Module, graph_io: GraphIO, path: Path, metadata: dict | None,
                       batch_sizes: tuple[int, ...], state_axes: tuple[int, ...] | None) -> dict[int, dict[int, str]]:
    """Convert ``module`` to the companion file at ``path`` (``model.batch.tflite``) holding only the batched
    signatures: one per chunk length and batch size B (``batch_signature``), ``B`` streams per call, inputs/outputs
    stacked on axis 0, each state joined along its axis in ``state_axes``. Sequence models only. Returns
    ``{B: {chunk length: key}}``; ``export.tflite_batch`` checks them against the one-stream file and declares them.
    """
    batch_sizes = tuple(batch_sizes)
    _check_batch_sizes(batch_sizes, state_axes, len(graph_io.example_states))
    if not batch_sizes or graph_io.chunk_lengths is None:
        raise ExportError(expected_got("TFLite batch sizes", "at least one, for a sequence model",
                                       f"{batch_sizes} for a {'step' if graph_io.chunk_lengths is None else 'sequence'}"
                                       " model"))
    _check_names(graph_io.input_name, graph_io.output_name, list(graph_io.state_inputs),
                 list(graph_io.state_outputs), len(graph_io.example_states))
    examples = _signature_examples(graph_io.example_x, graph_io.chunk_lengths)
    samples: list[tuple[str, dict[str, Any]]] = []
    table: dict[int, dict[int, str]] = {}
    for batch in batch_sizes:
        states = [_batched(value, axis, batch) for value, axis in zip(graph_io.example_states, state_axes or ())]
        for length, (_, x) in examples.items():
            key = batch_signature(int(length), batch)
            table.setdefault(batch, {})[int(length)] = key
            samples.append((key, {graph_io.input_name: _batched(x, 0, batch),
                                  **dict(zip(graph_io.state_inputs, states))}))
    _convert(module, graph_io, path, metadata, samples)
    return table


def _convert(module: torch.nn.Module, graph_io: GraphIO, path: Path, metadata: dict | None,
             samples: list[tuple[str, dict[str, torch.Tensor]]]) -> None:
    """One litert-torch conversion of ``module`` with a signature per ``(key, sample inputs)``, written to ``path``
    (inner tensor names shortened, metadata added) and reloaded to check its keys and names."""
    input_name, output_name = graph_io.input_name, graph_io.output_name
    state_inputs, state_outputs = list(graph_io.state_inputs), list(graph_io.state_outputs)
    try:
        import litert_torch
    except ImportError as err:
        raise ExportError(f"TFLite export needs litert-torch ({err}); install it with: "
                          "pip install 'lstm-edge[tflite]'") from None

    adapter = _NamedIO(module, input_name, state_inputs, output_name, state_outputs,
                       graph_io.example_x.dtype.is_floating_point)
    modes = {sub: sub.training for sub in module.modules()}
    adapter.eval()
    show_progress = litert_torch.config.show_progress
    litert_torch.config.show_progress = False
    path = Path(path)
    try:
        with warnings.catch_warnings():
            # nn.LSTM re-assigns its flat weight list while torch.export traces it: harmless here.
            warnings.filterwarnings("ignore", message=".*were assigned during export.*")
            warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
            converter: Any = None
            for key, sample in samples:
                converter = (litert_torch if converter is None else converter).signature(key, adapter, (), sample)
            edge_model = converter.convert()
            path.parent.mkdir(parents=True, exist_ok=True)
            edge_model.export(str(path))
    except ExportError:
        raise
    except Exception as err:  # torch.export and the converter raise many types
        message = str(err).strip().splitlines()
        raise ExportError(f"litert-torch could not convert the model to {path} "
                          f"(signatures {[k for k, _ in samples]}): {type(err).__name__}: "
                          f"{message[0] if message else ''}") from err
    finally:
        litert_torch.config.show_progress = show_progress
        for sub, training in modes.items():
            sub.training = training
    _shorten_tensor_names(path, metadata)
    checked_outputs = [output_name, *state_outputs, NONFINITE_OUTPUT]
    _check_written(path, {key for key, _ in samples}, [input_name, *state_inputs], checked_outputs)


def tflite_checks(example_x: torch.Tensor) -> dict[str, str]:
    """The manifest's ``checks`` of a file written by ``write_tflite`` (the same for every example input)."""
    return {"nonfinite_any": NONFINITE_OUTPUT}


def _shorten_tensor_names(path: Path, metadata: dict | None = None) -> None:
    """Replace the converter's long debug names of inner tensors (module paths, ~20% of a small file) with short
    ones. Signature inputs/outputs keep their names; signatures refer to tensors by index, so nothing else changes."""
    try:
        import flatbuffers
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        return
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(path.read_bytes(), 0))
    for graph_index, subgraph in enumerate(model.subgraphs or []):
        keep = set(subgraph.inputs.tolist() if hasattr(subgraph.inputs, "tolist") else subgraph.inputs or [])
        keep |= set(subgraph.outputs.tolist() if hasattr(subgraph.outputs, "tolist") else subgraph.outputs or [])
        for tensor_index, tensor in enumerate(subgraph.tensors or []):
            if tensor_index not in keep:
                tensor.name = f"s{graph_index}t{tensor_index}"
    if metadata is not None:
        from lstm_edge.export.spec_files import add_tflite_metadata

        add_tflite_metadata(model, schema, metadata)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path.write_bytes(bytes(builder.Output()))


def _check_written(path: Path, keys: set[str], inputs: list[str], outputs: list[str]) -> None:
    """Reload the file and check its signature keys and tensor names are the manifest's."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        return  # the converter itself depends on ai-edge-litert; without it there is nothing to check against
    try:
        signatures = Interpreter(model_path=str(path)).get_signature_list()
    except Exception as err:
        raise ExportError(f"{path}: the written TFLite file does not load: {err}") from None
    if set(signatures) != keys:
        raise ExportError(expected_got(f"{path}: signatures", sorted(keys), sorted(signatures)))
    for key, names in signatures.items():
        if sorted(names["inputs"]) != sorted(inputs) or sorted(names["outputs"]) != sorted(outputs):
            raise ExportError(expected_got(f"{path}: signature {key!r} names", f"inputs {sorted(inputs)}, "
                                           f"outputs {sorted(outputs)}",
                                           f"inputs {sorted(names['inputs'])}, outputs {sorted(names['outputs'])}"))
