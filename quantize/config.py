"""The typed configuration of a quantization run."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class QuantizeMode(str, Enum):
    DYNAMIC = "dynamic"  # int8 weights, float activations and state
    STATIC = "static"  # int8 weights and activations, calibrated (TFLite: full integer, including the state I/O)


@dataclass(frozen=True)
class QuantizeConfig:
    mode: QuantizeMode = QuantizeMode.DYNAMIC
    formats: tuple[str, ...] | None = None  # None: every float file in the directory
    max_calibration_feeds: int = 2000  # per chunk length; an even spread over time is kept beyond this
    onnx_calibration_chunk: int = 10  # ONNX has a dynamic time axis: calibrate at this chunk length
    min_calibration_frames: int = 100  # refuse less: ranges from a second of audio describe no stream
    mixed: bool = True  # dynamic mode: keep the layers that break the gate float (lstm_edge.quantize.mixed)
    max_float_fraction: float = 0.5  # a mix keeping more of the weights float than this is refused, not "int8"
    report: bool = False  # measure every layer both ways (the sensitivity table), not only what the search needs


INT8_NAMES = {"onnx": "model.int8.onnx", "tflite": "model.int8.tflite"}
