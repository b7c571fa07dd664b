"""CLI: ``lstm-edge kws-train --keywords "hey pi" "lights on" -o DIR``: a keyword spotter for your own phrases.

Runs the keyword recipe end to end: checks the phrases (before any work); synthesises clips of the phrases, alone
and inside other phrases, and of negatives (near misses, other words, running sentences), split by voice; trains the
streaming LSTM (warm-started from the shipped model unless ``--from-scratch``); chooses the detector threshold on
validation-voice streams for a false-alarm budget; exports ONNX + TFLite, quantizes to int8 and verifies parity;
and measures recall (in phrases and said apart) and false alarms per hour on streams of the held-out voices
(MBROLA, CMU SLT; the test-split voices when none of those engines is installed). When int8 misses its parity
gate, the model directory keeps the float files only and says so: a training run never ends in a failure. ``DIR``
is the model directory ``lstm-edge listen DIR`` uses; ``DIR/training`` keeps the float model and the reports.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path


def _say(started: float, text: str) -> None:
    print(f"[kws-train {time.time() - started:6.0f}s] {text}", flush=True)


def keep_passing_precisions(out_dir: Path, failures: list[str]) -> tuple[list[str], list[str]]:
    """After parity: when only int8 files missed their gates, drop the int8 files from the model directory and
    its manifest (the float model ships). Returns (remaining failures, notes)."""
    from lstm_edge.runtime.manifest import Manifest

    int8_failures = [f for f in failures if "/int8" in f.split(":")[0]]
    if not int8_failures or len(int8_failures) != len(failures):
        return failures, []
    manifest = Manifest.load(out_dir)
    for entry in manifest.files:
        if entry.precision != "float":
            (out_dir / entry.path).unlink(missing_ok=True)
            if entry.batch_file is not None:
                (out_dir / entry.batch_file.path).unlink(missing_ok=True)
    kept = tuple(entry for entry in manifest.files if entry.precision == "float")
    dataclasses.replace(manifest, files=kept).save(out_dir)
    return [], [f"int8 missed its parity gate ({'; '.join(int8_failures)}): the model directory ships the float "
                "files only"]


def cmd_kws_train(args: argparse.Namespace) -> int:
    from lstm_edge.recipes.kws import synth

    try:
        keywords = synth.normalize_keywords(args.keywords)
    except synth.KeywordError as error:
        print(f"lstm-edge kws-train: error: {error}", file=sys.stderr)
        return 2
    return _run(args, keywords)


def _run(args: argparse.Namespace, keywords: tuple[str, ...]) -> int:
    import torch

    from lstm_edge.commands.quiet import quiet_third_party
    from lstm_edge.recipes.kws import detection, synth, train
    from lstm_edge.recipes.kws.export_model import export_trained
    from lstm_edge.recipes.kws.model import shipped_model_dir

    started = time.time()
    out_dir = Path(args.out)
    training_dir, data_dir = out_dir / "training", out_dir / "data"
    held_out = synth.installed_held_out_voices()
    _say(started, "test voices: " + (", ".join(held_out) if held_out else
                                     "the test split's (no held-out engine installed: mbrola, flite, festival, "
                                     "RHVoice)"))
    config = synth.SynthConfig(keywords=keywords, train_per_class=args.train_per_class,
                               eval_per_class=args.eval_per_class, stream_negative_minutes=args.stream_minutes,
                               stream_keywords_per_label=args.stream_keywords, seed=args.seed, workers=args.workers,
                               context_share=args.context_share, held_out_streams=bool(held_out),
                               held_out_voices=held_out or synth.SynthConfig.held_out_voices)
    torch.set_num_threads(args.threads)
    _say(started, f"synthesising {', '.join(repr(k) for k in keywords)} (alone and inside phrases) and negatives "
                  f"-> {data_dir}")
    index = synth.generate_dataset(data_dir, config)
    _say(started, "clips: " + ", ".join(f"{s} {info['n_clips']}" for s, info in index["splits"].items())
         + "; streams: " + ", ".join(f"{s} {info['negative_hours']:.2f} h" for s, info in index["streams"].items()))

    init_from = None if args.from_scratch else shipped_model_dir()
    train_config = train.TrainConfig(max_train_minutes=args.minutes, max_epochs=args.max_epochs, seed=args.seed,
                                     threads=args.threads, learning_rate=args.learning_rate,
                                     eval_clips_per_class=min(25, args.eval_per_class))
    _say(started, f"training for at most {args.minutes:g} min"
                  + ("" if init_from is None else f" (encoder warm-started from {init_from})"))
    report = train.run(data_dir, training_dir, train_config, init_from=init_from)
    _say(started, f"clip accuracy on held-out test voices {100 * report['test_clip_accuracy']:.1f}% "
                  f"({report['epochs_run']} epochs, {report['parameters']} parameters)")

    validation = detection.tune_on_validation(data_dir, training_dir, args.max_false_alarms_per_hour)
    (training_dir / "detection_validation.json").write_text(json.dumps(validation, indent=1))
    chosen = validation["chosen"]
    _say(started, f"detector threshold {chosen['threshold']} chosen on validation voices (recall "
                  f"{100 * chosen['recall']:.1f}% at {chosen['false_alarms_per_hour']:.2f} false alarms/h)")

    quiet_third_party(host_side=True)
    _say(started, f"exporting ONNX + TFLite, quantizing to int8, verifying -> {out_dir}")
    parity = export_trained(training_dir, out_dir, name="kws-" + "-".join("_".join(k.split()) for k in keywords))
    failures = parity.get("failures") or []
    _say(started, "parity gates: " + ("PASS" if not failures else "; ".join(failures)))
    failures, notes = keep_passing_precisions(out_dir, failures)
    for note in notes:
        _say(started, note)

    precisions = ("float", "int8") if not notes else ("float",)
    test = detection.evaluate_export(data_dir, out_dir, "test", variants=tuple(("onnx", p) for p in precisions),
                                     swept=tuple(("onnx", p) for p in precisions))
    (training_dir / "detection_test.json").write_text(json.dumps(test, indent=1))
    for key, result in test["results"].items():
        point = result["at_manifest_threshold"]
        by_kind = ", ".join(f"{kind} {100 * value:.1f}%" for kind, value in point["recall_by_kind"].items())
        _say(started, f"test voices, {key}: recall {100 * point['recall']:.1f}% ({by_kind}) at "
                      f"{point['false_alarms_per_hour']:.2f} false alarms/h ({test['streams']['negative_hours']:.2f} h "
                      f"of keyword-free speech)")
    summary = {"keywords": list(keywords), "model_dir": str(out_dir), "wall_seconds": round(time.time() - started),
               "test_clip_accuracy": report["test_clip_accuracy"], "threshold": chosen["threshold"],
               "test_detection": {k: r["at_manifest_threshold"] for k, r in test["results"].items()},
               "parity_failures": failures, "notes": notes, "precisions": list(precisions)}
    (training_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    if not args.keep_data:
        shutil.rmtree(data_dir)
    _say(started, f"done: lstm-edge listen {out_dir} recording.wav (or - for raw 16 kHz s16le PCM on stdin)")
    return 0 if not failures else 1  # only a float file off its torch model (an export fault) fails the run


def register(sub) -> None:
    p = sub.add_parser("kws-train", help="train, export and verify a keyword spotter for your own phrases",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--keywords", nargs="+", required=True, help='phrases, e.g. "hey pi" "lights on"')
    p.add_argument("-o", "--out", required=True, help="model directory to write")
    p.add_argument("--train-per-class", type=int, default=800, help="training clips per keyword (default 800)")
    p.add_argument("--eval-per-class", type=int, default=100, help="validation/test clips per label (default 100)")
    p.add_argument("--stream-minutes", type=float, default=30.0,
                   help="minutes of keyword-free running speech per held-out split (default 30)")
    p.add_argument("--stream-keywords", type=int, default=60,
                   help="occurrences of each keyword in the held-out recall streams (default 60)")
    p.add_argument("--context-share", type=float, default=0.5,
                   help="share of each phrase's clips spoken inside other phrases (default 0.5)")
    p.add_argument("--minutes", type=float, default=10.0, help="training time budget in minutes (default 10)")
    p.add_argument("--max-epochs", type=int, default=30)
    p.add_argument("--learning-rate", type=float, default=2e-3)
    p.add_argument("--max-false-alarms-per-hour", type=float, default=3.0,
                   help="false-alarm budget the threshold is chosen for on validation voices (default 3)")
    p.add_argument("--from-scratch", action="store_true", help="do not warm-start from the shipped model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2, help="synthesis processes (default 2)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--keep-data", action="store_true", help="keep the synthesised data in DIR/data")
    p.set_defaults(func=cmd_kws_train)
