"""Host-side int8 quantization of a model directory, file in and file out.

    from lstm_edge.quantize import quantize
    quantize("model_dir")                                          # dynamic: int8 weights, float state
    quantize("model_dir", calibration=sequences, mode="static")    # full integer (TFLite), calibrated on streams

Writes ``model.int8.onnx`` / ``model.int8.tflite`` beside the float files and records them in the manifest.
``calibration`` is any iterable of inputs without the batch dim; sequences are streamed with the state carried,
so the ranges gathered for the state are the ones a real stream reaches.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from lstm_edge.runtime.errors import InputError, QuantizationError, expected_got
from lstm_edge.runtime.manifest import Manifest, check_file, file_entry

__all__ = ["quantize", "QuantizeMode", "QuantizeConfig", "QuantizationError"]


class QuantizeMode(str, Enum):
    DYNAMIC = "dynamic"  # int8 weights, float activations and state
    STATIC = "static"  # int8 weights and activations, calibrated (TFLite: full integer, including the state I/O)


@dataclass(frozen=True)
class QuantizeConfig:
    mode: QuantizeMode = QuantizeMode.DYNAMIC
    formats: tuple[str, ...] | None = None  # None: every float file in the directory
    max_calibration_feeds: int = 2000


INT8_NAMES = {"onnx": "model.int8.onnx", "tflite": "model.int8.tflite"}


def quantize(model_dir: str | Path, calibration: Iterable[np.ndarray] | None = None,
             mode: str | QuantizeMode = "dynamic", formats: Sequence[str] | None = None) -> Path:
    """Quantize every float model file of ``model_dir`` (or only ``formats``) to int8; returns ``model_dir``."""
    try:
        mode = QuantizeMode(mode)
    except ValueError:
        raise InputError(expected_got("mode", "'dynamic' or 'static'", repr(mode))) from None
    config = QuantizeConfig(mode=mode, formats=tuple(formats) if formats else None)
    model_dir = Path(model_dir)
    manifest = Manifest.load(model_dir)
    targets = [f for f in manifest.files if f.precision == "float"
               and (config.formats is None or f.format in config.formats)]
    if not targets:
        raise InputError(expected_got("model files to quantize", f"float files of formats {config.formats or 'any'}",
                                      [f.key for f in manifest.files]))
    if mode is QuantizeMode.STATIC and calibration is None:
        raise InputError("static quantization needs calibration data: pass calibration= an iterable of realistic "
                         "inputs (no batch dim), e.g. a few hundred frames from real recordings; dynamic mode needs none")
    sequences = list(calibration) if calibration is not None else None
    for entry in targets:
        check_file(model_dir, entry)
    state_inputs = [s.input for s in manifest.states]
    for entry in targets:
        out_name = INT8_NAMES[entry.format]
        if entry.format == "onnx":
            from lstm_edge.quantize.calibration import record_feeds
            from lstm_edge.quantize.onnx_quant import quantize_onnx

            feeds = None
            if sequences is not None and mode is QuantizeMode.STATIC:
                feeds = record_feeds(model_dir, sequences, [10], config.max_calibration_feeds)[10]
            info = quantize_onnx(model_dir / entry.path, model_dir / out_name, mode.value, feeds, state_inputs)
            new_entry = file_entry(model_dir, out_name, "onnx", "int8", quantization=info, checks=entry.checks)
        else:
            from lstm_edge.quantize.calibration import record_feeds
            from lstm_edge.quantize.tflite_quant import quantize_tflite

            calibration_by_signature = None
            if sequences is not None and mode is QuantizeMode.STATIC:
                lengths = entry.chunk_sizes or [1]
                feeds = record_feeds(model_dir, sequences, lengths, config.max_calibration_feeds)
                signatures = entry.signatures or {}
                calibration_by_signature = {signatures.get(str(length), "step"): feeds[length] for length in feeds}
            info = quantize_tflite(model_dir / entry.path, model_dir / out_name, mode.value, calibration_by_signature)
            new_entry = file_entry(model_dir, out_name, "tflite", "int8", chunk_sizes=entry.chunk_sizes,
                                   signatures=entry.signatures, quantization=info, checks=entry.checks)
        manifest = manifest.with_file(new_entry)
        manifest.save(model_dir)
    return model_dir
