"""CLI: ``lstm-edge listen MODEL_DIR FILE.wav|-|--mic``: one detection per line, printed as it happens."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from dataclasses import replace

import numpy as np

from lstm_edge.commands import add_engine_options, stdin_bytes
from lstm_edge.runtime.audio import iter_microphone, iter_mono, iter_pcm_s16le
from lstm_edge.runtime.errors import InputError
from lstm_edge.runtime.kws import CHUNK_SECONDS, Detection, DetectorConfig, KeywordSpotter
from lstm_edge.runtime.model import StreamingModel


def _print(detection: Detection, as_json: bool) -> None:
    if as_json:
        print(json.dumps(detection.to_dict()), flush=True)
    else:
        print(f"{detection.start:7.2f}s - {detection.end:6.2f}s  {detection.label:10s} score {detection.score:.3f}",
              flush=True)


def _chunks(args: argparse.Namespace, sample_rate: int) -> Iterable[np.ndarray]:
    chunk = int(sample_rate * CHUNK_SECONDS)
    if args.mic:
        if args.wav is not None:
            raise InputError("listen: expected an input file, '-' or --mic, got both a file and --mic")
        microphone = iter_microphone(sample_rate, chunk)
        print(f"listening on the default microphone at {sample_rate} Hz (Ctrl-C to stop)", file=sys.stderr)
        return microphone
    if args.wav is None:
        raise InputError("listen: expected an input: a WAV file, '-' (raw 16 kHz s16le PCM on stdin) or --mic")
    if args.wav == "-":
        return iter_pcm_s16le(stdin_bytes(), chunk)
    notes: list[str] = []

    def from_file() -> Iterable[np.ndarray]:
        for number, piece in enumerate(iter_mono(args.wav, sample_rate, chunk, notes=notes)):
            if number == 0:
                for note in notes:  # filled before the first chunk: what was downmixed or resampled
                    print(f"note: {note}", file=sys.stderr)
            yield piece

    return from_file()


def cmd_listen(args: argparse.Namespace) -> int:
    model = StreamingModel.load(args.model_dir, backend=args.backend, precision=args.precision)
    config = DetectorConfig.from_manifest(model.manifest.detector)
    if args.threshold is not None:
        config = replace(config, threshold=args.threshold)
    spotter = KeywordSpotter(model, config)
    stream = spotter.create_stream()
    count = 0
    late_error: InputError | None = None
    chunks = _chunks(args, spotter.sample_rate)  # a bad file or option fails here, before any output
    try:
        for chunk in chunks:  # streamed: memory flat in input length
            for detection in stream.push(chunk):
                _print(detection, args.json)
                count += 1
    except KeyboardInterrupt:
        pass
    except InputError as error:  # found mid-stream in live input (an odd trailing byte): finish the whole samples
        late_error = error
    for detection in stream.flush():
        _print(detection, args.json)
        count += 1
    if late_error is not None:
        raise late_error
    print(f"{count} detection(s); {model.describe()}; threshold {config.threshold}", file=sys.stderr)
    return 0


def register(sub) -> None:
    p = sub.add_parser("listen", help="detect keywords in a WAV file, raw PCM on stdin, or the microphone",
                       description="Stream audio through a keyword-spotting model directory in 100 ms chunks and "
                                   "print each detection as it happens. WAV files at other sample rates are "
                                   "resampled and multi-channel audio is downmixed, with a note on stderr. '-' reads "
                                   "raw mono 16 kHz signed 16-bit little-endian PCM from stdin (arecord -t raw -f "
                                   "S16_LE -r 16000 -c 1 | lstm-edge listen MODEL -); --mic reads the default "
                                   "microphone (the mic extra: pip install 'lstm-edge[mic]').")
    p.add_argument("model_dir")
    p.add_argument("wav", nargs="?", default=None, help="WAV file, or - for raw 16 kHz s16le PCM on stdin")
    p.add_argument("--mic", action="store_true", help="stream from the default microphone (needs sounddevice)")
    add_engine_options(p)
    p.add_argument("--threshold", type=float, default=None,
                   help="smoothed posterior that triggers a detection (default: the manifest's detector threshold, "
                        f"chosen on validation voices; {DetectorConfig.threshold} without one)")
    p.add_argument("--json", action="store_true", help='one JSON object per line: {"label", "start", "end", "score"}')
    p.set_defaults(func=cmd_listen)
