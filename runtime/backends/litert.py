"""LiteRT backend: one interpreter per model file, one signature per fixed chunk length.

Every signature takes and returns tensors under the manifest's names. The tensor indices of each signature are
looked up once at load; a call then sets the inputs, invokes that signature's subgraph and reads the outputs
(copies), under one lock per interpreter, since an interpreter must not run two calls at once.
Files whose inputs/outputs are quantized (int8 static) are fed and read in float: each tensor is quantized with
its own (scale, zero point) on the way in and dequantized on the way out. Token ids are cast to the file's
integer dtype (int32 in files written by litert-torch).
When the manifest lists ``checks.nonfinite_input`` for the file, every signature has that extra scalar output (0
for a finite chunk, NaN otherwise) and a chunk holding NaN/inf is refused from it, as on ONNX; files whose input is
quantized cannot receive NaN, so the model checks their float chunk in numpy before quantizing it.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from lstm_edge.runtime.errors import (BackendUnavailableError, InputError, LstmEdgeError, ModelFileError,
                                      expected_got)
from lstm_edge.runtime.manifest import Manifest, ModelFile

INSTALL = "pip install 'lstm-edge[litert]'  (or: pip install ai-edge-litert)"
_QUANTIZED = (np.int8, np.uint8, np.int16)

Convert = Callable[[np.ndarray], np.ndarray]
Call = Callable[[np.ndarray, Sequence[np.ndarray]], tuple[np.ndarray, list[np.ndarray]]]


def available() -> bool:
    return (importlib.util.find_spec("ai_edge_litert") is not None
            or importlib.util.find_spec("tflite_runtime") is not None)


def _import_interpreter() -> tuple[type, str]:
    """The Interpreter class and the engine's name and version."""
    try:
        import ai_edge_litert
        from ai_edge_litert.interpreter import Interpreter
        return Interpreter, f"ai-edge-litert {getattr(ai_edge_litert, '__version__', '?')}"
    except ImportError as err:
        first_error = err
    try:
        import tflite_runtime
        from tflite_runtime.interpreter import Interpreter
        return Interpreter, f"tflite-runtime {getattr(tflite_runtime, '__version__', '?')}"
    except ImportError:
        raise BackendUnavailableError(f"backend 'litert' needs ai-edge-litert, which is not installed "
                                      f"({first_error}); install it with: {INSTALL}") from None


def _input_converter(where: str, want: str, detail: dict) -> Convert | None:
    """How to turn the caller's array (manifest dtype ``want``) into what the tensor holds; None: as is."""
    have = np.dtype(detail["dtype"])
    if have == np.dtype(want):
        return None
    if want == "float32" and have in _QUANTIZED:
        scale, zero_point = detail["quantization"]
        if scale <= 0:
            raise ModelFileError(expected_got(f"{where} quantization", "a positive scale", scale))
        info = np.iinfo(have)
        low, high, inverse = info.min, info.max, np.float32(1.0 / scale)
        zero = np.float32(zero_point)
        return lambda x: np.clip(np.rint(x * inverse) + zero, low, high).astype(have)
    if want == "int64" and have.kind == "i":
        return lambda x: x.astype(have)
    raise ModelFileError(expected_got(f"{where} dtype", f"{want} (or its quantized form)", have.name))


def _output_converter(where: str, want: str, detail: dict) -> Convert | None:
    have = np.dtype(detail["dtype"])
    if have == np.dtype(want):
        return None
    if want == "float32" and have in _QUANTIZED:
        scale, zero_point = detail["quantization"]
        scale, zero = np.float32(scale), np.float32(zero_point)
        return lambda q: (q.astype(np.float32) - zero) * scale
    raise ModelFileError(expected_got(f"{where} dtype", f"{want} (or its quantized form)", have.name))


class LiteRTBackend:
    name = "litert"
    checks_finite = False  # True when every signature reports non-finite input values itself

    def __init__(self, path: Path, manifest: Manifest, entry: ModelFile, threads: int, direct: bool = True) -> None:
        interpreter_class, self.engine = _import_interpreter()
        self.path = path
        try:
            self._interpreter = interpreter_class(model_path=str(path), num_threads=threads)
            signatures = self._interpreter.get_signature_list()
        except Exception as err:  # the interpreter raises ValueError/RuntimeError for unreadable flatbuffers
            raise ModelFileError(f"{path}: LiteRT cannot load this file: {err}") from None
        self._lock = threading.Lock()
        self._manifest = manifest
        self._input_names = [manifest.input.name] + [s.input for s in manifest.states]
        self._output_names = [manifest.output.name] + [s.output for s in manifest.states]
        self._check_name = (entry.checks or {}).get("nonfinite_input")
        self.checks_finite = self._check_name is not None
        keys = self._signature_keys(signatures, manifest, entry)
        self._calls: dict[int, Call] = {}
        for length, key in keys.items():
            self._calls[length] = self._make_call(key, length, direct)
        self.fixed_lengths: tuple[int, ...] = tuple(sorted(self._calls, reverse=True))
        if manifest.kind == "step":
            self.run = self._calls[self.fixed_lengths[0]]  # one fixed shape: no dispatch on T

    def _signature_keys(self, signatures: dict, manifest: Manifest, entry: ModelFile) -> dict[int, str]:
        """``{chunk length: signature key}`` from the manifest entry, checked against the file."""
        path = self.path
        if manifest.kind == "step":
            keys = list(entry.signatures.values()) if entry.signatures else list(signatures)
            if len(keys) != 1:
                raise ModelFileError(expected_got(f"{path}: signatures of a step model", "exactly one", keys))
            length = 1
            time_axis = manifest.input.time_axis
            if time_axis is not None and keys[0] in signatures:
                length = int(self._interpreter.get_signature_runner(keys[0]).get_input_details()
                             [manifest.input.name]["shape"][time_axis])
            by_length = {length: keys[0]}
        elif entry.signatures:
            try:
                by_length = {int(length): key for length, key in entry.signatures.items()}
            except ValueError:
                raise ModelFileError(expected_got(f"{path}: manifest signatures", "chunk lengths as keys",
                                                  sorted(entry.signatures))) from None
        else:
            raise ModelFileError(f"{path}: the manifest lists no signatures for this TFLite file "
                                 f"(expected chunk length -> signature key, e.g. {{'10': 'chunk_10'}})")
        missing = sorted(set(by_length.values()) - set(signatures))
        if missing:
            raise ModelFileError(expected_got(f"{path}: signatures", f"{sorted(by_length.values())}",
                                              f"{sorted(signatures)} (missing {missing})"))
        return by_length

    def _make_call(self, key: str, length: int, direct: bool) -> Call:
        """The function that runs signature ``key`` (chunk length ``length``) on float/int64 arrays."""
        path, manifest = self.path, self._manifest
        runner = self._interpreter.get_signature_runner(key)
        inputs, outputs = runner.get_input_details(), runner.get_output_details()
        check = self._check_name
        want_outputs = set(self._output_names) | ({check} if check else set())
        if set(inputs) != set(self._input_names) or set(outputs) != want_outputs:
            raise ModelFileError(expected_got(f"{path}: signature {key!r} names",
                                              f"inputs {sorted(self._input_names)}, outputs {sorted(want_outputs)}",
                                              f"inputs {sorted(inputs)}, outputs {sorted(outputs)}"))
        use_check = check is not None and np.dtype(inputs[manifest.input.name]["dtype"]) == np.float32
        if not use_check:
            self.checks_finite = False

        def refuse_nonfinite(flag: object, x: np.ndarray) -> None:
            if float(flag) != 0.0:  # NaN when any input value is NaN or inf
                bad = int(np.size(x) - np.isfinite(x).sum())
                raise InputError(expected_got("chunk values", "finite numbers", f"{bad} NaN/inf values"))
        spec = manifest.input
        expected_x = [length if d == "T" else d for d in spec.shape]
        if list(inputs[spec.name]["shape"]) != expected_x:
            raise ModelFileError(expected_got(f"{path}: signature {key!r} input {spec.name!r} shape",
                                              expected_x, list(inputs[spec.name]["shape"])))
        for state in manifest.states:
            for name, details in ((state.input, inputs), (state.output, outputs)):
                if tuple(details[name]["shape"]) != state.shape:
                    raise ModelFileError(expected_got(f"{path}: signature {key!r} state {name!r} shape",
                                                      list(state.shape), list(details[name]["shape"])))
        in_conv = [_input_converter(f"{path}: {key}/{spec.name}", spec.dtype, inputs[spec.name])]
        in_conv += [_input_converter(f"{path}: {key}/{s.input}", s.dtype, inputs[s.input]) for s in manifest.states]
        out_conv = [_output_converter(f"{path}: {key}/{manifest.output.name}", manifest.output.dtype,
                                      outputs[manifest.output.name])]
        out_conv += [_output_converter(f"{path}: {key}/{s.output}", s.dtype, outputs[s.output])
                     for s in manifest.states]
        convert = any(c is not None for c in in_conv + out_conv)
        in_names, out_names = self._input_names, self._output_names
        lock = self._lock
        n_states = len(in_names) - 1

        def bad_call(err: Exception, x: np.ndarray, states: Sequence[np.ndarray]) -> LstmEdgeError:
            if len(states) != n_states:
                return InputError(expected_got("states", f"{n_states} arrays {in_names[1:]}", len(states)))
            if isinstance(err, ValueError):
                return InputError(f"LiteRT signature {key!r} rejected the chunk of shape {x.shape} "
                                  f"dtype {x.dtype}: {err}")
            return LstmEdgeError(f"LiteRT failed on signature {key!r}: {err}")

        wrapper = getattr(self._interpreter, "_interpreter", None)
        subgraph = getattr(runner, "_subgraph_index", None)
        direct = direct and subgraph is not None and all(
            hasattr(wrapper, m) for m in ("SetTensor", "Invoke", "GetTensor", "AllocateTensors"))
        if direct:
            # The signature runner resizes and re-allocates on every call; the tensors have fixed shapes, so
            # allocate once and then only set, invoke, get (the same wrapper calls the runner makes).
            wrapper.AllocateTensors(subgraph)
            set_tensor, invoke, get_tensor = wrapper.SetTensor, wrapper.Invoke, wrapper.GetTensor
            acquire, release = lock.acquire, lock.release
            x_index = inputs[in_names[0]]["index"]
            state_indices = [inputs[name]["index"] for name in in_names[1:]]
            y_index = outputs[out_names[0]]["index"]
            out_indices = [outputs[name]["index"] for name in out_names[1:]]
            check_index = outputs[check]["index"] if use_check else None
            subgraphs = [subgraph] * n_states

            def call(x: np.ndarray, states: Sequence[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
                if len(states) != n_states:
                    raise bad_call(ValueError(), x, states)
                acquire()
                try:
                    set_tensor(x_index, x, subgraph)
                    list(map(set_tensor, state_indices, states, subgraphs))
                    invoke(subgraph)
                    result = get_tensor(y_index, subgraph), list(map(get_tensor, out_indices, subgraphs))
                    flag = 0.0 if check_index is None else get_tensor(check_index, subgraph)
                except (ValueError, RuntimeError) as err:
                    raise bad_call(err, x, states) from None
                finally:
                    release()
                if check_index is not None:
                    refuse_nonfinite(flag, x)
                return result
        else:
            def call(x: np.ndarray, states: Sequence[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
                if len(states) != n_states:
                    raise bad_call(ValueError(), x, states)
                feed = dict(zip(in_names[1:], states))
                feed[in_names[0]] = x
                try:
                    with lock:
                        result = runner(**feed)
                except (ValueError, RuntimeError) as err:
                    raise bad_call(err, x, states) from None
                if use_check:
                    refuse_nonfinite(result[check], x)
                return result[out_names[0]], [result[name] for name in out_names[1:]]

        if not convert:
            return call

        def converted(x: np.ndarray, states: Sequence[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
            feed = [x, *states]
            feed = [value if c is None else c(value) for c, value in zip(in_conv, feed)]
            y, new_states = call(feed[0], feed[1:])
            out = [value if c is None else c(value) for c, value in zip(out_conv, [y, *new_states])]
            return out[0], out[1:]

        return converted

    def run(self, x: np.ndarray, states: Sequence[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        """Run one chunk whose length is one of ``fixed_lengths``."""
        try:
            call = self._calls[x.shape[1]]
        except (KeyError, IndexError):
            raise InputError(expected_got("chunk length for the LiteRT backend",
                                          f"one of {self.fixed_lengths}", x.shape[1] if x.ndim > 1 else x.shape)) from None
        return call(x, states)


def open(model_dir: Path, manifest: Manifest, entry: ModelFile, threads: int) -> LiteRTBackend:
    return LiteRTBackend(Path(model_dir) / entry.path, manifest, entry, threads)
