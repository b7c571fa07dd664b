"""Host-side int8 quantization of a model directory, file in and file out.

    from lstm_edge.quantize import quantize
    quantize("model_dir")                                          # dynamic: int8 weights, float state
    quantize("model_dir", calibration=sequences, mode="static")    # calibrated on streams with the state carried

Writes ``model.int8.onnx`` / ``model.int8.tflite`` beside the float files and records them in the manifest.
``calibration`` is any iterable of inputs without the batch dim; sequences are streamed with the state carried,
so the ranges gathered for the state are the ones a real stream reaches. One quantizer per format
(``lstm_edge.quantize.formats.QUANTIZERS``) does the work behind one interface.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from lstm_edge.quantize.config import INT8_NAMES, QuantizeConfig, QuantizeMode
from lstm_edge.quantize.mixed import REPORT_NAME, MixedPrecisionError, quantize_mixed
from lstm_edge.runtime.errors import InputError, QuantizationError, expected_got
from lstm_edge.runtime.manifest import Manifest, ModelFile, check_batch_file, check_file, file_entry

__all__ = ["quantize", "MixedPrecisionError", "QuantizeMode", "QuantizeConfig", "QuantizationError", "INT8_NAMES"]


def quantize(model_dir: str | Path, calibration: Iterable[np.ndarray] | None = None,
             mode: str | QuantizeMode = "dynamic", formats: Sequence[str] | None = None, *, mixed: bool = True,
             max_float_fraction: float = 0.5, report: bool = False) -> Path:
    """Quantize every float model file of ``model_dir`` (or only ``formats``) to int8; returns ``model_dir``.

    Dynamic mode with ``mixed`` (the default) keeps float the fewest layers that bring the file within its gate
    (``lstm_edge.quantize.mixed``), measured on ``calibration`` when given, else on the reference input; it raises
    ``MixedPrecisionError`` (a ``QuantizationError``) naming the layers int8 cannot hold when no mix keeping at most
    ``max_float_fraction`` of the weights float meets it. The per-layer analysis is written to ``sensitivity.json``
    (``report``: every layer measured both ways).
    """
    from lstm_edge.quantize.calibration import Calibration, check_sequences
    from lstm_edge.quantize.formats import QUANTIZED_ELSEWHERE, quantizer_for

    try:
        mode = QuantizeMode(mode)
    except ValueError:
        raise InputError(expected_got("mode", "'dynamic' or 'static'", repr(mode))) from None
    if not 0.0 <= max_float_fraction < 1.0:
        raise InputError(expected_got("max_float_fraction", "a fraction in [0, 1)", max_float_fraction))
    config = QuantizeConfig(mode=mode, formats=tuple(formats) if formats else None, mixed=mixed,
                            max_float_fraction=max_float_fraction, report=report)
    model_dir = Path(model_dir)
    manifest = Manifest.load(model_dir)
    # C weight files come in pairs from the float ONNX graph (export / add-c): not quantized here unless asked
    targets = [f for f in manifest.files if f.precision == "float"
               and (f.format in config.formats if config.formats else f.format not in QUANTIZED_ELSEWHERE)]
    if not targets:
        raise InputError(expected_got("model files to quantize", f"float files of formats {config.formats or 'any'}",
                                      [f.key for f in manifest.files]))
    if mode is QuantizeMode.STATIC and calibration is None:
        raise InputError("static quantization needs calibration data: pass calibration= an iterable of realistic "
                         "inputs (no batch dim), e.g. a few hundred training-like utterances; dynamic mode needs none")
    sequences = (check_sequences(calibration, manifest, config.min_calibration_frames)
                 if calibration is not None else None)
    recorded = (Calibration(model_dir, sequences, config)
                if sequences is not None and mode is QuantizeMode.STATIC else None)
    for entry in targets:
        check_file(model_dir, entry)
        if entry.batch_file is not None:
            check_batch_file(model_dir, entry)
    analyses = []
    for entry in targets:
        quantizer = quantizer_for(entry.format)
        out_name = INT8_NAMES[entry.format]
        if mode is QuantizeMode.DYNAMIC and config.mixed:
            try:
                info, analysis = quantize_mixed(model_dir, entry, manifest, model_dir / out_name, config, sequences,
                                                report=report)
            except MixedPrecisionError as err:
                analyses.append(err.analysis)
                _write_report(model_dir / REPORT_NAME, analyses)
                raise
            analyses.append(analysis.to_dict())
            _write_report(model_dir / REPORT_NAME, analyses)
        else:
            info = quantizer.quantize(model_dir / entry.path, model_dir / out_name, config, recorded, manifest, entry)
        kept = info.get("signatures_kept")  # a quantizer that keeps fewer signatures than the float file says so
        chunk_sizes = sorted(int(k) for k in kept) if kept else entry.chunk_sizes
        new_entry = file_entry(model_dir, out_name, entry.format, "int8", chunk_sizes=chunk_sizes,
                               signatures=dict(kept) if kept else entry.signatures, quantization=info,
                               checks=entry.checks)
        manifest = manifest.with_file(new_entry)
        manifest.save(model_dir)
        _quantize_batch_file(model_dir, entry, new_entry, manifest)
    if any(entry.format == "tflite" for entry in targets):
        from lstm_edge.export.tflite_batch import declare_tflite_batch

        declare_tflite_batch(model_dir)  # batched signatures the int8 file kept, checked stream by stream
    return model_dir


def _quantize_batch_file(model_dir: Path, entry: ModelFile, int8_entry: ModelFile, manifest: Manifest) -> None:
    """The int8 companion of a dynamic int8 TFLite file whose float file has batch signatures (declared afterwards
    by ``declare_tflite_batch``, stream by stream); any older one is removed first, since its weights may differ."""
    from lstm_edge.export.tflite_batch import batch_path_of
    from lstm_edge.quantize.tflite_quant import quantize_batch_companion

    if entry.format != "tflite":
        return
    companion = model_dir / batch_path_of(int8_entry.path)
    companion.unlink(missing_ok=True)
    if entry.batch_file is None or (int8_entry.quantization or {}).get("mode") != "dynamic":
        return  # a static file keeps one signature
    quantize_batch_companion(model_dir / entry.batch_file.path, model_dir / int8_entry.path, companion,
                             int8_entry.quantization or {}, [(s.input, s.output) for s in manifest.states])


def _write_report(path: Path, analyses: list[dict]) -> None:
    import json

    path.write_text(json.dumps({"files": analyses}, indent=2) + "\n")
