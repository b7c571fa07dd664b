"""``lstm-edge demo``: the shipped keyword spotter from PyTorch weights to detections, on every backend and precision.

Exports ONNX and TFLite, quantizes to int8, verifies parity against the float torch model (and accuracy on unseen
voices), streams a test recording in 100 ms chunks and prints the detections and a size / latency / real-time
factor table; then transcribes the shipped speech recognizer's demo recording, float and int8.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from lstm_edge.runtime.errors import LstmEdgeError

STEPS = 6


@contextmanager
def _step(index: int, text: str):
    """Print a progress line; hold back the converters' C++ log lines (written straight to fd 2) unless it fails."""
    print(f"[{index}/{STEPS}] {text} ...", end="", flush=True)
    start = time.perf_counter()
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read().decode(errors="replace"))
            print(" failed", flush=True)
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    print(f" done ({time.perf_counter() - start:.1f} s)", flush=True)


def _assets() -> Path:
    from lstm_edge.recipes.kws.model import shipped_model_dir

    return shipped_model_dir()


def run_demo(out_dir: Path, backends: tuple[str, ...] = ("onnx", "litert")) -> int:
    import torch

    from lstm_edge.export import export
    from lstm_edge.quantize import quantize
    from lstm_edge.quantize.parity import format_table, parity_report
    from lstm_edge.quantize.tasks import clip_predictor_for
    from lstm_edge.recipes.kws.export_model import detector_settings
    from lstm_edge.recipes.kws.model import feature_normalization, load_shipped_model
    from lstm_edge.runtime.audio import load_mono
    from lstm_edge.runtime.backends import info
    from lstm_edge.runtime.frontend import LogMelConfig, LogMelFrontend
    from lstm_edge.runtime.kws import KeywordSpotter
    from lstm_edge.runtime.manifest import Manifest
    from lstm_edge.runtime.model import StreamingModel

    torch.set_num_threads(1)
    assets = _assets()
    model, config = load_shipped_model()
    frontend_config = LogMelConfig.from_dict(config["frontend"])
    frontend = LogMelFrontend(frontend_config)
    audio, _ = load_mono(assets / "demo.wav", frontend_config.sample_rate)
    truth = json.loads((assets / "demo.json").read_text())
    print(f"lstm-edge demo: keyword spotter '{config.get('name', 'kws')}' ({sum(p.numel() for p in model.parameters())}"
          f" parameters, labels {', '.join(config['labels'])}) -> {out_dir}")

    with _step(1, "exporting to ONNX and TFLite (state as named inputs/outputs)"):
        features = frontend.compute(audio)
        export(model, torch.from_numpy(features[None, :10]), out_dir, formats=("onnx", "tflite"), chunk_sizes=(10, 1),
               labels=config["labels"], frontend=frontend_config.to_dict(feature_normalization(model)),
               name="kws-lstm", output_semantics="logits",
               detector=detector_settings(config).to_manifest(clip_rule=config["clip_rule"]),
               reference_input=features)
    with _step(2, "quantizing to int8 (dynamic: int8 weights, float state)"):
        quantize(out_dir)
    with _step(3, "verifying parity against the float torch model, and accuracy on unseen voices"):
        report = parity_report(out_dir, eval_data=assets / "eval_clips.npz",
                               clip_predictor=clip_predictor_for(Manifest.load(out_dir)))
    print(format_table(report))
    print("parity gates:", "PASS" if not report["failures"] else "; ".join(report["failures"]))

    rows = []
    duration = len(audio) / frontend_config.sample_rate
    shown = None
    with _step(4, f"streaming demo.wav ({duration:.1f} s) in 100 ms chunks on each backend x precision"):
        for backend in backends:
            for precision in ("float", "int8"):
                model_files = StreamingModel.load(out_dir, backend=backend, precision=precision)
                spotter = KeywordSpotter(model_files)
                spotter.detect(audio)  # warm-up
                times: list[float] = []
                detections = spotter.detect(audio, timings=times)
                size = model_files.manifest.file(info(backend).format, precision).bytes
                rows.append((backend, precision, model_files.engine, size, np.median(times) * 1e3,
                             np.percentile(times, 99) * 1e3, sum(times) / duration, detections))
                if shown is None:
                    shown = (backend, precision, detections)
    with _step(5, "summarising"):
        if shown is None:
            raise LstmEdgeError("demo: no backend was run")
    backend, precision, detections = shown
    print(f"\ndetections ({backend}, {precision}); true keywords: "
          + ", ".join(f"{k['label']}@{k['start_s']:.2f}s" for k in truth["events"]))
    for detection in detections:
        print(f"  {detection.start:6.2f}s - {detection.end:6.2f}s  {detection.label:8s} score {detection.score:.3f}")
    print(f"\n{'backend':8s} {'precision':9s} {'engine':24s} {'size KB':>8s} {'p50 ms/100ms':>13s} {'p99 ms':>7s} "
          f"{'RTF':>7s} {'detections':>10s}")
    for backend, precision, engine, size, p50, p99, rtf, found in rows:
        print(f"{backend:8s} {precision:9s} {engine:24s} {size / 1024:8.1f} {p50:13.3f} {p99:7.3f} {rtf:7.4f} "
              f"{len(found):10d}")
    print("RTF = processing time (frontend + model + detection) / audio duration, one thread.")
    from lstm_edge.commands.asr import demo_transcription

    with _step(6, "speech recognition: the shipped recognizer on its demo recording (voices it never heard)"):
        lines = demo_transcription()
    print("\n".join(lines))
    return 0 if not report["failures"] else 1


def cmd_demo(args: argparse.Namespace) -> int:
    out_dir = Path(args.out)
    started = time.perf_counter()
    code = run_demo(out_dir)
    print(f"total {time.perf_counter() - started:.1f} s; model directory kept in {out_dir}", file=sys.stderr)
    return code


def register(sub) -> None:
    p = sub.add_parser("demo", help="export, quantize, verify and stream the shipped keyword spotter",
                       description=__doc__)
    p.add_argument("--out", default="lstm-edge-demo", help="model directory to write (default ./lstm-edge-demo)")
    p.set_defaults(func=cmd_demo)
