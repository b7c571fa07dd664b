"""One quantizer per model format behind one interface, looked up by the file's format."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from lstm_edge.quantize.calibration import Calibration
from lstm_edge.quantize.config import QuantizeConfig
from lstm_edge.quantize.layers import WeightLayer
from lstm_edge.runtime.errors import InputError, expected_got
from lstm_edge.runtime.manifest import Manifest, ModelFile


class Quantizer(Protocol):
    """Writes an int8 file from a float one (``float_layers`` kept float) and returns what the manifest records
    about it."""

    format: str
    granularities: tuple[str, ...]  # weight-scale choices of dynamic mode, the default first

    def layers(self, src: Path) -> list[WeightLayer]:
        """The layers of the float file that ``quantize`` can be told to keep float."""
        ...

    def quantize(self, src: Path, dst: Path, config: QuantizeConfig, calibration: Calibration | None,
                 manifest: Manifest, entry: ModelFile, float_layers: Sequence[WeightLayer] = (),
                 granularity: str | None = None) -> dict[str, Any]: ...


# Formats whose int8 file is written beside the float one by their own exporter (``lstm-edge add-c``).
QUANTIZED_ELSEWHERE: frozenset[str] = frozenset({"c"})


def _registry() -> dict[str, Quantizer]:
    from lstm_edge.quantize.onnx_quant import OnnxQuantizer
    from lstm_edge.quantize.tflite_quant import TFLiteQuantizer

    return {q.format: q for q in (OnnxQuantizer(), TFLiteQuantizer())}


def quantizer_for(fmt: str) -> Quantizer:
    quantizers = _registry()
    if fmt not in quantizers:
        hint = " (C weight files get their int8 twin from `lstm-edge add-c`)" if fmt in QUANTIZED_ELSEWHERE else ""
        raise InputError(expected_got("model format to quantize", sorted(quantizers), repr(fmt)) + hint)
    return quantizers[fmt]
