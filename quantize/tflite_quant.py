"""int8 quantization of a streaming ``.tflite`` file with ai-edge-quantizer, and the structural facts to check it.

Two modes, each writing one file that keeps every signature of the float file and shares one set of weights:

* ``dynamic``: int8 weights, float32 activations (recipe ``dynamic_wi8_afp32``). Inputs, outputs and the carried
  state stay float32, so a stream runs it exactly like the float file.
* ``static``: int8 weights and activations (recipe ``static_wi8_ai8``). Every signature input and output, the
  state included, becomes int8 with its own (scale, zero point); a stream quantizes what it feeds and dequantizes
  what it reads. The activation ranges come from calibration feeds with realistic carried state, merged with a
  running min/max: ai-edge-quantizer's default merge is a moving average (0.95 old, 0.05 new), which pulls the
  range towards the first samples' (a stream starts from zero state) and clips the state a stream reaches later.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lstm_edge.quantize.tflite_inspect import count_tflite_ops, signature_io
from lstm_edge.runtime.errors import QuantizationError, expected_got

if TYPE_CHECKING:
    from lstm_edge.quantize.calibration import Calibration
    from lstm_edge.quantize.config import QuantizeConfig
    from lstm_edge.runtime.manifest import Manifest, ModelFile

__all__ = ["quantize_tflite", "TFLiteQuantizer", "count_tflite_ops", "signature_io"]

MODES = ("dynamic", "static")
RECIPES = {"dynamic": "dynamic_wi8_afp32", "static": "static_wi8_ai8"}
# Dynamic mode keeps DEPTHWISE_CONV_2D's compute float, its int8 kernel dequantized by a DEQUANTIZE op at load:
# LiteRT's hybrid (int8-weight, float-activation) depthwise kernel gave different outputs from run to run of one
# input here, NaN in some runs (tests/test_conv_export.py repeats runs of such a file).
DYNAMIC_FLOAT_COMPUTE_OPS = ("DEPTHWISE_CONV_2D",)
CALIBRATION_UPDATE = "running min/max (ai_edge_quantizer.utils.qsv_utils.min_max_update)"

def quantize_tflite(float_path: Path, out_path: Path, mode: str,
                    calibration: Mapping[str, Sequence[Mapping[str, np.ndarray]]] | None = None, *,
                    states: Sequence[tuple[str, str]] | None = None) -> dict[str, Any]:
    """Quantize the float ``.tflite`` at ``float_path`` to int8 and write it to ``out_path``.

    ``mode`` is ``"dynamic"`` (int8 weights, float I/O) or ``"static"`` (int8 weights and activations, int8 I/O).
    ``calibration`` (static only) maps every signature key of the file to a list of feeds ``{input name: array}``
    with realistic carried state; ``states`` (static only) lists the (state input, state output) name pairs, from
    the manifest's ``states``. Returns the manifest record ``{"mode", "tool", "recipe", "calibration_chunks",
    "io_dtype", "float_bytes", "quantized_bytes", "state_ranges" and "io_quantization" (static), "notes"}``.
    Raises ``QuantizationError`` when quantization fails or the result does not pass its structural checks;
    ``out_path`` is then left untouched.
    """
    float_path, out_path = Path(float_path), Path(out_path)
    if mode not in MODES:
        raise QuantizationError(expected_got("quantization mode", " or ".join(repr(m) for m in MODES), repr(mode)))
    if mode == "dynamic" and calibration:
        raise QuantizationError(expected_got("calibration for mode 'dynamic'", "None (weights only, no activation "
                                             "ranges)", f"{len(calibration)} signatures of feeds"))
    aeq = _import_quantizer()
    float_io = signature_io(float_path)
    if not float_io:
        raise QuantizationError(expected_got(f"{float_path}: signatures", "at least one (chunk_10, chunk_1 ...)",
                                             "none"))
    float_bytes = float_path.read_bytes()
    recipe = getattr(aeq.recipe, RECIPES[mode])()
    if mode == "dynamic":
        # One scale per weight tensor instead of per output channel. On a 154k-parameter keyword spotter:
        # file 31% of float instead of 37%, argmax agreement with torch 99.65% instead of 99.88%, clip accuracy equal.
        for rule in recipe:
            rule["op_config"]["weight_tensor_config"]["granularity"] = "TENSORWISE"
        for op in DYNAMIC_FLOAT_COMPUTE_OPS:
            rule = copy.deepcopy(recipe[0])
            rule["operation"] = op
            rule["op_config"].update(explicit_dequantize=True, compute_precision="FLOAT")
            recipe.append(rule)

    calibration_result = None
    feeds = None
    if mode == "static":
        if not states:
            raise QuantizationError(expected_got("states for mode 'static'", "(state input, state output) name pairs "
                                                 "from the manifest", states))
        feeds = _check_calibration(calibration, float_io, float_path)
        calibration_result = _calibrate(aeq, float_bytes, recipe, feeds)

    try:
        quantizer = aeq.quantizer.Quantizer(bytearray(float_bytes), recipe)
        result = quantizer.quantize(calibration_result, enable_progress_bar=False, enable_progress_report=False)
    except Exception as err:  # the quantizer raises ValueError/RuntimeError/KeyError from deep inside
        raise QuantizationError(f"ai-edge-quantizer {RECIPES[mode]} failed on {float_path}: "
                                f"{type(err).__name__}: {err}") from err
    if not result.quantized_model:
        raise QuantizationError(f"ai-edge-quantizer {RECIPES[mode]} returned no model for {float_path}")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    staged = out_path.with_name(out_path.name + ".partial")
    staged.write_bytes(bytes(result.quantized_model))
    try:
        _check_structure(count_tflite_ops(staged), count_tflite_ops(float_path), float_io, mode, out_path)
        state_ranges = _check_state_ranges(staged, out_path, feeds, states or []) if feeds is not None else None
        quantized_io = signature_io(staged)
        staged.replace(out_path)
    finally:
        staged.unlink(missing_ok=True)
    record: dict[str, Any] = {
        "mode": mode,
        "tool": f"ai-edge-quantizer {aeq.version}",
        "recipe": RECIPES[mode],
        "weight_granularity": "tensorwise" if mode == "dynamic" else "channelwise",
        "calibration_chunks": 0 if feeds is None else sum(len(v) for v in feeds.values()),
        "io_dtype": "int8" if mode == "static" else "float32",
        "float_bytes": len(float_bytes),
        "quantized_bytes": out_path.stat().st_size,
        "notes": ("int8 weights, float32 activations and I/O; the state loop is unchanged; depthwise "
                  "convolutions compute in float from their int8 kernels (dequantized at load)"
                  if mode == "dynamic" else
                  "int8 weights and activations; every signature input/output (state included) is int8 with the "
                  "per-tensor scale/zero point of the file; activation ranges merged with " + CALIBRATION_UPDATE),
    }
    if mode == "static":
        record["state_ranges"] = state_ranges
        record["io_quantization"] = {
            key: {name: {"dtype": spec["dtype"], "scale": spec["scale"], "zero_point": spec["zero_point"]}
                  for side in ("inputs", "outputs") for name, spec in sig[side].items()}
            for key, sig in quantized_io.items()}
    return record


@dataclass(frozen=True)
class _Aeq:
    """The ai-edge-quantizer modules used here."""

    quantizer: Any
    recipe: Any
    recipe_manager: Any
    calibrator: Any
    qsv_utils: Any
    version: str


def _import_quantizer() -> _Aeq:
    try:
        from importlib.metadata import version

        from ai_edge_quantizer import calibrator, quantizer, recipe, recipe_manager
        from ai_edge_quantizer.utils import qsv_utils
    except ImportError as err:
        raise QuantizationError(f"TFLite quantization needs ai-edge-quantizer ({err}); install it with: "
                                "pip install 'lstm-edge[tflite]'") from None
    return _Aeq(quantizer, recipe, recipe_manager, calibrator, qsv_utils, version("ai-edge-quantizer"))


def _check_calibration(calibration: Mapping[str, Sequence[Mapping[str, np.ndarray]]] | None,
                       float_io: dict[str, Any], path: Path) -> dict[str, list[dict[str, np.ndarray]]]:
    """The calibration feeds as float32 arrays, after checking they cover every signature with its inputs."""
    if not calibration:
        raise QuantizationError(expected_got("calibration for mode 'static'", "{signature: [feeds with carried "
                                             "state]} for every signature", calibration))
    if not isinstance(calibration, Mapping) or set(calibration) != set(float_io):
        got = sorted(calibration) if isinstance(calibration, Mapping) else type(calibration).__name__
        raise QuantizationError(expected_got(f"{path}: calibrated signatures (every signature must be calibrated "
                                             "or it stays unquantized)", sorted(float_io), got))
    feeds: dict[str, list[dict[str, np.ndarray]]] = {}
    for key, samples in calibration.items():
        inputs = float_io[key]["inputs"]
        samples = list(samples)
        if not samples:
            raise QuantizationError(expected_got(f"calibration feeds of signature {key!r}", "at least one", 0))
        feeds[key] = []
        for number, feed in enumerate(samples):
            where = f"calibration feed {number} of signature {key!r}"
            if not isinstance(feed, Mapping) or set(feed) != set(inputs):
                got = sorted(feed) if isinstance(feed, Mapping) else type(feed).__name__
                raise QuantizationError(expected_got(f"{where}: input names", sorted(inputs), got))
            checked = {}
            for name, spec in inputs.items():
                value = np.asarray(feed[name])
                if list(value.shape) != spec["shape"]:
                    raise QuantizationError(expected_got(f"{where}: shape of {name!r}", spec["shape"],
                                                         list(value.shape)))
                if spec["dtype"] == "float32":
                    if not np.issubdtype(value.dtype, np.floating) or not np.all(np.isfinite(value)):
                        raise QuantizationError(expected_got(f"{where}: {name!r}", "finite float values",
                                                             f"dtype {value.dtype}, finite: "
                                                             f"{bool(np.all(np.isfinite(value)))}"))
                    value = value.astype(np.float32)
                else:
                    value = value.astype(spec["dtype"])
                checked[name] = value
            feeds[key].append(checked)
    return feeds


def _calibrate(aeq: _Aeq, float_bytes: bytes, recipe: Any,
               feeds: dict[str, list[dict[str, np.ndarray]]]) -> dict[str, Any]:
    """Activation ranges of every tensor over all feeds, merged with a running min/max.

    ``Quantizer.calibrate`` offers no choice of merge rule (it always takes the moving average); its
    ``Calibrator`` takes ``qsv_update_func``, and the resulting ranges feed ``Quantizer.quantize`` unchanged.
    """
    try:
        manager = aeq.recipe_manager.RecipeManager()
        manager.load_quantization_recipe(recipe)
        # The profiler-based mode records min/max in C++ (30x faster here than preserving every tensor for
        # Python, same ranges); both modes merge samples with ``qsv_update_func``.
        calibrator = aeq.calibrator.Calibrator(
            bytearray(float_bytes), num_threads=1,
            mode=aeq.calibrator.CalibrationMode.CALIBRATION_PROFILER_BASED,
            qsv_update_func=aeq.qsv_utils.min_max_update)
        calibrator.calibrate(feeds, manager)
        return calibrator.get_model_qsvs()
    except Exception as err:
        raise QuantizationError(f"ai-edge-quantizer calibration failed: {type(err).__name__}: {err}") from err


def _check_structure(facts: dict[str, Any], float_facts: dict[str, Any], float_io: dict[str, Any], mode: str,
                     path: Path) -> None:
    """Refuse a result that dropped a signature, left a FULLY_CONNECTED float, duplicated weights, or (static)
    kept float I/O."""
    if set(facts["signatures"]) != set(float_io):
        raise QuantizationError(expected_got(f"{path}: signatures", sorted(float_io), sorted(facts["signatures"])))
    for key, sig in facts["signatures"].items():
        fc = sig["ops"].get("FULLY_CONNECTED", {})
        if not fc or fc.get("int8_weights", 0) != fc.get("count", 0):
            raise QuantizationError(expected_got(f"{path}: signature {key!r} FULLY_CONNECTED ops with int8 weights",
                                                 f"all {fc.get('count', 0)} (and at least one)",
                                                 fc.get("int8_weights", 0)))
        if mode == "static":
            float_io_names = {n: d for side in ("inputs", "outputs") for n, d in sig[side].items()
                              if d != "int8" and float_io[key][side].get(n, {}).get("dtype") == "float32"}
            if float_io_names:
                raise QuantizationError(expected_got(f"{path}: signature {key!r} input/output dtypes",
                                                     "int8 for every float input/output", float_io_names))
            not_integer = {op: c["count"] - c["integer"] for op, c in sig["ops"].items()
                           if c["count"] != c["integer"] and op not in ("QUANTIZE", "DEQUANTIZE")}
            if not_integer:
                raise QuantizationError(expected_got(f"{path}: signature {key!r} float ops in a static int8 file",
                                                     "none", not_integer))
        else:
            float_io_names = {n: d for side in ("inputs", "outputs") for n, d in sig[side].items()
                              if d != float_io[key][side][n]["dtype"]}
            if float_io_names:
                raise QuantizationError(expected_got(f"{path}: signature {key!r} input/output dtypes (dynamic keeps "
                                                     "them)", "as in the float file", float_io_names))
    float_weights = sum(float_facts["weight_operand_buffers"].values())
    int8_weights = facts["weight_operand_buffers"].get("int8", 0)
    if int8_weights != float_weights or set(facts["weight_operand_buffers"]) != {"int8"}:
        raise QuantizationError(expected_got(f"{path}: weight matrices (one int8 buffer per float one; more means the "
                                             "signatures no longer share them)", f"{float_weights} int8",
                                             facts["weight_operand_buffers"]))
    if float_facts["shared_weight_buffers"] and not facts["shared_weight_buffers"]:
        raise QuantizationError(expected_got(f"{path}: weight buffers shared by the signatures",
                                             f"some (the float file shares {float_facts['shared_weight_buffers']})",
                                             0))


def _check_state_ranges(staged: Path, path: Path, feeds: dict[str, list[dict[str, np.ndarray]]],
                        states: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """Per signature and state: the int8 range of the state input and output against the calibration data's
    min/max. Raises when the data falls outside by more than half a step (the stream would clip its state)."""
    quantized_io = signature_io(staged)
    ranges: dict[str, Any] = {}
    for key, samples in feeds.items():
        io = quantized_io[key]
        pairs = dict(states)
        missing = [n for pair in pairs.items() for n in pair if n not in io["inputs"] and n not in io["outputs"]]
        if missing:
            raise QuantizationError(expected_got(f"{path}: signature {key!r} state inputs/outputs of the manifest",
                                                 sorted(n for pair in pairs.items() for n in pair),
                                                 sorted([*io["inputs"], *io["outputs"]])))
        ranges[key] = {}
        for state_in, state_out in pairs.items():
            data = np.concatenate([np.ravel(feed[state_in]) for feed in samples])
            data_low, data_high = float(data.min()), float(data.max())
            entry: dict[str, Any] = {"calibration_data": [data_low, data_high]}
            for side, name in (("inputs", state_in), ("outputs", state_out)):
                spec = io[side][name]
                if spec["scale"] is None:
                    raise QuantizationError(expected_got(f"{path}: signature {key!r} {name!r} quantization",
                                                         "a scale and zero point", "none"))
                scale, zero = spec["scale"], spec["zero_point"]
                low, high = (-128 - zero) * scale, (127 - zero) * scale
                entry[name] = {"scale": scale, "zero_point": zero, "range": [low, high]}
                if data_low < low - scale / 2 or data_high > high + scale / 2:
                    raise QuantizationError(expected_got(
                        f"{path}: signature {key!r} {name!r} int8 range (calibration would clip the state)",
                        f"to cover the calibration data [{data_low:.4g}, {data_high:.4g}]",
                        f"[{low:.4g}, {high:.4g}] (scale {scale:.4g}, zero point {zero})"))
            ranges[key][state_in[:-3] if state_in.endswith("_in") else state_in] = entry
    return ranges


class TFLiteQuantizer:
    """ai-edge-quantizer on the TFLite file; static calibrates every signature at its own chunk length."""

    format = "tflite"

    def quantize(self, src: Path, dst: Path, config: QuantizeConfig, calibration: Calibration | None,
                 manifest: Manifest, entry: ModelFile) -> dict[str, Any]:
        mode = config.mode.value
        by_signature = None
        if calibration is not None and mode == "static":
            signatures = entry.signatures or {}
            lengths = entry.chunk_sizes or [1]
            by_signature = {signatures.get(str(length), "step"): calibration.feeds(length) for length in lengths}
        return quantize_tflite(src, dst, mode, by_signature,
                               states=[(s.input, s.output) for s in manifest.states])
