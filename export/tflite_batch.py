"""Declare a TFLite file's batch signatures: many streams per LiteRT call (``StreamBatch`` on the LiteRT backend).

``write_tflite_batch(..., batch_sizes=(4, 16))`` writes signatures such as ``chunk_10_b16`` (16 streams stacked on
axis 0, states joined along each state's batch axis) into a companion file beside the one-stream file
(``batch_path_of``: ``model.tflite`` -> ``model.batch.tflite``, ``model.int8.tflite`` -> ``model.int8.batch.tflite``).
They live apart because LiteRT's XNNPACK delegate packs the weights of every signature of a file at its first call:
a process running one stream then pays for the batch signatures too (measured in benchmarks/bench_litert_batch.py).
Whether each stream's results equal a run of its own is checked here, not assumed: every batched signature is run
with random streams and each stream alone through the one-stream file's signature of the same chunk length, and only
the signatures whose every output and state match within ``TOLERANCE`` go into the manifest entry's
``batch_signatures``, with the companion's path, sha256 and size as its ``batch_file``.

The dynamic-range int8 file (``dynamic_wi8_afp32``) qualifies too: its hybrid FULLY_CONNECTED kernels quantize
their input per row (one scale per stream and frame), so a stream's integers do not depend on the other streams;
measured on the shipped keyword spotter, its batched signatures give every stream bit-identical results. A full
integer file (static int8) keeps one signature (see ``quantize.tflite_quant``) and gets none.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from lstm_edge.export.batch_axis import random_streams, state_batch_axis, stream_matches
from lstm_edge.runtime.manifest import MANIFEST_NAME, BatchFile, Manifest, ModelFile

# The recommended streams per call (the keyword spotter recipe's; export() writes none unless asked). Measured on the
# shipped keyword spotter (benchmarks/bench_litert_batch.py, results/litert_batch.json): one call of 4 streams costs
# 0.33-0.52x per stream of a one-stream call, 16 streams 0.20-0.42x, 64 streams at most 11% less than 16, while each
# batch size adds ~50 KB of graph to the companion file (beside its copy of the weights) and, under XNNPACK, another
# copy of the packed weights in the memory of a process that runs batches (one-stream processes never load it).
DEFAULT_BATCH_SIZES = (4, 16)
TOLERANCE = 1e-6
_KEY = re.compile(r"^(?P<key>.+)_b(?P<streams>[0-9]+)$")
BATCH_SUFFIX = ".batch"


def batch_path_of(relpath: str) -> str:
    """The companion file of a one-stream TFLite file: ``model.int8.tflite`` -> ``model.int8.batch.tflite``."""
    path = Path(relpath)
    return str(path.with_name(f"{path.stem}{BATCH_SUFFIX}{path.suffix}"))


def batch_signatures_in(signature_keys: list[str], entry: ModelFile) -> dict[int, dict[int, str]]:
    """``{streams: {chunk length: key}}`` of the batched signatures in a file, found by key (``chunk_10_b16`` is
    the 16-stream twin of the entry's ``chunk_10``)."""
    by_key = {key: int(length) for length, key in (entry.signatures or {}).items() if length.isdigit()}
    found: dict[int, dict[int, str]] = {}
    for key in signature_keys:
        match = _KEY.match(key)
        if match and match["key"] in by_key and int(match["streams"]) >= 2:
            found.setdefault(int(match["streams"]), {})[by_key[match["key"]]] = key
    return found


def declare_tflite_batch(model_dir: str | Path) -> Manifest:
    """Check the batched signatures of the directory's TFLite companion files (``batch_path_of``) and declare those
    that compute every stream on its own (see the module's docstring); returns the (saved) manifest. A companion
    none of whose signatures pass is deleted (the manifest never lists it). Entries already declaring some, step
    models and entries without a companion are left as they are."""
    model_dir = Path(model_dir)
    manifest = Manifest.load(model_dir)
    if manifest.kind != "sequence" or not manifest.states:
        return manifest
    axes = [spec.batch_axis if spec.batch_axis is not None else state_batch_axis(spec) for spec in manifest.states]
    if None in axes:
        return manifest
    declared: dict[str, tuple[dict[str, dict[str, str]], BatchFile]] = {}
    for entry in manifest.files:
        companion = batch_path_of(entry.path)
        if (entry.format != "tflite" or entry.batch_signatures is not None or not entry.signatures
                or not (model_dir / companion).is_file()):
            continue
        verified = _independent_signatures(model_dir / entry.path, model_dir / companion, manifest, entry,
                                           axes)  # type: ignore[arg-type]
        if verified:
            table = {str(n): {str(length): key for length, key in sorted(keys.items(), reverse=True)}
                     for n, keys in sorted(verified.items())}
            declared[entry.path] = (table, BatchFile.of(model_dir, companion))
        else:
            (model_dir / companion).unlink()
    if not declared:
        return manifest
    # Only these fields change: the rest of manifest.json stays as written.
    raw = json.loads((model_dir / MANIFEST_NAME).read_text(encoding="utf-8"))
    for state, axis in zip(raw["states"], axes):
        state["batch_axis"] = axis
    for record in raw["files"]:
        if record["format"] == "tflite" and record["path"] in declared:
            record["batch_signatures"], batch_file = declared[record["path"]]
            record["batch_file"] = batch_file.to_dict()
    (model_dir / MANIFEST_NAME).write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
    return Manifest.load(model_dir)


def _independent_signatures(path: Path, companion: Path, manifest: Manifest, entry: ModelFile,
                            axes: list[int]) -> dict[int, dict[int, str]]:
    """The batched signatures of ``companion`` whose every stream matches a run of its own through the one-stream
    file ``path`` (float I/O files only)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreters = {key: Interpreter(model_path=str(file), num_threads=1)
                    for key, file in (("one", path), ("batch", companion))}
    keys = list(interpreters["batch"].get_signature_list())
    found = batch_signatures_in(keys, entry)
    if not found:
        return {}
    one_stream = {int(length): key for length, key in entry.signatures.items()}  # type: ignore[union-attr]
    spec = manifest.input
    names_in = [spec.name, *(s.input for s in manifest.states)]
    names_out = [manifest.output.name, *(s.output for s in manifest.states)]
    runners: dict[str, Any] = {}

    def run(key: str, values: list[np.ndarray]) -> list[np.ndarray]:
        interpreter = interpreters["batch" if key in keys else "one"]
        runner = runners.get(key) or runners.setdefault(key, interpreter.get_signature_runner(key))
        details = runner.get_input_details()
        if any(np.dtype(details[name]["dtype"]) != value.dtype for name, value in zip(names_in, values)
               if value.dtype.kind == "f"):
            raise TypeError("quantized inputs")
        feed = {name: value.astype(details[name]["dtype"]) for name, value in zip(names_in, values)}
        results = runner(**feed)
        return [np.asarray(results[name]) for name in names_out]

    rng = np.random.default_rng(0)
    verified: dict[int, dict[int, str]] = {}
    for streams, by_length in found.items():
        for length, key in by_length.items():
            x, states = random_streams(manifest, axes, streams, length, rng)
            try:
                together = run(key, [x, *states])
                ok = all(stream_matches(together, run(one_stream[length], [x[k:k + 1], *(
                    np.take(v, [k], axis=a) for v, a in zip(states, axes))]), k, axes) for k in range(streams))
            except (TypeError, ValueError, RuntimeError):
                ok = False
            if ok:
                verified.setdefault(streams, {})[length] = key
    return verified
