"""CLI: ``lstm-edge quantize`` and ``lstm-edge verify``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from lstm_edge.runtime.errors import InputError


def load_calibration(path: str, model_dir: str) -> list[np.ndarray]:
    """Sequences from a .npy (one sequence, or [N, T, ...]) or .npz (``inputs`` [N, T, ...] model inputs, ``audio``
    [N, samples] PCM turned into features with the manifest's frontend, or one array per sequence)."""
    from lstm_edge.quantize.parity import features_of_audio
    from lstm_edge.runtime.manifest import Manifest

    manifest = Manifest.load(model_dir)
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: not a readable .npy/.npz ({err})") from None
    if isinstance(data, np.ndarray):
        rank = len(manifest.input.shape) - 1
        return [data] if data.ndim == rank else list(data)
    if "inputs" in data.files:
        return list(data["inputs"])
    if "audio" in data.files:
        return features_of_audio(data["audio"], manifest, str(path))
    return [data[name] for name in data.files]


def _clip_predictor(model_dir: str):
    from lstm_edge.quantize.tasks import clip_predictor_for
    from lstm_edge.runtime.manifest import Manifest

    return clip_predictor_for(Manifest.load(model_dir))


def cmd_quantize(args: argparse.Namespace) -> int:
    from lstm_edge.quantize import quantize
    from lstm_edge.quantize.mixed import REPORT_NAME, MixedPrecisionError, format_sensitivity
    from lstm_edge.quantize.parity import format_table, parity_report

    if args.report and (args.mode != "dynamic" or args.no_mixed):
        raise InputError("--report: expected dynamic mode with mixed precision (the per-layer analysis is its "
                         f"search), got mode {args.mode!r}{' with --no-mixed' if args.no_mixed else ''}")
    calibration = load_calibration(args.calibration, args.model_dir) if args.calibration else None
    formats = tuple(args.formats.split(",")) if args.formats else None
    try:
        quantize(args.model_dir, calibration=calibration, mode=args.mode, formats=formats, mixed=not args.no_mixed,
                 max_float_fraction=args.max_float_fraction, report=args.report)
    except MixedPrecisionError as err:  # a gate no mix meets: reported like verify's failed gates
        print(format_sensitivity(json.loads((Path(args.model_dir) / REPORT_NAME).read_text())["files"]))
        print(f"FAIL {err}")
        return 1
    if args.report:
        print(format_sensitivity(json.loads((Path(args.model_dir) / REPORT_NAME).read_text())["files"]))
    report = parity_report(args.model_dir, eval_data=args.eval, clip_predictor=_clip_predictor(args.model_dir))
    print(format_table(report))
    for failure in report["failures"]:
        print(f"FAIL {failure}")
    if not args.no_speed:
        from lstm_edge.quantize.speed import compare_precisions, format_recommendation

        print(format_recommendation(compare_precisions(args.model_dir)))
    return 1 if report["failures"] else 0  # a failed parity gate fails the command, as `verify` does


def cmd_verify(args: argparse.Namespace) -> int:
    from lstm_edge.quantize.parity import format_table, parity_report

    if args.plot:
        from lstm_edge.plotting import import_pyplot

        import_pyplot()  # before the parity run
    report = parity_report(args.model_dir, eval_data=args.eval, chunk=args.chunk,
                           clip_predictor=_clip_predictor(args.model_dir))
    if args.plot:
        from lstm_edge.quantize.plots import plot_parity

        plot_parity(args.model_dir, report, args.plot)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_table(report))
        tolerances = report["tolerances"]
        rule = tolerances.get("float_rule", "scaled")
        bound = (f"{tolerances['float_max_abs_diff']:g} x (1 + max|torch|)" if rule == "scaled"
                 else f"{tolerances['float_max_abs_diff']:g}")
        print(f"gates: float max|diff| <= {bound}; int8 argmax agreement >= "
              f"{100 * tolerances['int8_argmax_agreement']:g}%; int8 accuracy drop <= "
              f"{100 * tolerances['int8_accuracy_drop']:g} point(s) (with --eval); int8 relative error <= "
              f"{100 * tolerances['int8_relative_error']:g}% (mixed-precision files, and models without an argmax "
              f"gate); binary detectors: decisions agree on >= {100 * tolerances['int8_decision_agreement']:g}%")
        for failure in report["failures"]:
            print(f"FAIL {failure}")
        if not args.no_speed:
            from lstm_edge.quantize.speed import compare_precisions, format_recommendation

            print(format_recommendation(compare_precisions(args.model_dir)))
        print("PASS" if not report["failures"] else f"{len(report['failures'])} gate(s) failed; report in "
              f"{Path(args.model_dir) / 'parity.json'}")
    return 1 if report["failures"] else 0


def register(sub) -> None:
    p = sub.add_parser("quantize", help="quantize a model directory to int8 and report parity",
                       description="Write model.int8.onnx / model.int8.tflite beside the float files, record them "
                                   "in the manifest, and print the parity table.")
    p.add_argument("model_dir")
    p.add_argument("--mode", choices=("dynamic", "static"), default="dynamic",
                   help="dynamic: int8 weights, float activations and state (default); static: calibrated int8 "
                        "activations (TFLite: full integer, state included)")
    p.add_argument("--calibration", help=".npy/.npz of realistic inputs without batch dim (required for static; in "
                                         "dynamic mode the streams mixed precision is measured on, default the "
                                         "reference input)")
    p.add_argument("--formats", help="comma-separated formats to quantize (default: all float files)")
    p.add_argument("--eval", help="labelled evaluation .npz for the accuracy columns")
    p.add_argument("--no-speed", action="store_true", help="skip the float vs int8 timing and recommendation")
    p.add_argument("--report", action="store_true",
                   help="print the per-layer sensitivity table: error when only this layer is int8 / only this "
                        "layer is float, and the precision chosen (also in sensitivity.json)")
    p.add_argument("--no-mixed", action="store_true",
                   help="quantize every layer, even when that misses the gate (dynamic mode keeps the layers that "
                        "break the gate float by default)")
    p.add_argument("--max-float-fraction", type=float, default=0.5,
                   help="refuse a mix that keeps more than this share of the weights float (default 0.5)")
    p.set_defaults(func=cmd_quantize)

    p = sub.add_parser("verify", help="check every file against the float torch model; exit 1 outside tolerances",
                       description="Stream the stored reference input through every format x precision and compare "
                                   "with the torch float outputs; with --eval also compare task accuracy. Writes "
                                   "parity.json. Exits non-zero when a precision is outside the manifest's tolerances.")
    p.add_argument("model_dir")
    p.add_argument("--eval", help="labelled evaluation .npz: 'labels' plus 'inputs' [N,T,...] or 'audio' [N,samples]")
    p.add_argument("--chunk", type=int, default=10, help="frames per push (default 10)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--no-speed", action="store_true", help="skip the float vs int8 timing")
    p.add_argument("--plot", metavar="FILE.png", help="draw the error along the stream and int8 vs float outputs "
                                                      "(needs the 'plot' extra: matplotlib)")
    p.set_defaults(func=cmd_verify)
