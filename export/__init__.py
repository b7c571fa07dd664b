"""Host-side export: a PyTorch model in, a model directory out (``manifest.json`` plus model files).

    from lstm_edge.export import export
    out_dir = export(model, example, "out_dir", formats=("onnx", "tflite"), chunk_sizes=(10, 1))
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

import lstm_edge
from lstm_edge.export.checks import (
    check_against_model,
    check_time_locality,
    probe_input,
)
from lstm_edge.export.graph_io import GraphIO
from lstm_edge.export.wrap import (
    SequenceStreamer,
    StateSlot,
    StepStreamer,
    is_step_model,
)
from lstm_edge.runtime.errors import ExportError, expected_got
from lstm_edge.runtime.manifest import (
    ANSWER_SO_FAR,
    DEFAULT_TOLERANCES,
    FORMATS,
    TIME,
    Manifest,
    StateSpec,
    TensorSpec,
    file_entry,
    float_limit,
    within_tolerance,
)
from lstm_edge.runtime.names import check_model_name

__all__ = ["ExportError", "export"]

INPUT_NAME = "x"
OUTPUT_NAME = "y"
DEFAULT_CHUNK_SIZES = (10, 1)
ONNX_FILE = "model.onnx"
TFLITE_FILE = "model.tflite"


def export(model: torch.nn.Module, example: torch.Tensor | np.ndarray, out_dir: str | Path,
           formats: Sequence[str] = ("onnx",), chunk_sizes: Iterable[int] | None = None,
           labels: Sequence[str] | None = None, frontend: Mapping[str, Any] | Any = None,
           name: str | None = None, tolerances: Mapping[str, float] | None = None,
           extra: Mapping[str, Any] | None = None, reference_input: np.ndarray | None = None,
           tokenizer: Mapping[str, Any] | Any = None, verbose: bool = False,
           output_semantics: str | None = None, detector: Mapping[str, Any] | None = None,
           tflite_batch_sizes: Sequence[int] = ()) -> Path:
    """Export ``model`` as a streaming model directory and return its path.

    ``example`` has the batch dim: ``[1, T, F]`` float features or ``[1, T]`` int64 token ids for sequence models;
    one step's input for step models (models with ``initial_state()``). ``chunk_sizes`` are the TFLite signature
    lengths (must include 1 so every T can be composed). ``frontend`` describes the audio frontend (a dict, or an
    object with ``to_dict()``). The exported graphs are checked against the torch model before this returns.
    ``reference_input`` (no batch dim; default: 1200 random frames, or 200 random steps) is stored with torch's
    outputs on it, so ``lstm-edge verify`` can later compare every file with the torch model without torch.
    ``tokenizer`` (token models: a dict such as ``{"type": "bytes"}`` or a ``Tokenizer``) is recorded in the manifest;
    the ids' range is the model's ``vocab_size`` attribute if it has one, else its first ``nn.Embedding``'s size.
    An export failure raises one ExportError naming the layer; ``verbose`` adds the exporter's own report.

    Many-to-one models (``fc(h_n[-1])``, ``fc(out[:, -1])``) stream one answer per frame: the output is
    ``[1, T, ...]``, row t being the model's answer on the frames so far; the manifest's output has
    ``"per_frame": "answer_so_far"``.
    ``output_semantics`` says what ``y`` holds: "logits" (default when ``labels`` are given), "probabilities",
    "log_probabilities" or "values" (default otherwise). ``detector`` (keyword spotting settings) goes into the
    manifest as given; docs/manifest.md describes every field.
    ``tflite_batch_sizes`` (sequence models) adds TFLite signatures taking that many streams per call, for
    ``StreamBatch`` on LiteRT, in a companion file ``model.batch.tflite`` (the one-stream file is unchanged); those
    that compute every stream on its own are declared in the manifest (``export.tflite_batch``, whose
    ``DEFAULT_BATCH_SIZES`` (4, 16) is the recommended set). None by default: each batch size converts the graph
    again (the keyword spotter's export takes ~2x as long with (4, 16)) and adds a file.
    """
    formats = _check_formats(formats)
    if name is not None:
        check_model_name(name)  # names reach file names, scripts and systemd units
    if not isinstance(model, torch.nn.Module):
        raise ExportError(expected_got("model", "a torch.nn.Module", type(model).__name__))
    example = _as_example(example)
    step = is_step_model(model)
    lengths = None if step else _check_chunk_sizes(chunk_sizes)
    if not step and example.ndim < 2:
        raise ExportError(expected_got("example for a sequence model", "[1, T, F] floats or [1, T] token ids",
                                       f"shape {tuple(example.shape)}"))
    if step:
        streamer: StepStreamer | SequenceStreamer = StepStreamer(model, example)
    else:
        streamer = SequenceStreamer(model, example)
        check_time_locality(streamer, example)
        check_against_model(streamer, example)
    slots: list[StateSlot] = list(streamer.slots)
    initial = tuple(slot.initial for slot in slots)
    with torch.no_grad():
        y, *_ = streamer(example, *initial)
    if not isinstance(y, torch.Tensor):
        raise ExportError(expected_got("model output", "one tensor", type(y).__name__))
    described = ModelDescription(model=model, example=example, output=y, slots=tuple(slots), step=step,
                                 many_to_one=bool(getattr(streamer, "many_to_one", False)),
                                 labels=labels, frontend=frontend, name=name, tolerances=tolerances, extra=extra)
    manifest = _build_manifest(described)
    graph_io = GraphIO(example, initial, INPUT_NAME, OUTPUT_NAME, tuple(s.input for s in manifest.states),
                       tuple(s.output for s in manifest.states), lengths)
    if tokenizer is not None:
        manifest = replace(manifest, tokenizer=_tokenizer_dict(tokenizer, manifest))
    manifest = replace(manifest, detector=dict(detector) if detector is not None else None,
                       outputs=(replace(manifest.output, semantics=_semantics(output_semantics, labels)),))

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    if "onnx" in formats:
        from lstm_edge.export.onnx_export import write_onnx

        checks = write_onnx(streamer, graph_io, _onnx_metadata(manifest), out_dir / ONNX_FILE, verbose=verbose)
        files.append(file_entry(out_dir, ONNX_FILE, "onnx", "float", checks=checks))
    if "tflite" in formats:
        from lstm_edge.export.tflite_batch import batch_path_of
        from lstm_edge.export.tflite_export import tflite_checks, write_tflite, write_tflite_batch

        batch_sizes, state_axes = _tflite_batch(tflite_batch_sizes, manifest, step)
        signatures = write_tflite(streamer, graph_io, out_dir / TFLITE_FILE, _tflite_metadata(manifest))
        companion = out_dir / batch_path_of(TFLITE_FILE)
        companion.unlink(missing_ok=True)  # a previous export's, which the new weights would not match
        if batch_sizes:
            try:
                write_tflite_batch(streamer, graph_io, companion, _tflite_metadata(manifest), batch_sizes, state_axes)
            except ExportError as err:
                # e.g. a forward that reshapes with batch 1: the model keeps its one-stream signatures, and says why
                import warnings

                companion.unlink(missing_ok=True)
                warnings.warn(f"TFLite signatures for {list(batch_sizes)} streams per call could not be written "
                              f"({err}); the model has one-stream signatures only", stacklevel=2)
        sizes = sorted((int(k) for k in signatures), reverse=True) if lengths else None
        files.append(file_entry(out_dir, TFLITE_FILE, "tflite", "float", chunk_sizes=sizes, signatures=signatures,
                                checks=tflite_checks(example)))
    for entry in files:
        manifest = manifest.with_file(entry)
    if "c" in formats:
        manifest = _write_c(streamer, graph_io, manifest, out_dir, verbose)
    reference = _write_reference(streamer, example, manifest, out_dir, reference_input)
    if manifest.frontend is not None:
        from lstm_edge.export.spec_files import write_frontend_reference

        reference |= write_frontend_reference(manifest.frontend, out_dir)
    manifest = replace(manifest, reference=reference)
    manifest.save(out_dir)
    _self_check(streamer, example, manifest, out_dir)
    if "onnx" in formats:
        from lstm_edge.export.batch_axis import declare_onnx_batch

        declare_onnx_batch(out_dir)  # many streams per call, where the graph computes each on its own
    if "tflite" in formats and not step:
        from lstm_edge.export.tflite_batch import declare_tflite_batch

        declare_tflite_batch(out_dir)  # the batched signatures that compute each stream on its own
    return out_dir


def _tflite_batch(batch_sizes: Sequence[int], manifest: Manifest,
                  step: bool) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
    """The TFLite batch sizes to write and each state's batch axis; none for step models or states without one."""
    from lstm_edge.export.batch_axis import state_batch_axis

    if isinstance(batch_sizes, (str, bytes)) or not isinstance(batch_sizes, (Sequence, np.ndarray)):
        raise ExportError(expected_got("tflite_batch_sizes", "a sequence of ints >= 2, e.g. (4, 16)",
                                       type(batch_sizes).__name__))
    sizes = tuple(batch_sizes)
    if sizes and not all(isinstance(b, (int, np.integer)) and not isinstance(b, bool) and b >= 2 for b in sizes):
        raise ExportError(expected_got("tflite_batch_sizes", "ints >= 2 (streams per call), e.g. (4, 16)",
                                       list(sizes)))
    axes = tuple(state_batch_axis(spec) for spec in manifest.states)
    if step or not sizes or not axes or None in axes:
        return (), None
    return tuple(sorted({int(b) for b in sizes})), axes  # type: ignore[return-value]


def _write_c(streamer: torch.nn.Module, graph_io: GraphIO, manifest: Manifest, out_dir: Path,
             verbose: bool) -> Manifest:
    """The C weight files, made from the float ONNX graph (written to a temporary folder when not asked for)."""
    import tempfile

    from lstm_edge.export.c_export import write_c_files
    from lstm_edge.export.onnx_export import write_onnx

    if manifest.has_file("onnx", "float"):
        return write_c_files(out_dir / ONNX_FILE, manifest, out_dir)
    with tempfile.TemporaryDirectory() as work:
        graph = Path(work) / ONNX_FILE
        write_onnx(streamer, graph_io, _onnx_metadata(manifest), graph, verbose=verbose)
        return write_c_files(graph, manifest, out_dir)


def _check_formats(formats: Sequence[str]) -> tuple[str, ...]:
    if isinstance(formats, str):
        formats = (formats,)
    formats = tuple(formats)
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ExportError(expected_got("formats", f"a non-empty selection of {FORMATS}", list(formats)))
    return formats


def _check_chunk_sizes(chunk_sizes: Iterable[int] | None) -> tuple[int, ...]:
    sizes = tuple(chunk_sizes) if chunk_sizes is not None else DEFAULT_CHUNK_SIZES
    if not sizes or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 1 for s in sizes):
        raise ExportError(expected_got("chunk_sizes", "positive integers", list(sizes)))
    if 1 not in sizes:
        raise ExportError(expected_got("chunk_sizes", "a list that includes 1 (so any T can be composed)",
                                       list(sizes)))
    return tuple(sorted({int(s) for s in sizes}, reverse=True))


def _as_example(example: torch.Tensor | np.ndarray) -> torch.Tensor:
    if isinstance(example, np.ndarray):
        example = torch.from_numpy(np.ascontiguousarray(example))
    if not isinstance(example, torch.Tensor):
        raise ExportError(expected_got("example", "a torch.Tensor or numpy array", type(example).__name__))
    if example.ndim < 1 or example.shape[0] != 1:
        raise ExportError(expected_got("example batch size", "1 (shape [1, ...])", tuple(example.shape)))
    if example.dtype.is_floating_point:
        example = example.float()
    elif example.dtype in (torch.int32, torch.int16, torch.uint8, torch.int64):
        example = example.long()
    else:
        raise ExportError(expected_got("example dtype", "float32 features or int64 token ids", example.dtype))
    if example.dtype.is_floating_point and not torch.isfinite(example).all():
        raise ExportError(expected_got("example values", "finite numbers", "NaN/inf"))
    return example


def _vocab_size(model: torch.nn.Module) -> int | None:
    """The token-id range of a token model: its ``vocab_size`` attribute (an int), else its first nn.Embedding's."""
    declared = getattr(model, "vocab_size", None)
    if declared is not None:
        if isinstance(declared, bool) or not isinstance(declared, int) or declared < 1:
            raise ExportError(expected_got("model.vocab_size", "a positive int (the number of token ids)",
                                           repr(declared)))
        return declared
    for module in model.modules():
        if isinstance(module, torch.nn.Embedding):
            return module.num_embeddings
    return None


def _frontend_dict(frontend: Any) -> Mapping[str, Any] | None:
    if frontend is None:
        return None
    if hasattr(frontend, "to_dict"):
        return frontend.to_dict()
    if isinstance(frontend, Mapping):
        from lstm_edge.runtime.frontend import LogMelConfig

        # v1-style dicts (tunable keys only) are completed with the fixed choices (schema v2).
        return LogMelConfig.from_dict(frontend).to_dict(frontend.get("feature_normalization"))
    raise ExportError(expected_got("frontend", "a dict or an object with to_dict()", type(frontend).__name__))


def _tokenizer_dict(tokenizer: Any, manifest: Manifest) -> dict[str, Any]:
    from lstm_edge.runtime.tokenizer import Tokenizer

    parsed = Tokenizer.from_dict(tokenizer.to_dict() if hasattr(tokenizer, "to_dict") else tokenizer)
    value_range = manifest.input.value_range
    if manifest.input.dtype != "int64" or value_range is None or value_range[1] != parsed.vocab_size:
        raise ExportError(expected_got("tokenizer", f"a vocabulary matching the model's token ids {value_range}",
                                       f"{parsed.type} tokenizer of {parsed.vocab_size} tokens"))
    return parsed.to_dict()


@dataclass(frozen=True)
class ModelDescription:
    """What the manifest is built from: the model, its example I/O, its state slots and the caller's options."""

    model: torch.nn.Module
    example: torch.Tensor
    output: torch.Tensor  # the streaming function's y on the example
    slots: tuple[StateSlot, ...]
    step: bool
    many_to_one: bool = False
    labels: Sequence[str] | None = None
    frontend: Mapping[str, Any] | Any = None
    name: str | None = None
    tolerances: Mapping[str, float] | None = None
    extra: Mapping[str, Any] | None = None


def _build_manifest(described: ModelDescription) -> Manifest:
    model, example, y, slots, step = (described.model, described.example, described.output, described.slots,
                                      described.step)
    labels = described.labels
    dtype = "int64" if example.dtype == torch.int64 else "float32"
    if step:
        in_shape: tuple = tuple(example.shape)
        out_shape: tuple = tuple(y.shape)
    else:
        in_shape = (1, TIME, *example.shape[2:])
        out_shape = (1, TIME, *y.shape[2:])
    vocab = _vocab_size(model) if dtype == "int64" else None
    input_spec = TensorSpec(INPUT_NAME, dtype, in_shape, (0, vocab) if vocab else None)
    output_spec = TensorSpec(OUTPUT_NAME, "float32", out_shape,
                             per_frame=ANSWER_SO_FAR if described.many_to_one else None)
    states = tuple(
        StateSpec(slot.name, slot.input, slot.output, "float32", slot.shape,
                  "zeros" if not bool(slot.initial.any()) else tuple(float(v) for v in slot.initial.flatten()),
                  slot.source)
        for slot in slots)
    if labels is not None:
        labels = tuple(str(label) for label in labels)
        if out_shape[-1] != len(labels):
            raise ExportError(expected_got("labels", f"{out_shape[-1]} labels (the output's last dim)", len(labels)))
    merged = dict(DEFAULT_TOLERANCES)
    merged.update(described.tolerances or {})
    producer = {"lstm_edge": lstm_edge.__version__, "torch": torch.__version__.split("+")[0],
                "exporter": "torch.onnx (TorchScript) + lstm-edge state threading", "model_class": type(model).__name__}
    return Manifest(kind="step" if step else "sequence", inputs=(input_spec,), outputs=(output_spec,),
                    states=states, name=described.name or type(model).__name__, labels=labels,
                    frontend=_frontend_dict(described.frontend), tolerances=merged, producer=producer,
                    extra=dict(described.extra or {}))


def _semantics(output_semantics: str | None, labels: Sequence[str] | None) -> str:
    from lstm_edge.runtime.manifest import SEMANTICS

    if output_semantics is None:
        return "logits" if labels is not None else "values"
    if output_semantics not in SEMANTICS:
        raise ExportError(expected_got("output_semantics", f"one of {SEMANTICS}", repr(output_semantics)))
    return output_semantics


def _tflite_metadata(manifest: Manifest) -> dict[str, Any]:
    """The essentials of the contract, stored in the .tflite file as the metadata buffer "lstm_edge" (JSON)."""
    from lstm_edge.export.spec_files import essentials

    return essentials(manifest)


def _onnx_metadata(manifest: Manifest) -> dict[str, Any]:
    """The essentials of the contract, duplicated into the ONNX file for runtimes that only see the file."""
    return {
        "lstm_edge.tolerances": dict(manifest.tolerances),
        "lstm_edge.checks": {"nonfinite_any": "nonfinite"},
        "lstm_edge.output_semantics": manifest.output.semantics,
        "lstm_edge.detector": dict(manifest.detector) if manifest.detector else {},
        "lstm_edge.tokenizer": dict(manifest.tokenizer) if manifest.tokenizer else {},
        "lstm_edge.schema_version": str(manifest.schema_version),
        "lstm_edge.kind": manifest.kind,
        "lstm_edge.input": manifest.input.to_dict(),
        "lstm_edge.output": manifest.output.to_dict(),
        "lstm_edge.states": [{k: v for k, v in s.to_dict().items() if k != "init"} | {
            "init": "zeros" if s.init == "zeros" else "learned (values in manifest.json)"} for s in manifest.states],
        "lstm_edge.labels": list(manifest.labels) if manifest.labels else [],
        "lstm_edge.frontend": dict(manifest.frontend) if manifest.frontend else {},
        "lstm_edge.version": lstm_edge.__version__,
    }


REFERENCE_FRAMES = 1200
REFERENCE_STEPS = 200


def _write_reference(streamer: torch.nn.Module, example: torch.Tensor, manifest: Manifest, out_dir: Path,
                     reference_input: np.ndarray | None) -> dict[str, Any]:
    """Store an input and the torch model's outputs on it (one pass, or step by step for step models)."""
    step = manifest.kind == "step"
    if reference_input is None:
        if step:
            generator = torch.Generator().manual_seed(3)
            data = torch.randn((REFERENCE_STEPS, *example.shape[1:]), generator=generator)
        else:
            data = probe_input(example, REFERENCE_FRAMES, seed=3)[0]
    else:
        data = _as_example(np.asarray(reference_input)[np.newaxis])[0]
        want = tuple(example.shape[1:]) if step else tuple(example.shape[2:])
        got = tuple(data.shape[1:])
        if got != want:
            raise ExportError(expected_got("reference_input shape (no batch dim)", f"[N, {', '.join(map(str, want))}]",
                                           tuple(data.shape)))
    state = tuple(torch.from_numpy(s) for s in manifest.initial_values())
    with torch.no_grad():
        if step:
            outputs = []
            for row in data:
                y, *state = streamer(row[None], *state)
                outputs.append(y[0])
            output = torch.stack(outputs)
        else:
            output = streamer(data[None], *state)[0][0]
    folder = out_dir / "reference"
    folder.mkdir(exist_ok=True)
    np.save(folder / "input.npy", data.numpy(), allow_pickle=False)
    np.save(folder / "output.npy", output.numpy().astype(np.float32), allow_pickle=False)
    from lstm_edge.runtime.manifest import sha256_of

    return {"input": "reference/input.npy", "output": "reference/output.npy", "length": int(data.shape[0]),
            "input_sha256": sha256_of(folder / "input.npy"), "output_sha256": sha256_of(folder / "output.npy"),
            "note": "torch float model on the whole input (sequence) or step by step (step models)"}


def _self_check(streamer: torch.nn.Module, example: torch.Tensor, manifest: Manifest, out_dir: Path) -> None:
    """Run each written file on its backend against torch; refuse to hand over a directory that disagrees."""
    from lstm_edge.runtime.backends import engine_available, for_format
    from lstm_edge.runtime.model import StreamingModel

    x = example if manifest.kind == "step" else probe_input(example, 23, seed=7)
    with torch.no_grad():
        expected, *_ = streamer(x, *(torch.from_numpy(s) for s in manifest.initial_values()))
    expected = expected[0].numpy()
    for entry in manifest.files:
        if entry.precision != "float":
            continue  # int8 files (the C exporter writes both) are judged by their own gates, not float tolerance
        backend = for_format(entry.format).name
        if not engine_available(backend):
            continue
        model = StreamingModel.load(out_dir, backend=backend, precision=entry.precision)
        got = model.create_stream().push(x[0].numpy())
        diff = float(np.abs(got - expected).max())
        peak = float(np.abs(expected).max())
        tolerance = float_limit(manifest.tolerances, peak)
        if not within_tolerance(diff, peak, manifest.tolerances):
            raise ExportError(f"{entry.path} disagrees with the torch model on a {x.shape[1]}-frame input: max abs "
                              f"diff {diff:.3g}, expected <= {tolerance:.3g}")
