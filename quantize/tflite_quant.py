"""int8 quantization of a streaming ``.tflite`` file with ai-edge-quantizer, and the structural facts to check it.

Two modes, each writing one file with one set of weights:

* ``dynamic``: int8 weights, float32 activations (recipe ``dynamic_wi8_afp32``), every signature of the float
  file. Inputs, outputs and the carried state stay float32, so a stream runs it exactly like the float file.
* ``static``: full integer, the one-frame signature only (``TFLiteQuantizer`` says why). Every FULLY_CONNECTED is
  int8 x int8 (per-tensor weight scales); every other op (the gates' LOGISTIC/TANH, the MUL/ADD of the cell state,
  the state itself) has int16 activations (``_static_recipe`` says why). Every signature input and output becomes
  int16 or int8 with its own (scale, zero point); a stream quantizes what it feeds and dequantizes what it reads.
  The activation ranges come from calibration feeds with realistic carried state, merged with a running min/max:
  ai-edge-quantizer's default merge is a moving average (0.95 old, 0.05 new), which pulls the range towards the
  first samples' (a stream starts from zero state) and clips the state a stream reaches later. FULLY_CONNECTED
  inputs that share weights (the unrolled steps of a signature) get one range, so their shared int32 bias has one
  quantization.
"""

from __future__ import annotations

import copy
import logging
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lstm_edge.quantize.layers import WeightLayer
from lstm_edge.quantize.tflite_inspect import count_tflite_ops, fc_bias_mismatches, signature_io
from lstm_edge.runtime.errors import QuantizationError, expected_got

if TYPE_CHECKING:
    from lstm_edge.quantize.calibration import Calibration
    from lstm_edge.quantize.config import QuantizeConfig
    from lstm_edge.runtime.manifest import Manifest, ModelFile

__all__ = ["quantize_tflite", "TFLiteQuantizer", "count_tflite_ops", "signature_io"]

MODES = ("dynamic", "static")
RECIPES = {"dynamic": "dynamic_wi8_afp32", "static": "static_wi8_ai16 with FULLY_CONNECTED static_wi8_ai8"}
STATIC_WEIGHT_GRANULARITY = "TENSORWISE"  # vs CHANNELWISE on the shipped KWS: file 32% of float instead of 43%,
# worst argmax agreement over chunkings 98.4% instead of 98.2%, validation accuracy -0.3 instead of +0.2 points
# Dynamic mode keeps DEPTHWISE_CONV_2D's compute float, its int8 kernel dequantized by a DEQUANTIZE op at load:
# LiteRT's hybrid (int8-weight, float-activation) depthwise kernel gave different outputs from run to run of one
# input here, NaN in some runs (tests/test_conv_export.py repeats runs of such a file).
DYNAMIC_FLOAT_COMPUTE_OPS = ("DEPTHWISE_CONV_2D",)
CALIBRATION_UPDATE = "running min/max (ai_edge_quantizer.utils.qsv_utils.min_max_update)"

def quantize_tflite(float_path: Path, out_path: Path, mode: str,
                    calibration: Mapping[str, Sequence[Mapping[str, np.ndarray]]] | None = None, *,
                    states: Sequence[tuple[str, str]] | None = None,
                    weight_granularity: str = STATIC_WEIGHT_GRANULARITY,
                    float_scopes: Sequence[str] = (), float_buffers: int = 0,
                    dynamic_granularity: str = "TENSORWISE") -> dict[str, Any]:
    """Quantize the float ``.tflite`` at ``float_path`` to int8 and write it to ``out_path``.

    ``mode`` is ``"dynamic"`` (int8 weights, float I/O) or ``"static"`` (full integer: int8 matmuls, int16
    elsewhere, integer I/O). ``weight_granularity`` (static) is ``"TENSORWISE"`` or ``"CHANNELWISE"``.
    ``calibration`` (static only) maps every signature key of the file to a list of feeds ``{input name: array}``
    with realistic carried state; ``states`` (static only) lists the (state input, state output) name pairs, from
    the manifest's ``states``. Returns the manifest record ``{"mode", "tool", "recipe", "calibration_chunks",
    "io_dtype", "float_bytes", "quantized_bytes", "state_ranges" and "io_quantization" (static), "notes"}``.
    ``dynamic_granularity`` (dynamic) is the weights' ``"TENSORWISE"`` (default) or ``"CHANNELWISE"`` scales.
    ``float_scopes`` (dynamic only) are op scopes (ai-edge-quantizer's output tensor names, from
    ``tflite_inspect.weight_layers``) whose ops stay float, holding ``float_buffers`` weight buffers between them.
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
    recipe: Any = None
    if mode == "dynamic":
        recipe = aeq.recipe.dynamic_wi8_afp32()
        # One scale per weight tensor instead of per output channel. On a 154k-parameter keyword spotter:
        # file 31% of float instead of 37%, argmax agreement with torch 99.65% instead of 99.88%, clip accuracy equal.
        for rule in recipe:
            rule["op_config"]["weight_tensor_config"]["granularity"] = dynamic_granularity
        for op in DYNAMIC_FLOAT_COMPUTE_OPS:
            rule = copy.deepcopy(recipe[0])
            rule["operation"] = op
            rule["op_config"].update(explicit_dequantize=True, compute_precision="FLOAT")
            recipe.append(rule)
        if float_scopes:  # later rules win: these ops are not quantized at all
            scopes = "|".join(re.escape(scope) for scope in float_scopes)
            recipe.append({"regex": f"^(?:{scopes})$", "operation": "*", "algorithm_key": "no_quantize"})
    elif float_scopes:
        raise QuantizationError(expected_got("float layers in mode 'static'", "none (mixed precision is a dynamic "
                                             "mode feature)", len(float_scopes)))

    calibration_result = None
    feeds = None
    if mode == "static":
        if not states:
            raise QuantizationError(expected_got("states for mode 'static'", "(state input, state output) name pairs "
                                                 "from the manifest", states))
        feeds = _check_calibration(calibration, float_io, float_path)
        if weight_granularity not in ("TENSORWISE", "CHANNELWISE"):
            raise QuantizationError(expected_got("weight granularity", "'TENSORWISE' or 'CHANNELWISE'",
                                                 repr(weight_granularity)))
        recipe = _static_recipe(aeq, weight_granularity)
        calibration_result = _calibrate(aeq, float_bytes, recipe, feeds)
        calibration_result = share_fc_input_ranges(float_path, calibration_result)

    # ai-edge-quantizer logs "overriding other previously quantized data" whenever two ops sharing a bias buffer
    # hold distinct (even if equal) parameter objects; fc_bias_mismatches below checks the packed biases instead.
    overriding = _DropMessages("is overriding other previously quantized data")
    logging.getLogger().addFilter(overriding)
    try:
        quantizer = aeq.quantizer.Quantizer(bytearray(float_bytes), recipe)
        result = quantizer.quantize(calibration_result, enable_progress_bar=False, enable_progress_report=False)
    except Exception as err:  # the quantizer raises ValueError/RuntimeError/KeyError from deep inside
        raise QuantizationError(f"ai-edge-quantizer {RECIPES[mode]} failed on {float_path}: "
                                f"{type(err).__name__}: {err}") from err
    finally:
        logging.getLogger().removeFilter(overriding)
    if not result.quantized_model:
        raise QuantizationError(f"ai-edge-quantizer {RECIPES[mode]} returned no model for {float_path}")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    staged = out_path.with_name(out_path.name + ".partial")
    staged.write_bytes(repoint_signature_outputs(bytes(result.quantized_model)))
    try:
        _check_structure(count_tflite_ops(staged), count_tflite_ops(float_path), float_io, mode, out_path,
                         float_buffers)
        wrong_biases = fc_bias_mismatches(staged, float_path)
        if wrong_biases:
            raise QuantizationError(expected_got(f"{out_path}: FULLY_CONNECTED biases", "each quantized with its "
                                                 "op's input x weight scale", "; ".join(wrong_biases[:5])))
        state_ranges = _check_state_ranges(staged, out_path, feeds, states or []) if feeds is not None else None
        quantized_io = signature_io(staged)
        staged.replace(out_path)
    finally:
        staged.unlink(missing_ok=True)
    record: dict[str, Any] = {
        "mode": mode,
        "tool": f"ai-edge-quantizer {aeq.version}",
        "recipe": RECIPES[mode],
        "weight_granularity": (dynamic_granularity if mode == "dynamic" else weight_granularity).lower(),
        "calibration_chunks": 0 if feeds is None else sum(len(v) for v in feeds.values()),
        "io_dtype": ("/".join(sorted({spec["dtype"] for sig in quantized_io.values() for side in sig.values()
                                      for spec in side.values()})) if mode == "static" else "float32"),
        "float_bytes": len(float_bytes),
        "quantized_bytes": out_path.stat().st_size,
        "notes": ("int8 weights, float32 activations and I/O; the state loop is unchanged; depthwise "
                  "convolutions compute in float from their int8 kernels (dequantized at load)"
                  if mode == "dynamic" else
                  "full integer: int8 x int8 FULLY_CONNECTED (per-tensor weight scales), int16 activations for "
                  "every other op; every signature input/output (state included) is integer with the per-tensor "
                  "scale/zero point of the file; activation ranges merged with " + CALIBRATION_UPDATE),
    }
    if mode == "static":
        record["state_ranges"] = state_ranges
        record["io_quantization"] = {
            key: {name: {"dtype": spec["dtype"], "scale": spec["scale"], "zero_point": spec["zero_point"]}
                  for side in ("inputs", "outputs") for name, spec in sig[side].items()}
            for key, sig in quantized_io.items()}
    return record


class _DropMessages(logging.Filter):
    """Drops log records containing ``text``."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


@dataclass(frozen=True)
class _Aeq:
    """The ai-edge-quantizer modules used here."""

    quantizer: Any
    recipe: Any
    recipe_manager: Any
    calibrator: Any
    qsv_utils: Any
    qtyping: Any
    version: str


def _import_quantizer() -> _Aeq:
    try:
        from importlib.metadata import version

        from ai_edge_quantizer import calibrator, qtyping, quantizer, recipe, recipe_manager
        from ai_edge_quantizer.utils import qsv_utils
    except ImportError as err:
        raise QuantizationError(f"TFLite quantization needs ai-edge-quantizer ({err}); install it with: "
                                "pip install 'lstm-edge[tflite]'") from None
    return _Aeq(quantizer, recipe, recipe_manager, calibrator, qsv_utils, qtyping, version("ai-edge-quantizer"))


def _static_recipe(aeq: _Aeq, granularity: str) -> Any:
    """int8 x int8 FULLY_CONNECTED ops (XNNPACK runs them), int16 activations for every other op.

    A trained LSTM's cell state c reaches +-90 in some units while others stay near 0, and a forget gate's f * c
    multiplies an int8 gate step (1/256) into it every frame: with int8 everywhere the shipped keyword spotter
    agreed with torch on 37-64% of frames. int16 for the elementwise ops (gates' LOGISTIC/TANH, the MUL/ADD of
    c, tanh(c), the state itself) and int8 for the matmuls, which hold nearly all the arithmetic, passes the gates.
    """
    manager = aeq.recipe_manager.RecipeManager()
    weight_granularity = getattr(aeq.qtyping.QuantGranularity, granularity)
    for op, bits in ((aeq.qtyping.TFLOperationName.ALL_SUPPORTED, 16),
                     (aeq.qtyping.TFLOperationName.FULLY_CONNECTED, 8)):
        manager.add_static_config(regex=".*", operation_name=op, activation_num_bits=bits, weight_num_bits=8,
                                  weight_granularity=weight_granularity)
    return manager.get_quantization_recipe()


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
                     path: Path, float_buffers: int = 0) -> None:
    """Refuse a result that dropped a signature, left a FULLY_CONNECTED float (beyond the ``float_buffers`` weight
    buffers mixed precision keeps float; a model with no FULLY_CONNECTED: an embedding table), duplicated weights,
    or (static) kept float I/O."""
    if set(facts["signatures"]) != set(float_io):
        raise QuantizationError(expected_got(f"{path}: signatures", sorted(float_io), sorted(facts["signatures"])))
    for key, sig in facts["signatures"].items():
        fc = sig["ops"].get("FULLY_CONNECTED", {})
        # the quantized weight ops: the FULLY_CONNECTED layers, or in a model without any, its embedding tables
        kind = "FULLY_CONNECTED" if fc or mode == "static" else "EMBEDDING_LOOKUP"
        weighted = sig["ops"].get(kind, {})
        if not weighted or (weighted.get("int8_weights", 0) != weighted.get("count", 0) and not float_buffers):
            raise QuantizationError(expected_got(f"{path}: signature {key!r} {kind} ops with int8 weights",
                                                 f"all {weighted.get('count', 0)} (and at least one)",
                                                 weighted.get("int8_weights", 0)))
        if mode == "static":
            float_io_names = {n: d for side in ("inputs", "outputs") for n, d in sig[side].items()
                              if d not in ("int8", "int16")
                              and float_io[key][side].get(n, {}).get("dtype") == "float32"}
            if float_io_names:
                raise QuantizationError(expected_got(f"{path}: signature {key!r} input/output dtypes",
                                                     "int8 (int16 on the cell-state path) for every float input/output",
                                                     float_io_names))
            if fc.get("int8_activations", 0) != fc["count"]:
                raise QuantizationError(expected_got(f"{path}: signature {key!r} FULLY_CONNECTED ops with int8 "
                                                     "input and output (the int8 x int8 kernel)", f"all {fc['count']}",
                                                     fc.get("int8_activations", 0)))
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
    expected_buffers = {"int8": float_weights - float_buffers, "float32": float_buffers}
    if facts["weight_operand_buffers"] != {k: n for k, n in expected_buffers.items() if n}:
        raise QuantizationError(expected_got(f"{path}: weight matrices (one int8 buffer per float one, apart from the "
                                             "layers kept float; more means the signatures no longer share them)",
                                             {k: n for k, n in expected_buffers.items() if n},
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
                limits = np.iinfo(np.dtype(spec["dtype"]))
                low, high = (int(limits.min) - zero) * scale, (int(limits.max) - zero) * scale
                entry[name] = {"dtype": spec["dtype"], "scale": scale, "zero_point": zero, "range": [low, high]}
                if data_low < low - scale / 2 or data_high > high + scale / 2:
                    raise QuantizationError(expected_got(
                        f"{path}: signature {key!r} {name!r} {spec['dtype']} range (calibration would clip the state)",
                        f"to cover the calibration data [{data_low:.4g}, {data_high:.4g}]",
                        f"[{low:.4g}, {high:.4g}] (scale {scale:.4g}, zero point {zero})"))
            ranges[key][state_in[:-3] if state_in.endswith("_in") else state_in] = entry
    return ranges


class TFLiteQuantizer:
    """ai-edge-quantizer on the TFLite file: dynamic keeps every signature; static keeps the one-frame signature."""

    format = "tflite"
    granularities: tuple[str, ...] = ("per-tensor", "per-channel")  # dynamic weight scales, default first

    def layers(self, src: Path) -> list[WeightLayer]:
        from lstm_edge.quantize.tflite_inspect import weight_layers

        return [WeightLayer(layer["scopes"][0].rstrip(";"), layer["kind"], layer["params"], tuple(layer["scopes"]),
                            (layer["weights"],)) for layer in weight_layers(src)]

    def quantize(self, src: Path, dst: Path, config: QuantizeConfig, calibration: Calibration | None,
                 manifest: Manifest, entry: ModelFile, float_layers: Sequence[WeightLayer] = (),
                 granularity: str | None = None) -> dict[str, Any]:
        mode = config.mode.value
        states = [(s.input, s.output) for s in manifest.states]
        if mode != "static":
            scales = {"per-tensor": "TENSORWISE", "per-channel": "CHANNELWISE"}[granularity or "per-tensor"]
            return quantize_tflite(src, dst, mode, None, states=states,
                                   float_scopes=[scope for layer in float_layers for scope in layer.handles],
                                   float_buffers=len(float_layers), dynamic_granularity=scales)
        if calibration is None:
            raise QuantizationError("static TFLite quantization needs calibration data")
        signatures = entry.signatures or {}
        length = min(entry.chunk_sizes or [1])
        key = signatures.get(str(length), "step")
        by_signature = {key: calibration.feeds(length)}
        if len(signatures) <= 1:
            return quantize_tflite(src, dst, mode, by_signature, states=states)
        # Full integer keeps one signature, chunk_1: integer accelerators and microcontrollers step one frame per
        # call, every chunking gives the same integers (one set of scales), and the file drops the unrolled
        # chunk_10 graph with its per-tensor quantization parameters (KWS: smaller than dynamic, not larger).
        with tempfile.TemporaryDirectory(prefix="lstm-edge-static-") as tmp:
            single = Path(tmp) / src.name
            single.write_bytes(keep_signatures(src.read_bytes(), [key]))
            record = quantize_tflite(single, dst, mode, by_signature, states=states)
        record["signatures_kept"] = {str(length): key}
        record["notes"] += (f"; one signature ({key}): a push of T frames makes T calls of it, so every chunking "
                            "gives identical outputs")
        return record


def quantize_batch_companion(float_batch: Path, int8_file: Path, out_path: Path, record: Mapping[str, Any],
                             states: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """Quantize the float companion file ``float_batch`` (the batch signatures, ``model.batch.tflite``) the way the
    dynamic int8 one-stream file ``int8_file`` was made (its ``record``): same recipe and weight scales, and float the
    layers ``int8_file`` kept float (found by their weights), so every weight the two files hold is the same.
    ``declare_tflite_batch`` then checks each stream of the result against the one-stream int8 file."""
    from lstm_edge.quantize.tflite_inspect import weight_layers

    if record.get("mode") != "dynamic":
        raise QuantizationError(expected_got("mode of the int8 file whose batch companion is quantized",
                                             "'dynamic' (a static file keeps one signature)", record.get("mode")))
    scales = {"tensorwise": "TENSORWISE", "channelwise": "CHANNELWISE"}
    granularity = scales.get(str(record.get("weight_granularity")))
    if granularity is None:
        raise QuantizationError(expected_got(f"{int8_file}: weight_granularity", sorted(scales),
                                             record.get("weight_granularity")))
    candidates = weight_layers(float_batch)
    scopes: list[str] = []
    kept = weight_layers(int8_file)  # the constant float weights left in the int8 file: the layers kept float
    for layer in kept:
        same = [c for c in candidates
                if c["shape"] == layer["shape"] and np.array_equal(c["weights"], layer["weights"])]
        if not same:
            raise QuantizationError(expected_got(f"{float_batch}: a {layer['kind']} layer with the weights "
                                                 f"{int8_file} keeps float (shape {layer['shape']})", "one", 0))
        scopes += same[0]["scopes"]
    return quantize_tflite(float_batch, out_path, "dynamic", None, states=states, float_scopes=scopes,
                           float_buffers=len(kept), dynamic_granularity=granularity)


def share_fc_input_ranges(float_path: Path, qsvs: dict[str, Any]) -> dict[str, Any]:
    """Calibrated ranges where every FULLY_CONNECTED input that shares a weight buffer with others gets the union
    of their ranges.

    An int8 FULLY_CONNECTED's int32 bias has scale input scale x weight scale. The signatures of one file (and the
    unrolled steps of one signature) apply the same weights and bias to different tensors, calibrated apart, so
    each would need its own copy of the bias (and the quantizer then duplicates the buffers). With one range per
    shared weight, every copy quantizes identically and the buffers stay shared.
    """
    from lstm_edge.quantize.tflite_inspect import _Model, _text

    parsed = _Model.read(float_path)
    groups: dict[int, list[str]] = {}
    for subgraph in parsed.model.subgraphs or []:
        for op in subgraph.operators or []:
            if parsed.op_name(op) != "FULLY_CONNECTED" or len(op.inputs) < 2 or op.inputs[1] < 0:
                continue
            weight = subgraph.tensors[op.inputs[1]]
            if parsed.is_constant(weight):
                groups.setdefault(weight.buffer, []).append(_text(subgraph.tensors[op.inputs[0]].name))
    shared = copy.deepcopy(qsvs)
    for names in groups.values():
        names = [n for n in dict.fromkeys(names) if n in shared]
        if len(names) < 2:
            continue
        low = np.minimum.reduce([np.asarray(shared[n]["min"]) for n in names])
        high = np.maximum.reduce([np.asarray(shared[n]["max"]) for n in names])
        for name in names:
            shared[name] = {**shared[name], "min": low.copy(), "max": high.copy()}
    return shared


def repoint_signature_outputs(model_bytes: bytes) -> bytes:
    """The model with every signature output naming a tensor that its subgraph really outputs.

    When a graph output is requantized to another type (an int8 FULLY_CONNECTED result read as int16 by the
    output's other consumers), ai-edge-quantizer 0.10 makes the new ``<name>_quantized`` tensor the subgraph
    output but leaves the signature on the old tensor; the interpreter then reuses that tensor's memory and the
    signature reads garbage. This points the signature at the subgraph output, in place (the file keeps its
    weights after the flatbuffer, addressed by offset, so it is not re-packed).
    """
    import struct

    from lstm_edge.quantize.tflite_inspect import _schema, _text

    schema = _schema()
    patched = bytearray(model_bytes)
    model = schema.Model.GetRootAsModel(model_bytes, 0)
    for s in range(model.SignatureDefsLength()):
        sig = model.SignatureDefs(s)
        subgraph = model.Subgraphs(sig.SubgraphIndex())
        outputs = [subgraph.Outputs(i) for i in range(subgraph.OutputsLength())]
        by_name = {_text(subgraph.Tensors(i).Name()): i for i in outputs}
        for o in range(sig.OutputsLength()):
            tensor_map = sig.Outputs(o)
            if tensor_map.TensorIndex() in outputs:
                continue
            name = _text(subgraph.Tensors(tensor_map.TensorIndex()).Name())
            field = tensor_map._tab.Offset(6)
            if name + "_quantized" not in by_name or not field:
                raise QuantizationError(expected_got(f"signature {_text(sig.SignatureKey())!r} output "
                                                     f"{_text(tensor_map.Name())!r}", "a tensor the subgraph outputs",
                                                     f"{name!r} (subgraph outputs {sorted(by_name)})"))
            struct.pack_into("<I", patched, tensor_map._tab.Pos + field, by_name[name + "_quantized"])
    return bytes(patched)


def keep_signatures(model_bytes: bytes, keys: Sequence[str]) -> bytes:
    """The float ``.tflite`` with only the signatures ``keys`` (and their subgraphs); unused buffers emptied.

    Buffers the converter stored after the flatbuffer (addressed by offset) are brought inline, so the result is
    one ordinary flatbuffer for the quantizer to read.
    """
    import flatbuffers

    from lstm_edge.quantize.tflite_inspect import _schema, _text

    schema = _schema()
    model = schema.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    by_key = {_text(sig.signatureKey): sig for sig in model.signatureDefs or []}
    missing = [k for k in keys if k not in by_key]
    if missing or not keys:
        raise QuantizationError(expected_got("signatures to keep", f"some of {sorted(by_key)}", list(keys)))
    kept = [by_key[k] for k in keys]
    order = [sig.subgraphIndex for sig in kept]
    model.subgraphs = [model.subgraphs[i] for i in order]
    for index, sig in enumerate(kept):
        sig.subgraphIndex = index
    model.signatureDefs = kept
    used = {0} | {t.buffer for sg in model.subgraphs for t in sg.tensors or []} | \
        {m.buffer for m in model.metadata or []}
    for index, buffer in enumerate(model.buffers or []):
        if buffer.offset and buffer.offset > 1:  # stored after the flatbuffer
            buffer.data = np.frombuffer(model_bytes, np.uint8, count=buffer.size, offset=buffer.offset).copy()
        buffer.offset, buffer.size = 0, 0
        if index not in used:
            buffer.data = None
    builder = flatbuffers.Builder(len(model_bytes) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())
