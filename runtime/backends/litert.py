"""LiteRT backend: one interpreter per model file, one signature per fixed chunk length.

Every signature takes and returns tensors under the manifest's names. ``run`` covers any ``T`` with the file's
signatures, largest first (23 frames = 2 x 10 + 3 x 1), so the tensors are never resized. Each signature's tensor
indices are looked up once at load; a call then sets the inputs, invokes that signature's subgraph and reads the
outputs (copies), under one lock per interpreter, since an interpreter must not run two calls at once.
A file whose manifest entry has ``batch_signatures`` (e.g. ``chunk_10_b16``: 16 streams stacked on axis 0) also runs
a ``StreamBatch`` in few calls (``run_batch``): n streams go through the smallest batched signature that holds them,
unused rows zero and dropped, or through several calls when n exceeds the largest. Those signatures live in the
entry's companion ``batch_file``, checked against its sha256 and loaded into an interpreter of its own only when the
first batch is opened: XNNPACK packs the weights of every signature of a file it loads, so a process running single
streams never reads the companion and costs what the one-stream file costs.
Files whose inputs/outputs are quantized (int8 static) are fed and read in float: each tensor is quantized with
its own (scale, zero point) on the way in and dequantized on the way out. Token ids are cast to the file's
integer dtype (int32 in files written by litert-torch).
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lstm_edge.runtime.backends import REGISTRY, release_of
from lstm_edge.runtime.errors import BackendUnavailableError, InputError, LstmEdgeError, ModelFileError, expected_got
from lstm_edge.runtime.manifest import TIME, Manifest, ModelFile, check_batch_file
from lstm_edge.runtime.values import GraphCheck

INFO = REGISTRY["litert"]
_QUANTIZED = (np.dtype(np.int8), np.dtype(np.uint8), np.dtype(np.int16))
# The public signature runner resizes and re-allocates its tensors on every call. These files have fixed shapes,
# so on the ai-edge-litert releases this was measured on, allocate once and call the interpreter wrapper's
# SetTensor/Invoke/GetTensor for the signature's subgraph (what the runner calls underneath). Elsewhere (other
# releases, tflite-runtime) the public runner is used; tests run both paths.
FAST_PATH_VERSIONS = ((1, 2), (2, 3))

Convert = Callable[[np.ndarray], np.ndarray]


def available() -> bool:
    return (importlib.util.find_spec("ai_edge_litert") is not None
            or importlib.util.find_spec("tflite_runtime") is not None)


def _import_interpreter() -> tuple[Any, str, tuple[int, int]]:
    """The Interpreter class, the engine's name with its version, and (major, minor) of ai-edge-litert."""
    try:
        import ai_edge_litert
        from ai_edge_litert.interpreter import Interpreter
        version = str(getattr(ai_edge_litert, "__version__", "0.0"))
        return Interpreter, f"ai-edge-litert {version}", release_of(version)
    except ImportError as err:
        first_error = err
    try:
        import tflite_runtime
        from tflite_runtime.interpreter import Interpreter
        return Interpreter, f"tflite-runtime {getattr(tflite_runtime, '__version__', '?')}", (0, 0)
    except ImportError:
        raise BackendUnavailableError(f"backend 'litert' needs ai-edge-litert, which is not installed "
                                      f"({first_error}); install it with: {INFO.install_hint}") from None


def _input_converter(where: str, want: str, detail: Mapping[str, Any]) -> Convert | None:
    """How to turn the caller's array (manifest dtype ``want``) into what the tensor holds; None: as is."""
    have = np.dtype(detail["dtype"])
    if have == np.dtype(want):
        return None
    if want == "float32" and have in _QUANTIZED:
        scale, zero_point = detail["quantization"]
        if scale <= 0:
            raise ModelFileError(expected_got(f"{where} quantization", "a positive scale", scale))
        limits = np.iinfo(have)
        low, high, inverse, zero = limits.min, limits.max, np.float32(1.0 / scale), np.float32(zero_point)
        return lambda x: np.clip(np.rint(x * inverse) + zero, low, high).astype(have)
    if want == "int64" and have.kind == "i":
        return lambda x: x.astype(have)
    raise ModelFileError(expected_got(f"{where} dtype", f"{want} (or its quantized form)", have.name))


def _output_converter(where: str, want: str, detail: Mapping[str, Any]) -> Convert | None:
    have = np.dtype(detail["dtype"])
    if have == np.dtype(want):
        return None
    if want == "float32" and have in _QUANTIZED:
        scale, zero_point = detail["quantization"]
        scale, zero = np.float32(scale), np.float32(zero_point)
        return lambda q: (q.astype(np.float32) - zero) * scale
    raise ModelFileError(expected_got(f"{where} dtype", f"{want} (or its quantized form)", have.name))


class SignatureCall:
    """One signature of the file, callable on manifest-typed arrays: ``call(x, states) -> (y, new_states)``."""

    def __init__(self, backend: LiteRTBackend, key: str, length: int, fast_path: bool,
                 streams: int = 1, state_axes: Sequence[int | None] = (), file: _File | None = None) -> None:
        file = file or backend.file
        interpreter, manifest, path = file.interpreter, backend.manifest, file.path
        self.key, self.length, self.streams = key, length, streams
        self._lock = file.lock
        self._in_names = [manifest.input.name] + [s.input for s in manifest.states]
        self._out_names = [manifest.output.name] + [s.output for s in manifest.states] + backend.check_outputs
        self._runner = interpreter.get_signature_runner(key)
        inputs, outputs = self._runner.get_input_details(), self._runner.get_output_details()
        if set(inputs) != set(self._in_names) or set(outputs) != set(self._out_names):
            raise ModelFileError(expected_got(f"{path}: signature {key!r} names",
                                              f"inputs {sorted(self._in_names)}, outputs {sorted(self._out_names)}",
                                              f"inputs {sorted(inputs)}, outputs {sorted(outputs)}"))
        spec = manifest.input
        expected_x = [length if d == TIME else d for d in spec.shape]
        expected_x[0] = streams
        if list(inputs[spec.name]["shape"]) != expected_x:
            raise ModelFileError(expected_got(f"{path}: signature {key!r} input {spec.name!r} shape",
                                              expected_x, list(inputs[spec.name]["shape"])))
        for state, axis in zip(manifest.states, state_axes or [None] * len(manifest.states)):
            shape = list(state.shape)
            if axis is not None:
                shape[axis] = streams
            for name, details in ((state.input, inputs), (state.output, outputs)):
                if list(details[name]["shape"]) != shape:
                    raise ModelFileError(expected_got(f"{path}: signature {key!r} state {name!r} shape",
                                                      shape, list(details[name]["shape"])))
        where = f"{path}: {key}"
        self._in_conv = [_input_converter(f"{where}/{spec.name}", spec.dtype, inputs[spec.name])]
        self._in_conv += [_input_converter(f"{where}/{s.input}", s.dtype, inputs[s.input]) for s in manifest.states]
        self._out_conv = [_output_converter(f"{where}/{manifest.output.name}", manifest.output.dtype,
                                            outputs[manifest.output.name])]
        self._out_conv += [_output_converter(f"{where}/{s.output}", s.dtype, outputs[s.output])
                           for s in manifest.states]
        self._out_conv += [None] * len(backend.check_outputs)
        self._converts = any(c is not None for c in self._in_conv + self._out_conv)
        # A quantized input cannot carry NaN into the graph (and the check output is quantized too): such files
        # are checked in numpy by the caller before quantizing.
        self.quantized_input = np.dtype(inputs[spec.name]["dtype"]) in _QUANTIZED
        wrapper: Any = getattr(interpreter, "_interpreter", None)
        self._subgraph = getattr(self._runner, "_subgraph_index", None)
        self.fast_path = fast_path and self._subgraph is not None and all(
            callable(getattr(wrapper, m, None)) for m in ("SetTensor", "Invoke", "GetTensor", "AllocateTensors"))
        if self.fast_path:
            wrapper.AllocateTensors(self._subgraph)
            self._set, self._invoke, self._get = wrapper.SetTensor, wrapper.Invoke, wrapper.GetTensor
            self._in_indices = [inputs[name]["index"] for name in self._in_names]
            self._out_indices = [outputs[name]["index"] for name in self._out_names]

    def __call__(self, x: np.ndarray, states: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The outputs in order: y, the new states, then any check outputs."""
        values = [x, *states]
        if len(values) != len(self._in_names):
            raise InputError(expected_got("states", f"{len(self._in_names) - 1} arrays {self._in_names[1:]}",
                                          len(states)))
        if self._converts:
            values = [value if c is None else c(value) for c, value in zip(self._in_conv, values)]
        try:
            with self._lock:
                if self.fast_path:
                    subgraph = self._subgraph
                    for index, value in zip(self._in_indices, values):
                        self._set(index, value, subgraph)
                    self._invoke(subgraph)
                    results = [self._get(index, subgraph) for index in self._out_indices]
                else:
                    named = self._runner(**dict(zip(self._in_names, values)))
                    results = [named[name] for name in self._out_names]
        except ValueError as err:
            raise InputError(f"LiteRT signature {self.key!r} rejected the chunk of shape {x.shape} dtype "
                             f"{x.dtype}: {err}") from None
        except RuntimeError as err:
            raise LstmEdgeError(f"LiteRT failed on signature {self.key!r}: {err}") from None
        if self._converts:
            results = [value if c is None else c(value) for c, value in zip(self._out_conv, results)]
        return results


class _File:
    """One loaded ``.tflite``: its interpreter, signature list and the lock its calls take (an interpreter must not
    run two calls at once)."""

    def __init__(self, interpreter_class: Any, path: Path, threads: int) -> None:
        self.path = path
        try:
            self.interpreter = interpreter_class(model_path=str(path), num_threads=threads)
            self.signatures = self.interpreter.get_signature_list()
        except Exception as err:  # the interpreter raises ValueError/RuntimeError for unreadable flatbuffers
            raise ModelFileError(f"{path}: LiteRT cannot load this file: {err}") from None
        self.lock = threading.Lock()


class LiteRTBackend:
    name = INFO.name

    def __init__(self, path: Path, manifest: Manifest, entry: ModelFile, threads: int, fast_path: bool = True,
                 model_dir: Path | None = None) -> None:
        interpreter_class, self.engine, release = _import_interpreter()
        self.path, self.manifest = path, manifest
        self.file = _File(interpreter_class, path, threads)
        self.interpreter, self.lock, signatures = self.file.interpreter, self.file.lock, self.file.signatures
        self._interpreter_class, self._threads = interpreter_class, threads
        # the directory the entry's paths are relative to (its batch file is opened from there)
        self._model_dir = (Path(model_dir) if model_dir is not None
                           else Path(path).parents[len(Path(entry.path).parts) - 1])
        self._batch_lock = threading.Lock()
        self._check = GraphCheck.from_checks(entry.checks)
        self.check_outputs = [self._check.output] if self._check is not None else []
        self.checks_input_finite = self._check is not None
        self.checks_result_finite = self._check is not None and self._check.covers_result
        self._state_names = [s.name for s in manifest.states]
        fast_path = fast_path and FAST_PATH_VERSIONS[0] <= release <= FAST_PATH_VERSIONS[1]
        self._fast_path_wanted, self._entry = fast_path, entry
        self._batch_calls: dict[int, dict[int, SignatureCall]] | None = None  # streams -> length -> call (lazy)
        keys = self._signature_keys(signatures, entry)
        self._calls = {length: SignatureCall(self, key, length, fast_path)
                       for length, key in sorted(keys.items(), reverse=True)}
        self.lengths = tuple(self._calls)  # largest first
        self.fast_path = all(call.fast_path for call in self._calls.values())
        if any(call.quantized_input for call in self._calls.values()):
            self._check = None
            self.checks_input_finite = self.checks_result_finite = False
        self._step = manifest.kind == "step" or manifest.input.time_axis is None

    def _signature_keys(self, signatures: Mapping[str, Any], entry: ModelFile) -> dict[int, str]:
        """``{chunk length: signature key}`` from the manifest entry, checked against the file."""
        path, manifest = self.path, self.manifest
        if manifest.kind == "step":
            keys = list(entry.signatures.values()) if entry.signatures else list(signatures)
            if len(keys) != 1:
                raise ModelFileError(expected_got(f"{path}: signatures of a step model", "exactly one", keys))
            length = 1
            time_axis = manifest.input.time_axis
            if time_axis is not None and keys[0] in signatures:
                details = self.interpreter.get_signature_runner(keys[0]).get_input_details()
                length = int(details[manifest.input.name]["shape"][time_axis])
            by_length = {length: keys[0]}
        elif entry.signatures:
            try:
                by_length = {int(length): key for length, key in entry.signatures.items()}
            except ValueError:
                raise ModelFileError(expected_got(f"{path}: manifest signatures", "chunk lengths as keys",
                                                  sorted(entry.signatures))) from None
            if 1 not in by_length:
                raise ModelFileError(expected_got(f"{path}: signature chunk lengths", "a set that includes 1 "
                                                  "(so any T can be composed)", sorted(by_length)))
        else:
            raise ModelFileError(f"{path}: the manifest lists no signatures for this TFLite file "
                                 f"(expected chunk length -> signature key, e.g. {{'10': 'chunk_10'}})")
        missing = sorted(set(by_length.values()) - set(signatures))
        if missing:
            raise ModelFileError(expected_got(f"{path}: signatures", f"{sorted(by_length.values())}",
                                              f"{sorted(signatures)} (missing {missing})"))
        return by_length

    def _call(self, call: SignatureCall, x: np.ndarray,
              states: Sequence[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        results = call(x, states)
        y, new_states = results[0], results[1:len(results) - len(self.check_outputs)]
        if self._check is not None:
            self._check.verify(results[-1], x, y, new_states, self._state_names)
        return y, new_states

    def run(self, x: np.ndarray, states: Sequence[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        """Run one chunk of any length, composed from the file's signatures."""
        if self._step:
            return self._call(self._calls[self.lengths[0]], x, states)
        total = x.shape[1]
        call = self._calls.get(total)
        if call is not None:
            return self._call(call, x, states)
        pieces, start = [], 0
        for length, call in self._calls.items():
            while total - start >= length:
                y, states = self._call(call, x[:, start:start + length], states)
                pieces.append(y)
                start += length
        return np.concatenate(pieces, axis=1), list(states)


    # ------------------------------------------------------------------ many streams per call
    def batch_sizes(self) -> tuple[int, ...]:
        """Streams per call of the batched signatures this file declares and can run (increasing); () for none."""
        axes = [state.batch_axis for state in self.manifest.states]
        if self._step or not self._entry.batch_signatures or not axes or None in axes:
            return ()
        return tuple(sorted(int(n) for n in self._entry.batch_signatures))

    def open_batch(self, model: Any) -> Any:
        """A ``GraphBatchEngine`` over ``run_batch`` when the file has batched signatures, else None (the slots then
        run one by one)."""
        sizes = self.batch_sizes()
        if not sizes:
            return None
        self._batch_setup()
        from lstm_edge.runtime.batch import GraphBatchEngine

        name = (f"one LiteRT call per up to {sizes[-1]} slots (batch signatures {', '.join(map(str, sizes))}; "
                "unused rows padded)")
        return GraphBatchEngine(model, self.run_batch, self._state_axes(), name=name)

    def _state_axes(self) -> list[int]:
        return [int(s.batch_axis) for s in self.manifest.states]  # type: ignore[arg-type]  # batch_sizes() checked

    def _batch_setup(self) -> dict[int, dict[int, SignatureCall]]:
        """The batched signatures' calls, set up on first use: the companion file is checked and loaded here."""
        with self._batch_lock:
            if self._batch_calls is None:
                companion = _File(self._interpreter_class, check_batch_file(self._model_dir, self._entry),
                                  self._threads)
                axes = self._state_axes()
                calls: dict[int, dict[int, SignatureCall]] = {}
                for streams in self.batch_sizes():
                    keys = self._entry.signatures_for(streams)
                    missing = sorted(set(keys.values()) - set(companion.signatures))
                    if missing:
                        raise ModelFileError(expected_got(f"{companion.path}: batch signatures for {streams} streams",
                                                          sorted(keys.values()), f"missing {missing}"))
                    calls[streams] = {length: SignatureCall(self, key, length, self._fast_path_wanted, streams, axes,
                                                            companion)
                                      for length, key in sorted(keys.items(), reverse=True)}
                self._batch_calls = calls
        return self._batch_calls

    def run_batch(self, x: np.ndarray, states: Sequence[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        """Run ``n = len(x)`` streams (states joined along their batch axes): one call of the smallest batched
        signature holding n (rows past n zero, their results dropped), several when n exceeds the largest; a single
        stream runs on the one-stream signatures."""
        streams = x.shape[0]
        if streams == 1:
            return self.run(x, states)
        calls = self._batch_setup()
        largest = max(calls)
        if streams > largest:
            axes = self._state_axes()
            pieces, parts = [], []
            for start in range(0, streams, largest):
                rows = slice(start, start + largest)
                y, new = self.run_batch(x[rows], [_rows(v, a, rows) for v, a in zip(states, axes)])
                pieces.append(y)
                parts.append(new)
            return (np.concatenate(pieces), [np.concatenate([p[i] for p in parts], axis=a)
                                             for i, a in enumerate(axes)])
        size = min(n for n in calls if n >= streams)
        return self._run_padded(calls[size], size, x, states)

    def _run_padded(self, calls: dict[int, SignatureCall], size: int, x: np.ndarray,
                    states: Sequence[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        streams = x.shape[0]
        axes = self._state_axes()
        if streams < size:
            x = _padded(x, 0, size)
            states = [_padded(v, a, size) for v, a in zip(states, axes)]
        total, start = x.shape[1], 0
        pieces = []
        for length, call in calls.items():  # largest first; T must be composed of the batched lengths
            while total - start >= length:
                y, states = self._call(call, x[:, start:start + length], states)
                pieces.append(y)
                start += length
        if start < total:  # chunk lengths the batched signatures lack: the rest stream by stream
            rest = [self.run(x[k:k + 1, start:], [_rows(v, a, slice(k, k + 1)) for v, a in zip(states, axes)])
                    for k in range(streams)]
            pieces.append(_padded(np.concatenate([y for y, _ in rest]), 0, size))
            states = [_padded(np.concatenate([new[i] for _, new in rest], axis=a), a, size)
                      for i, a in enumerate(axes)]
        y = pieces[0] if len(pieces) == 1 else np.concatenate(pieces, axis=1)
        if streams < size:
            return y[:streams], [_rows(v, a, slice(0, streams)) for v, a in zip(states, axes)]
        return y, list(states)


def _rows(value: np.ndarray, axis: int, rows: slice) -> np.ndarray:
    index = [slice(None)] * value.ndim
    index[axis] = rows
    return value[tuple(index)]


def _padded(value: np.ndarray, axis: int, size: int) -> np.ndarray:
    """``value`` with zero rows appended on ``axis`` up to ``size``."""
    shape = list(value.shape)
    shape[axis] = size - shape[axis]
    return np.concatenate([value, np.zeros(shape, value.dtype)], axis=axis)


def open(model_dir: Path, manifest: Manifest, entry: ModelFile, threads: int) -> LiteRTBackend:
    return LiteRTBackend(Path(model_dir) / entry.path, manifest, entry, threads, model_dir=Path(model_dir))
