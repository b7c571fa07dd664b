"""CLI: ``lstm-edge listen MODEL_DIR FILE.wav``: one detection per line."""

from __future__ import annotations

import argparse
import json
import sys

from lstm_edge.commands import add_engine_options
from lstm_edge.runtime.audio import iter_mono
from lstm_edge.runtime.kws import CHUNK_SECONDS, DetectorConfig, KeywordSpotter
from lstm_edge.runtime.model import StreamingModel


def cmd_listen(args: argparse.Namespace) -> int:
    model = StreamingModel.load(args.model_dir, backend=args.backend, precision=args.precision)
    spotter = KeywordSpotter(model, DetectorConfig(threshold=args.threshold))
    notes: list[str] = []  # filled before the first chunk: what was downmixed or resampled
    chunks = iter_mono(args.wav, spotter.sample_rate, int(spotter.sample_rate * CHUNK_SECONDS), notes=notes)
    detections = spotter.detect(chunks)  # streamed: memory flat in file length
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    for detection in detections:
        if args.json:
            print(json.dumps(detection.to_dict()))
        else:
            print(f"{detection.start:7.2f}s - {detection.end:6.2f}s  {detection.label:10s} score {detection.score:.3f}")
    print(f"{len(detections)} detection(s); {model.describe()}", file=sys.stderr)
    return 0


def register(sub) -> None:
    p = sub.add_parser("listen", help="detect keywords in a WAV file",
                       description="Stream a WAV file through a keyword-spotting model directory in 100 ms chunks "
                                   "and print one detection per line. Other sample rates are resampled and "
                                   "multi-channel audio is downmixed, with a note on stderr.")
    p.add_argument("model_dir")
    p.add_argument("wav")
    add_engine_options(p)
    p.add_argument("--threshold", type=float, default=DetectorConfig.threshold,
                   help=f"smoothed posterior that triggers a detection (default {DetectorConfig.threshold})")
    p.add_argument("--json", action="store_true", help='one JSON object per line: {"label", "start", "end", "score"}')
    p.set_defaults(func=cmd_listen)
