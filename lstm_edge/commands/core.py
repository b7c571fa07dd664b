"""CLI: ``lstm-edge export``, ``run`` and ``info``: the model directory itself."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import pickle
import re
import sys
from collections.abc import Callable
from pathlib import Path

from lstm_edge.commands import add_engine_options
from lstm_edge.runtime.errors import LstmEdgeError, expected_got


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _load_factory(spec: str) -> Callable:
    """``package.module:factory`` or ``path/to/file.py:factory``."""
    target, sep, attr = spec.rpartition(":")
    if not sep or not target or not attr:
        raise LstmEdgeError(f"model: expected 'module:factory' or 'file.py:factory', got {spec!r}")
    folder = str(Path(target).parent.resolve()) if target.endswith(".py") else str(Path.cwd())
    saved_path = list(sys.path)
    sys.path.insert(0, folder)  # the file's folder (or the current directory) for its own imports; restored below
    try:
        if target.endswith(".py"):
            path = Path(target)
            if not path.is_file():
                raise LstmEdgeError(f"model: file {path} does not exist")
            module_spec = importlib.util.spec_from_file_location(path.stem, path)
            if module_spec is None or module_spec.loader is None:
                raise LstmEdgeError(f"model: cannot load {path} as a Python module")
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
        else:
            try:
                module = importlib.import_module(target)
            except ImportError as err:
                raise LstmEdgeError(f"model: cannot import module {target!r} ({err})") from None
    finally:
        sys.path[:] = saved_path
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise LstmEdgeError(f"model: {target} has no callable {attr!r}")
    return factory


def _unpickling_need(message: str) -> str:
    """What torch's weights-only loader refused, in a few plain words (its message is pages long, with terminal
    escape codes): e.g. " (the class torch.nn.modules.rnn.LSTM: a whole pickled module?)"."""
    found = re.search(r"GLOBAL ([\w.]+)", message)
    if not found:
        return ""
    return f" (the class {found.group(1)}: a whole pickled module?)"


def cmd_export(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from lstm_edge.export import export

    factory = _load_factory(args.model)
    kwargs = json.loads(args.factory_kwargs) if args.factory_kwargs else {}
    model = factory(**kwargs)
    if not isinstance(model, torch.nn.Module):
        raise LstmEdgeError(f"model: the factory returned {type(model).__name__}, expected a torch.nn.Module")
    if args.weights:
        try:
            state_dict = torch.load(args.weights, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            raise LstmEdgeError(f"--weights {args.weights}: expected a state_dict (tensors only), got a file that "
                                f"needs unpickling code{_unpickling_need(str(err))}; save model.state_dict() "
                                "instead, or load it yourself only if you trust its source") from None
        if args.weights_key:
            if not isinstance(state_dict, dict) or args.weights_key not in state_dict:
                keys = sorted(state_dict)[:10] if isinstance(state_dict, dict) else type(state_dict).__name__
                raise LstmEdgeError(expected_got(f"--weights-key {args.weights_key!r}", "a key of the checkpoint",
                                                 f"keys {keys}"))
            state_dict = state_dict[args.weights_key]
        elif isinstance(state_dict, dict) and "state_dict" in state_dict and isinstance(state_dict["state_dict"], dict):
            state_dict = state_dict["state_dict"]
        if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
            nested = [k for k, v in state_dict.items() if isinstance(v, dict)] if isinstance(state_dict, dict) else []
            hint = f"; pick one with --weights-key {nested[0]}" if nested else ""
            raise LstmEdgeError(expected_got(f"--weights {args.weights}", "a state_dict of tensors",
                                             f"{type(state_dict).__name__} with keys {nested or '...'}{hint}"))
        try:
            model.load_state_dict(state_dict)
        except RuntimeError as err:
            lines = [line.strip() for line in str(err).splitlines() if line.strip()]
            raise LstmEdgeError(f"--weights {args.weights}: does not fit the model: {' '.join(lines)[:600]}") from None
    else:
        print("warning: no --weights given: exporting the factory's RANDOM initial weights", file=sys.stderr)
    model.eval()
    if args.example:
        example = torch.from_numpy(np.load(args.example, allow_pickle=False))
    elif args.example_shape:
        shape = args.example_shape
        if args.example_dtype == "int64":
            example = torch.zeros(shape, dtype=torch.int64)
        else:
            example = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    else:
        raise LstmEdgeError("export: give --example FILE.npy or --example-shape 1,T,F")
    labels = None
    if args.labels:
        labels = [label.strip() for label in args.labels.split(",")]
    out = export(model, example, args.output, formats=tuple(args.formats.split(",")), chunk_sizes=args.chunk_sizes,
                 labels=labels, name=args.name, verbose=args.verbose,
                 tflite_batch_sizes=tuple(args.tflite_batch_sizes or ()))
    print(f"exported {args.model} -> {out}")
    return cmd_info(argparse.Namespace(model_dir=out, json=False))


def cmd_run(args: argparse.Namespace) -> int:
    import numpy as np

    from lstm_edge.runtime import StreamingModel

    model = StreamingModel.load(args.model_dir, backend=args.backend, precision=args.precision,
                                threads=args.threads)
    try:
        data = np.load(args.input, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise LstmEdgeError(f"{args.input}: not a readable .npy array ({err})") from None
    if not isinstance(data, np.ndarray):
        data.close()
        raise LstmEdgeError(expected_got(f"{args.input}", "one .npy array", "an .npz archive (save one array with "
                                         "np.save)"))
    if data.ndim == 0:
        raise LstmEdgeError(expected_got(f"{args.input}", "an array with a time axis ([T, F] or [T])",
                                         f"a 0-d array (a single {data.dtype} value)"))
    stream = model.create_stream()
    outputs = []
    if model.manifest.kind == "step":
        for step_input in data:
            outputs.append(stream.push(step_input))
    else:
        if args.chunk < 1:
            raise LstmEdgeError(f"--chunk: expected a positive number of frames, got {args.chunk}")
        for start in range(0, len(data), args.chunk):
            outputs.append(stream.push(data[start:start + args.chunk]))
    if not outputs:
        raise LstmEdgeError(f"{args.input}: expected at least one frame, got an empty array of shape {data.shape}")
    result = np.stack(outputs) if model.manifest.kind == "step" else np.concatenate(outputs)
    np.save(args.output, result)
    print(f"{model.describe()}: {len(data)} {'steps' if model.manifest.kind == 'step' else 'frames'} -> "
          f"{args.output} {tuple(result.shape)}", file=sys.stderr)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from lstm_edge.runtime.backends import NAMES, engine_available
    from lstm_edge.runtime.manifest import Manifest, sha256_of

    manifest = Manifest.load(args.model_dir)
    if getattr(args, "json", False):
        print(json.dumps(manifest.to_dict(), indent=2))
        return 0
    model_dir = Path(args.model_dir)
    print(f"{manifest.name}  ({manifest.kind} model, manifest schema v{manifest.schema_version})")
    for label, spec in (("input ", manifest.input), ("output", manifest.output)):
        extra = f" ids in [{spec.value_range[0]}, {spec.value_range[1]})" if spec.value_range else ""
        extra += f" ({spec.semantics})" if spec.semantics else ""
        shape = "[" + ", ".join(str(d) for d in spec.shape) + "]"
        print(f"  {label} {spec.name}: {spec.dtype}{shape}{extra}")
    for state in manifest.states:
        init = "zeros" if state.init == "zeros" else "learned"
        print(f"  state  {state.name}: {state.dtype}{list(state.shape)} {state.input} -> {state.output} (init {init})")
    if manifest.labels:
        print(f"  labels {', '.join(manifest.labels)}")
    if manifest.frontend:
        print(f"  frontend {json.dumps(dict(manifest.frontend))}")
    print("  files:")
    bad = []
    for entry in manifest.files:
        path = model_dir / entry.path
        status = "ok" if path.is_file() and sha256_of(path) == entry.sha256 else "CHECKSUM MISMATCH OR MISSING"
        if status != "ok":
            bad.append(entry.path)
        chunks = f" chunks {list(entry.chunk_sizes)}" if entry.chunk_sizes else " any T"
        if entry.batch_signatures:
            chunks += f", streams per call {sorted([1, *map(int, entry.batch_signatures)])}"
        print(f"    {entry.key:13s} {entry.path:22s} {entry.bytes / 1024:8.1f} KB{chunks}  sha256 {status}")
        if entry.batch_file is not None:
            companion = model_dir / entry.batch_file.path
            status = ("ok" if companion.is_file() and sha256_of(companion) == entry.batch_file.sha256
                      else "CHECKSUM MISMATCH OR MISSING")
            if status != "ok":
                bad.append(entry.batch_file.path)
            print(f"      batch file {entry.batch_file.path} {entry.batch_file.bytes / 1024:.1f} KB (signatures for "
                  f"{', '.join(sorted(entry.batch_signatures or {}, key=int))} streams per call, opened only by a "
                  f"StreamBatch)  sha256 {status}")
        mixed = (entry.quantization or {}).get("mixed_precision")
        if mixed:
            kept = (entry.quantization or {}).get("float_layers") or []
            names = ", ".join(f"{layer['name']} ({layer['kind']}, {layer['params']} params)" for layer in kept)
            print(f"      float layers: {names or 'none'}; int8 weights {100 * mixed['int8_weight_fraction']:.1f}%; "
                  f"relative error {100 * mixed['result']['relative_error']:.2f}% "
                  f"(all int8: {100 * mixed['all_int8']['relative_error']:.2f}%)")
        elif (entry.quantization or {}).get("float_layers"):  # a C int8 file following another file's mix
            kept = (entry.quantization or {})["float_layers"]
            names = ", ".join(f"{layer['name']} ({layer['kind']}, {layer['params']} params)" for layer in kept)
            print(f"      float layers: {names} (the mix of the int8 ONNX/TFLite file)")
    engines = ", ".join(f"{name}={'installed' if engine_available(name) else 'missing'}" for name in NAMES)
    print(f"  engines here: {engines}")
    if bad:
        raise LstmEdgeError(f"{model_dir}: expected every file to match its sha256 in manifest.json, got a mismatch "
                            f"or a missing file for {bad}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("export", help="export a PyTorch model to a streaming model directory",
                       description="Export a PyTorch model (sequence or step model) with its LSTM state as named "
                                   "inputs/outputs. Weights are loaded with torch.load(weights_only=True).")
    p.add_argument("model", help="'package.module:factory' or 'path/file.py:factory' returning an nn.Module")
    p.add_argument("-o", "--output", required=True, help="model directory to write")
    p.add_argument("--weights", help="a state_dict file (.pt), loaded with weights_only=True")
    p.add_argument("--weights-key", help="the state_dict's key in a checkpoint dict, e.g. 'model'")
    p.add_argument("--factory-kwargs", help="JSON object of keyword arguments for the factory")
    p.add_argument("--example", help="an example input .npy WITH the batch dim ([1, T, F] or [1, T])")
    p.add_argument("--example-shape", type=_int_list, help="shape of a random example input, e.g. 1,10,40")
    p.add_argument("--example-dtype", choices=("float32", "int64"), default="float32")
    p.add_argument("--formats", default="onnx", help="comma-separated: onnx,tflite,c (default onnx)")
    p.add_argument("--chunk-sizes", type=_int_list, default=None, help="TFLite signature lengths, e.g. 10,1")
    p.add_argument("--tflite-batch-sizes", type=_int_list, default=None,
                   help="also TFLite signatures for this many streams per call, e.g. 4,16 (StreamBatch on LiteRT; "
                        "written to a companion file model.batch.tflite; none by default: each size converts the "
                        "graph again)")
    p.add_argument("--labels", help="comma-separated class labels for the output's last dim")
    p.add_argument("--name", help="model name for the manifest")
    p.add_argument("--verbose", action="store_true",
                   help="on an export failure, also print the exporter's own report and graph dump")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("run", help="stream a .npy input through a model directory",
                       description="Stream INPUT (a .npy with no batch dim: [T, F] features or [T] token ids; "
                                   "step models: [steps, ...]) in chunks with the state carried; save the outputs.")
    p.add_argument("model_dir")
    p.add_argument("input")
    p.add_argument("-o", "--output", required=True, help="where to save the outputs (.npy)")
    add_engine_options(p)
    p.add_argument("--chunk", type=int, default=10, help="frames per push (default 10)")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("info", help="describe a model directory", description="Print a model directory's contract "
                       "(inputs, outputs, named state, files with checksums) and which engines are installed.")
    p.add_argument("model_dir")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    p.set_defaults(func=cmd_info)
