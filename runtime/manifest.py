"""The model directory's contract: ``manifest.json``.

A manifest says everything a runtime in any language needs to stream a model: the input, output and state
tensors (names, shapes with the time axis marked, dtypes, initial state values), the model files with their
format, precision, chunk sizes and sha256, labels, the audio frontend, parity tolerances and who produced it.
This module is shared by the exporter, the quantizer and the runtime; it needs only numpy and the standard library.
The full specification is ``docs/manifest.md``; ``manifest.schema.json`` (next to this file) is its JSON Schema,
checked at every load. Schema version 2 adds output semantics, the exact frontend, the detector, the tokenizer and
the frontend reference arrays; version 1 directories still load.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from lstm_edge.runtime.errors import ManifestError, ModelFileError, expected_got
from lstm_edge.runtime.schema_check import SchemaValidator

SCHEMA = "lstm-edge/manifest"
SCHEMA_VERSION = 2
MANIFEST_NAME = "manifest.json"
SCHEMA_FILE = Path(__file__).with_name("manifest.schema.json")
MAX_MANIFEST_BYTES = 64 << 20  # learned initial states are stored inline; 64 MB holds 16M-value states
SEMANTICS = ("logits", "probabilities", "log_probabilities", "values")
TIME = "T"  # marks the time axis in a shape
# An output's "per_frame" value for many-to-one models: row t is the model's answer on the frames up to t.
ANSWER_SO_FAR = "answer_so_far"
KINDS = ("sequence", "step")
FORMATS = ("onnx", "tflite", "c")  # "c": the C weight file of runtime/native (docs/manifest.md)
PRECISIONS = ("float", "int8")
DTYPES = ("float32", "int64", "int8", "int16", "int32")

# How "float agrees with torch" is decided, named in the manifest's tolerances as ``float_rule``:
#   "scaled":   max|got - torch| <= float_max_abs_diff * (1 + max|torch|)  (float32 error grows with the outputs'
#               magnitude, so a model with large logits is held to the same relative precision as a small one)
#   "absolute": max|got - torch| <= float_max_abs_diff
FLOAT_RULES = ("scaled", "absolute")
DEFAULT_TOLERANCES: dict[str, Any] = {
    "float_max_abs_diff": 1e-4,
    "float_rule": "scaled",
    "int8_argmax_agreement": 0.98,
    "int8_accuracy_drop": 0.01,
    # int8 vs torch float over the reference stream: rms of the difference over the float outputs' std
    "int8_relative_error": 0.06,
    # binary detectors (one output, semantics "probabilities"): share of frames whose p >= 0.5 decision agrees
    "int8_decision_agreement": 0.98,
}


def float_limit(tolerances: Mapping[str, Any], reference_peak: float) -> float:
    """The largest max-abs difference from the torch float outputs that counts as agreement, for outputs whose
    largest magnitude is ``reference_peak``. The one rule used by export, verify and the tests."""
    rule = tolerances.get("float_rule", "scaled")
    if rule not in FLOAT_RULES:
        raise ManifestError(expected_got("tolerances.float_rule", f"one of {FLOAT_RULES}", repr(rule)))
    tolerance = float(tolerances["float_max_abs_diff"])
    return tolerance * (1.0 + float(reference_peak)) if rule == "scaled" else tolerance


def within_tolerance(max_abs_diff: float, reference_peak: float, tolerances: Mapping[str, Any]) -> bool:
    """True when a float file's max-abs difference from torch is within the manifest's float tolerance (NaN: no)."""
    return bool(max_abs_diff <= float_limit(tolerances, reference_peak))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _require(mapping: Mapping[str, Any], key: str, where: str) -> Any:
    if not isinstance(mapping, Mapping):
        raise ManifestError(expected_got(where, "a JSON object", type(mapping).__name__))
    if key not in mapping:
        raise ManifestError(f"{where}: missing key {key!r} (has {sorted(mapping)})")
    return mapping[key]


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output. ``shape`` holds ints and ``"T"`` for the time axis (batch is axis 0, size 1)."""

    name: str
    dtype: str
    shape: tuple[int | str, ...]
    value_range: tuple[int, int] | None = None  # token ids: valid ids are [low, high)
    per_frame: str | None = None  # outputs only: None (one output per frame) or ANSWER_SO_FAR (many-to-one)
    semantics: str | None = None  # outputs: "logits", "probabilities", "log_probabilities" or "values"

    @property
    def time_axis(self) -> int | None:
        return self.shape.index(TIME) if TIME in self.shape else None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "dtype": self.dtype, "shape": list(self.shape),
                               "time_axis": self.time_axis}
        if self.value_range is not None:
            out["value_range"] = list(self.value_range)
        if self.semantics is not None:
            out["semantics"] = self.semantics
        if self.per_frame is not None:
            out["per_frame"] = self.per_frame
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str) -> TensorSpec:
        name = _require(data, "name", where)
        dtype = _require(data, "dtype", where)
        shape = _require(data, "shape", where)
        if dtype not in DTYPES:
            raise ManifestError(expected_got(f"{where}.dtype", f"one of {DTYPES}", dtype))
        if not isinstance(shape, list) or not all(isinstance(d, int) or d == TIME for d in shape):
            raise ManifestError(expected_got(f"{where}.shape", f"a list of ints and {TIME!r}", shape))
        value_range = data.get("value_range")
        per_frame = data.get("per_frame")
        if per_frame not in (None, ANSWER_SO_FAR):
            raise ManifestError(expected_got(f"{where}.per_frame", f"absent or {ANSWER_SO_FAR!r}", repr(per_frame)))
        return cls(str(name), dtype, tuple(shape), tuple(value_range) if value_range is not None else None,
                   per_frame, data.get("semantics"))


@dataclass(frozen=True)
class StateSpec:
    """One carried state tensor: read from graph input ``input``, written to graph output ``output``."""

    name: str
    input: str
    output: str
    dtype: str
    shape: tuple[int, ...]
    init: str | tuple[float, ...] = "zeros"  # "zeros" or the flattened learned initial value
    source: str = ""  # what it is, e.g. "encoder.lstm h (layers x batch x hidden)"
    batch_axis: int | None = None  # the axis of ``shape`` (size 1) that holds streams in a batched file; None: none

    def initial_value(self) -> np.ndarray:
        if self.init == "zeros":
            return np.zeros(self.shape, dtype=self.dtype)
        return np.asarray(self.init, dtype=self.dtype).reshape(self.shape)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "input": self.input, "output": self.output, "dtype": self.dtype,
                               "shape": list(self.shape),
                               "init": self.init if self.init == "zeros" else list(self.init), "source": self.source}
        if self.batch_axis is not None:
            out["batch_axis"] = self.batch_axis
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str) -> StateSpec:
        shape = _require(data, "shape", where)
        if not isinstance(shape, list) or not all(isinstance(d, int) and d > 0 for d in shape):
            raise ManifestError(expected_got(f"{where}.shape", "a list of positive ints", shape))
        init = data.get("init", "zeros")
        if init != "zeros":
            if not isinstance(init, list) or len(init) != math.prod(shape):
                got = f"{len(init)} values" if isinstance(init, list) else repr(init)
                raise ManifestError(expected_got(f"{where}.init", f"'zeros' or {math.prod(shape)} values", got))
            init = tuple(float(v) for v in init)
        dtype = _require(data, "dtype", where)
        if dtype not in DTYPES:
            raise ManifestError(expected_got(f"{where}.dtype", f"one of {DTYPES}", dtype))
        batch_axis = data.get("batch_axis")
        if batch_axis is not None and (not isinstance(batch_axis, int) or isinstance(batch_axis, bool)
                                       or not 0 <= batch_axis < len(shape) or shape[batch_axis] != 1):
            raise ManifestError(expected_got(f"{where}.batch_axis", f"an axis of {shape} whose size is 1",
                                             batch_axis))
        return cls(str(_require(data, "name", where)), str(_require(data, "input", where)),
                   str(_require(data, "output", where)), dtype, tuple(shape), init, str(data.get("source", "")),
                   batch_axis)


@dataclass(frozen=True)
class BatchFile:
    """The companion TFLite file holding an entry's batch signatures (``model.batch.tflite``), apart from the
    one-stream file so that a process running one stream never loads them (XNNPACK packs every signature's weights)."""

    path: str
    sha256: str
    bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "bytes": self.bytes}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> BatchFile:
        if not isinstance(data, Mapping):
            raise ManifestError(expected_got(where, '{"path", "sha256", "bytes"}', repr(data)))
        path = str(_require(data, "path", where))
        if Path(path).is_absolute() or ".." in Path(path).parts:
            raise ManifestError(expected_got(f"{where}.path", "a relative path inside the model directory", path))
        return cls(path, str(_require(data, "sha256", where)), int(_require(data, "bytes", where)))

    @classmethod
    def of(cls, model_dir: str | Path, relpath: str) -> BatchFile:
        """Describe a file just written into ``model_dir`` (size and checksum computed here)."""
        path = Path(model_dir) / relpath
        return cls(relpath, sha256_of(path), path.stat().st_size)


@dataclass(frozen=True)
class ModelFile:
    """One model file of the directory: a format at a precision."""

    format: str
    precision: str
    path: str
    sha256: str
    bytes: int
    chunk_sizes: tuple[int, ...] | None = None  # None: any T in one call (ONNX); else one signature per size
    signatures: Mapping[str, str] | None = None  # chunk size (as str) -> signature key (TFLite)
    quantization: Mapping[str, Any] | None = None  # how an int8 file was made and what it means
    # Auxiliary graph outputs the runtime reads, e.g. {"nonfinite_any": "nonfinite"} (values.GraphCheck); legacy
    # {"nonfinite_input": "x_nonfinite"}: 0.0 when the input chunk
    # is all finite, NaN otherwise (computed inside the graph, so checking costs nothing per call in Python).
    checks: Mapping[str, str] | None = None
    # "any": the graph takes any number of streams on the batch axes (inputs/outputs axis 0, each state its
    # ``batch_axis``) and each stream's results equal a run of its own; None: one stream per call (batch 1).
    batch: str | None = None
    # TFLite: streams per call (as str) -> {chunk length (as str) -> signature key}, e.g. {"16": {"10": "chunk_10_b16",
    # "1": "chunk_1_b16"}}: signatures taking that many streams stacked on axis 0 (states joined along their
    # ``batch_axis``), each stream's results equal to a run of its own. None: batch 1 only.
    batch_signatures: Mapping[str, Mapping[str, str]] | None = None
    # TFLite: the companion file that holds ``batch_signatures`` (present exactly when they are).
    batch_file: BatchFile | None = None

    @property
    def key(self) -> str:
        return f"{self.format}/{self.precision}"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"format": self.format, "precision": self.precision, "path": self.path,
                               "sha256": self.sha256, "bytes": self.bytes,
                               "chunk_sizes": list(self.chunk_sizes) if self.chunk_sizes else None}
        if self.signatures is not None:
            out["signatures"] = dict(self.signatures)
        if self.quantization is not None:
            out["quantization"] = dict(self.quantization)
        if self.checks:
            out["checks"] = dict(self.checks)
        if self.batch is not None:
            out["batch"] = self.batch
        if self.batch_signatures is not None:
            out["batch_signatures"] = {size: dict(keys) for size, keys in self.batch_signatures.items()}
        if self.batch_file is not None:
            out["batch_file"] = self.batch_file.to_dict()
        return out

    def signatures_for(self, streams: int) -> dict[int, str]:
        """``{chunk length: signature key}`` of the signatures taking ``streams`` streams per call (1: the plain
        ``signatures``); empty when the file has none for that many."""
        table = self.signatures if streams == 1 else (self.batch_signatures or {}).get(str(streams))
        try:
            return {int(length): key for length, key in (table or {}).items()}
        except ValueError:  # a step model's {"step": "step"}
            return {}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str) -> ModelFile:
        fmt = _require(data, "format", where)
        precision = _require(data, "precision", where)
        if fmt not in FORMATS:
            raise ManifestError(expected_got(f"{where}.format", f"one of {FORMATS}", fmt))
        if precision not in PRECISIONS:
            raise ManifestError(expected_got(f"{where}.precision", f"one of {PRECISIONS}", precision))
        path = str(_require(data, "path", where))
        if Path(path).is_absolute() or ".." in Path(path).parts:
            raise ManifestError(expected_got(f"{where}.path", "a relative path inside the model directory", path))
        chunk_sizes = data.get("chunk_sizes")
        batch = data.get("batch")
        if batch not in (None, "any"):
            raise ManifestError(expected_got(f"{where}.batch", "'any' or absent (one stream per call)", repr(batch)))
        signatures = data.get("signatures")
        batch_signatures = data.get("batch_signatures")
        if batch_signatures is not None:
            _check_batch_signatures(batch_signatures, signatures, f"{where}.batch_signatures")
        batch_file = BatchFile.from_dict(data["batch_file"], f"{where}.batch_file") if "batch_file" in data else None
        if (batch_signatures is None) != (batch_file is None):
            raise ManifestError(expected_got(
                f"{where}: batch_signatures and batch_file", "both (the batch signatures live in the companion file "
                "batch_file names) or neither",
                "batch_signatures without batch_file (the layout that kept them inside the one-stream file; "
                "re-export or run declare_tflite_batch on a directory written by this version)"
                if batch_file is None else "batch_file without batch_signatures"))
        if batch_file is not None and batch_file.path == path:
            raise ManifestError(expected_got(f"{where}.batch_file.path", "a file of its own (not the one-stream "
                                             "file)", batch_file.path))
        return cls(fmt, precision, path, str(_require(data, "sha256", where)), int(_require(data, "bytes", where)),
                   tuple(int(c) for c in chunk_sizes) if chunk_sizes else None,
                   signatures, data.get("quantization"), data.get("checks"), batch, batch_signatures, batch_file)


def _check_batch_signatures(table: Any, signatures: Any, where: str) -> None:
    """Streams per call >= 2 as keys; under each, chunk lengths of the file's ``signatures`` -> distinct keys."""
    if not isinstance(table, Mapping) or not table:
        raise ManifestError(expected_got(where, "{streams: {chunk length: signature key}}", repr(table)))
    lengths = set(signatures or {})
    for size, keys in table.items():
        if not (isinstance(size, str) and size.isdigit() and int(size) >= 2):
            raise ManifestError(expected_got(f"{where} key", "a number of streams >= 2 (as a string)", repr(size)))
        if not isinstance(keys, Mapping) or not keys or not set(keys) <= lengths:
            raise ManifestError(expected_got(f"{where}[{size!r}]", f"chunk lengths among {sorted(lengths)} -> "
                                             "signature keys", repr(keys)))
        if set(keys.values()) & set((signatures or {}).values()):
            raise ManifestError(expected_got(f"{where}[{size!r}]", "keys of their own (not the one-stream "
                                             "signatures')", repr(keys)))


@dataclass(frozen=True)
class Manifest:
    """The parsed ``manifest.json`` of a model directory."""

    kind: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    states: tuple[StateSpec, ...]
    files: tuple[ModelFile, ...] = ()
    name: str = "model"
    labels: tuple[str, ...] | None = None
    frontend: Mapping[str, Any] | None = None
    tolerances: Mapping[str, Any] = field(default_factory=lambda: dict(DEFAULT_TOLERANCES))
    producer: Mapping[str, Any] = field(default_factory=dict)
    reference: Mapping[str, Any] | None = None  # torch's outputs on a stored input: {"input", "output", "sha256"...}
    extra: Mapping[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    detector: Mapping[str, Any] | None = None  # keyword detection settings (docs/manifest.md, "detector")
    tokenizer: Mapping[str, Any] | None = None  # text models: {"type": "bytes"} or {"type": "chars", ...}

    @property
    def input(self) -> TensorSpec:
        return self.inputs[0]

    @property
    def output(self) -> TensorSpec:
        return self.outputs[0]

    def file(self, fmt: str, precision: str) -> ModelFile:
        for entry in self.files:
            if entry.format == fmt and entry.precision == precision:
                return entry
        have = ", ".join(f.key for f in self.files) or "none"
        if fmt == "c":  # C weight files are written from the ONNX graphs, float and int8 alike
            hint = "; run `lstm-edge add-c MODEL_DIR` to write the C weight files"
        elif precision == "int8":
            hint = "; run `lstm-edge quantize MODEL_DIR` to make the int8 files"
        else:
            hint = ""
        raise ModelFileError(f"no {fmt} model at precision {precision!r} in this directory (it has: {have}){hint}")

    def has_file(self, fmt: str, precision: str) -> bool:
        return any(f.format == fmt and f.precision == precision for f in self.files)

    def with_file(self, entry: ModelFile) -> Manifest:
        """A copy with ``entry`` added (replacing any file of the same format and precision)."""
        kept = tuple(f for f in self.files if f.key != entry.key)
        return replace(self, files=kept + (entry,))

    def initial_values(self) -> tuple[np.ndarray, ...]:
        """The initial value of every state tensor, in manifest order (the graph's state inputs)."""
        return tuple(s.initial_value() for s in self.states)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "schema_version": self.schema_version,
            "name": self.name,
            "kind": self.kind,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "states": [s.to_dict() for s in self.states],
            "files": [f.to_dict() for f in self.files],
            "labels": list(self.labels) if self.labels is not None else None,
            "frontend": dict(self.frontend) if self.frontend is not None else None,
            "tolerances": dict(self.tolerances),
            "producer": dict(self.producer),
            "reference": dict(self.reference) if self.reference is not None else None,
            **({"detector": dict(self.detector)} if self.detector is not None else {}),
            **({"tokenizer": dict(self.tokenizer)} if self.tokenizer is not None else {}),
            **({"extra": dict(self.extra)} if self.extra else {}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Manifest:
        if not isinstance(data, Mapping):
            raise ManifestError(expected_got("manifest", "a JSON object", type(data).__name__))
        schema = data.get("schema")
        if schema != SCHEMA:
            raise ManifestError(expected_got("manifest schema", repr(SCHEMA), repr(schema)))
        version = data.get("schema_version")
        if not isinstance(version, int) or version < 1:
            raise ManifestError(expected_got("manifest schema_version", "a positive integer", repr(version)))
        if version > SCHEMA_VERSION:
            raise ManifestError(
                f"manifest schema_version: expected <= {SCHEMA_VERSION} (what this lstm-edge reads), got {version}; "
                "upgrade lstm-edge to load this model")
        schema_validator().validate(data)
        kind = _require(data, "kind", "manifest")
        if kind not in KINDS:
            raise ManifestError(expected_got("manifest kind", f"one of {KINDS}", kind))
        inputs = tuple(TensorSpec.from_dict(t, f"inputs[{i}]")
                       for i, t in enumerate(_require(data, "inputs", "manifest")))
        outputs = tuple(TensorSpec.from_dict(t, f"outputs[{i}]")
                        for i, t in enumerate(_require(data, "outputs", "manifest")))
        if len(inputs) != 1 or len(outputs) != 1:
            raise ManifestError(expected_got("manifest inputs/outputs", "exactly one of each",
                                             f"{len(inputs)} inputs, {len(outputs)} outputs"))
        states = tuple(StateSpec.from_dict(s, f"states[{i}]")
                       for i, s in enumerate(_require(data, "states", "manifest")))
        files = tuple(ModelFile.from_dict(f, f"files[{i}]") for i, f in enumerate(data.get("files", [])))
        labels = data.get("labels")
        classes = outputs[0].shape[-1]
        if labels is not None and isinstance(classes, int) and len(labels) != classes:
            raise ManifestError(expected_got("manifest labels", f"{classes} labels (one per output index)",
                                             f"{len(labels)} labels"))
        tolerances = dict(DEFAULT_TOLERANCES)
        tolerances.update(data.get("tolerances") or {})
        frontend = data.get("frontend")
        if frontend is not None and frontend.get("win_length", 0) > frontend.get("n_fft", 0):
            raise ManifestError(expected_got("manifest frontend.win_length", f"at most n_fft ({frontend['n_fft']})",
                                             frontend["win_length"]))
        tokenizer = data.get("tokenizer")
        if tokenizer is not None:
            from lstm_edge.runtime.tokenizer import Tokenizer

            tokenizer = Tokenizer.from_dict(tokenizer).to_dict()  # validates it
        return cls(kind=kind, inputs=inputs, outputs=outputs, states=states, files=files,
                   name=str(data.get("name", "model")), labels=tuple(labels) if labels is not None else None,
                   frontend=data.get("frontend"), tolerances=tolerances, producer=data.get("producer") or {},
                   reference=data.get("reference"), extra=data.get("extra") or {}, schema_version=version,
                   detector=data.get("detector"), tokenizer=tokenizer)

    @classmethod
    def load(cls, model_dir: str | Path) -> Manifest:
        if not Path(model_dir).is_dir():
            raise ManifestError(expected_got("model directory", "an existing directory", str(model_dir)))
        path = Path(model_dir) / MANIFEST_NAME
        if not path.is_file():
            raise ManifestError(f"{path}: no {MANIFEST_NAME} here; expected a directory written by `lstm-edge export`")
        path = inside_model_dir(model_dir, MANIFEST_NAME, "manifest", ManifestError)
        return cls.from_dict(parse_json(path))

    def save(self, model_dir: str | Path) -> Path:
        path = Path(model_dir) / MANIFEST_NAME
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)
        return path


@functools.lru_cache(maxsize=1)
def schema_validator() -> SchemaValidator:
    """The validator of ``manifest.schema.json`` (loaded once)."""
    return SchemaValidator(json.loads(SCHEMA_FILE.read_text(encoding="utf-8")))


def _refuse_constant(name: str) -> None:
    raise ManifestError(expected_got("manifest numbers", "finite JSON numbers", name))


def parse_json(path: Path) -> Any:
    """The JSON document at ``path``: bounded in size and nesting depth, no NaN/Infinity."""
    size = path.stat().st_size
    if size > MAX_MANIFEST_BYTES:
        raise ManifestError(expected_got(f"{path} size", f"at most {MAX_MANIFEST_BYTES} bytes", f"{size} bytes"))
    try:
        return json.loads(path.read_text(encoding="utf-8"), parse_constant=_refuse_constant)
    except RecursionError:
        raise ManifestError(f"{path}: expected JSON nested at most a few hundred levels deep, got deeper nesting "
                            "(not a manifest written by lstm-edge)") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ManifestError(f"{path}: not valid JSON ({err})") from None


def inside_model_dir(model_dir: str | Path, relpath: str, what: str, error: type[Exception] = ModelFileError) -> Path:
    """``model_dir / relpath``, refused when it (through any symlink) resolves outside ``model_dir``."""
    root = Path(os.path.realpath(model_dir))
    target = Path(os.path.realpath(Path(model_dir) / relpath))
    if target != root and root not in target.parents:
        raise error(expected_got(f"{what} {relpath!r}", f"a file inside the model directory {root}",
                                 "a path that resolves outside it (a symlink?); refused"))
    return target


def check_file(model_dir: str | Path, entry: ModelFile) -> Path:
    """Return the path of ``entry`` after checking it lies inside ``model_dir`` and matches its recorded sha256.

    ONNX files whose tensors live in external data files are refused: the manifest's checksum covers one file.
    """
    if not (Path(model_dir) / entry.path).is_file():
        missing = Path(model_dir) / entry.path
        raise ModelFileError(f"{entry.key} model file {missing} is missing (the manifest lists it)")
    path = inside_model_dir(model_dir, entry.path, f"{entry.key} model file")
    digest = sha256_of(path)
    if digest != entry.sha256:
        raise ModelFileError(f"{Path(model_dir) / entry.path}: checksum mismatch against the manifest's sha256 "
                             "(the file is corrupt or was changed after export)")
    if entry.format == "onnx":
        from lstm_edge.runtime.onnx_scan import external_tensors

        try:
            external = external_tensors(path.read_bytes())
        except ModelFileError as err:
            raise ModelFileError(f"{Path(model_dir) / entry.path}: cannot load this file as ONNX ({err})") from None
        if external:
            shown = ", ".join(external[:3]) + (f" and {len(external) - 3} more" if len(external) > 3 else "")
            raise ModelFileError(expected_got(f"{Path(model_dir) / entry.path}", "every tensor inside the file "
                                              "(the manifest's sha256 covers this one file)",
                                              f"{len(external)} tensors in external data files ({shown}); refused"))
    return path


def check_batch_file(model_dir: str | Path, entry: ModelFile) -> Path:
    """The path of ``entry``'s companion batch file after the checks ``check_file`` makes (inside ``model_dir``,
    recorded sha256)."""
    if entry.batch_file is None:
        raise ModelFileError(f"{entry.key} model file {entry.path} has no batch file (no batch signatures)")
    relpath = entry.batch_file.path
    if not (Path(model_dir) / relpath).is_file():
        raise ModelFileError(f"{entry.key} batch file {Path(model_dir) / relpath} is missing (the manifest lists it)")
    path = inside_model_dir(model_dir, relpath, f"{entry.key} batch file")
    if sha256_of(path) != entry.batch_file.sha256:
        raise ModelFileError(f"{Path(model_dir) / relpath}: checksum mismatch against the manifest's batch_file "
                             "sha256 (the file is corrupt or was changed after export)")
    return path


def check_reference(model_dir: str | Path, reference: Mapping[str, Any], key: str) -> Path:
    """The path of reference array ``key`` ("input", "output", "frontend_input", ...) after its checks."""
    if key not in reference:
        raise ManifestError(f"manifest reference: no {key!r} array in this model directory")
    relpath = str(reference[key])
    path = inside_model_dir(model_dir, relpath, f"reference {key}", ManifestError)
    if not path.is_file() or sha256_of(path) != reference.get(f"{key}_sha256"):
        raise ManifestError(f"{Path(model_dir) / relpath}: reference {key} is missing or does not match its sha256")
    return path


def file_entry(model_dir: str | Path, relpath: str, fmt: str, precision: str, *,
               chunk_sizes: Iterable[int] | None = None, signatures: Mapping[str, str] | None = None,
               quantization: Mapping[str, Any] | None = None, checks: Mapping[str, str] | None = None) -> ModelFile:
    """Describe a file just written into ``model_dir`` (size and checksum computed here)."""
    path = Path(model_dir) / relpath
    return ModelFile(fmt, precision, relpath, sha256_of(path), path.stat().st_size,
                     tuple(chunk_sizes) if chunk_sizes else None, signatures, quantization, checks)


def state_names(states: Sequence[StateSpec]) -> list[str]:
    return [s.name for s in states]


def example_chunk(manifest: Manifest, frames: int, rng: np.random.Generator) -> np.ndarray:
    """A random input chunk of ``frames`` frames (no batch dim) that fits the manifest's input: token ids in the
    valid range, or standard-normal float features. Used to time a model without real data."""
    spec = manifest.input
    shape = tuple(frames if d == TIME else int(d) for d in spec.shape[1:])
    if spec.dtype == "int64":
        low, high = spec.value_range or (0, 2)
        return rng.integers(low, high, size=shape, dtype=np.int64)
    return rng.standard_normal(shape).astype(np.float32)
