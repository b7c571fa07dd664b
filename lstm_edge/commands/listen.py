"""CLI: ``lstm-edge listen MODEL_DIR FILE.wav|-|--mic``: one detection per line, printed as it happens.

Several streams at once (one model push for all of them per chunk, ``KeywordBatch``): several WAV files, one
stream each, or ``--streams N`` with raw interleaved N-channel PCM on stdin or an N-channel WAV file, one stream per
channel. Each line then names its stream."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import cast

import numpy as np

from lstm_edge.commands import add_engine_options, stdin_bytes
from lstm_edge.runtime.audio import iter_channels, iter_microphone, iter_mono, iter_pcm_s16le, wav_info
from lstm_edge.runtime.errors import InputError, expected_got
from lstm_edge.runtime.kws import CHUNK_SECONDS, Detection, DetectorConfig, KeywordSpotter
from lstm_edge.runtime.model import StreamingModel


def _print(detection: Detection, as_json: bool, stream: str | None = None) -> None:
    if as_json:
        record = detection.to_dict() if stream is None else {"stream": stream, **detection.to_dict()}
        print(json.dumps(record), flush=True)
    else:
        where = "" if stream is None else f"[{stream}] "
        print(f"{where}{detection.start:7.2f}s - {detection.end:6.2f}s  {detection.label:10s} score "
              f"{detection.score:.3f}", flush=True)


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
    return _file_chunks(args.wav, sample_rate)


def _file_chunks(path: str, sample_rate: int) -> Iterable[np.ndarray]:
    chunk = int(sample_rate * CHUNK_SECONDS)
    if path == "-":
        return iter_pcm_s16le(stdin_bytes(), chunk)
    notes: list[str] = []

    def from_file() -> Iterable[np.ndarray]:
        for number, piece in enumerate(iter_mono(path, sample_rate, chunk, notes=notes)):
            if number == 0:
                for note in notes:  # filled before the first chunk: what was downmixed or resampled
                    print(f"note: {note}", file=sys.stderr)
            yield piece

    return from_file()


def _stream_sources(args: argparse.Namespace, sample_rate: int) -> dict[str, Iterator[np.ndarray]]:
    """Several streams: name -> iterator of mono chunks (files: one each; --streams N: one per channel)."""
    chunk = int(sample_rate * CHUNK_SECONDS)
    if args.mic:
        raise InputError("listen: expected --mic alone, got --mic with several inputs or --streams")
    if args.streams is None:
        if len(set(args.inputs)) != len(args.inputs) or "-" in args.inputs:
            raise InputError(expected_got("listen inputs", "distinct WAV files ('-' only alone, or with --streams)",
                                          args.inputs))
        return {path: iter(_file_chunks(path, sample_rate)) for path in args.inputs}
    if args.streams < 1:
        raise InputError(expected_got("--streams", "a positive number of channels", args.streams))
    if len(args.inputs) != 1:
        raise InputError(expected_got("listen --streams N", "one input: '-' (raw interleaved N-channel s16le PCM) "
                                      "or an N-channel WAV file", f"{len(args.inputs)} inputs"))
    path = args.inputs[0]
    if path == "-":
        frames = iter_pcm_s16le(stdin_bytes(), chunk, channels=args.streams)
    else:
        channels = wav_info(path).channels
        if channels != args.streams:
            raise InputError(expected_got(f"{path}: channels", f"{args.streams} (--streams)", channels))
        notes: list[str] = []
        frames = iter_channels(path, sample_rate, chunk, notes=notes)
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
    return _split_channels(frames, args.streams)


def _split_channels(frames: Iterable[np.ndarray], channels: int) -> dict[str, Iterator[np.ndarray]]:
    """One iterator per channel over chunks [n, channels] read once (the channels advance together)."""
    source = iter(frames)
    pending: list[list[np.ndarray]] = [[] for _ in range(channels)]

    def channel(index: int) -> Iterator[np.ndarray]:
        while True:
            if not pending[index]:
                piece = next(source, None)
                if piece is None:
                    return
                for k in range(channels):
                    pending[k].append(np.ascontiguousarray(piece[:, k]) if piece.ndim == 2 else piece)
            yield pending[index].pop(0)

    return {f"channel {k}": channel(k) for k in range(channels)}


def _listen_many(spotter: KeywordSpotter, sources: dict[str, Iterator[np.ndarray]], as_json: bool) -> int:
    """Every source in one KeywordBatch slot; a source that ends leaves the batch. Returns the detection count."""
    batch = spotter.create_batch(0)
    names = {batch.join(): name for name in sources}
    iterators = {slot: sources[name] for slot, name in names.items()}
    count = 0
    try:
        while iterators:
            chunks = {}
            for slot, iterator in list(iterators.items()):
                piece = next(iterator, None)
                if piece is None:  # this stream ended
                    for detection in batch.leave(slot):
                        _print(detection, as_json, names[slot])
                        count += 1
                    del iterators[slot]
                else:
                    chunks[slot] = piece
            if chunks:
                pushed = cast(dict[int, list[Detection]], batch.push(chunks))  # a mapping in, a mapping out
                for slot, detections in pushed.items():
                    for detection in detections:
                        _print(detection, as_json, names[slot])
                        count += 1
    except KeyboardInterrupt:
        pass
    for slot, detections in batch.flush().items():
        for detection in detections:
            _print(detection, as_json, names[slot])
            count += 1
    return count


def cmd_listen(args: argparse.Namespace) -> int:
    model = StreamingModel.load(args.model_dir, backend=args.backend, precision=args.precision)
    config = DetectorConfig.from_manifest(model.manifest.detector)
    if args.threshold is not None:
        config = replace(config, threshold=args.threshold)
    spotter = KeywordSpotter(model, config)
    args.wav = args.inputs[0] if len(args.inputs) == 1 else None
    if len(args.inputs) > 1 or args.streams is not None:
        sources = _stream_sources(args, spotter.sample_rate)  # a bad file or option fails here, before any output
        count = _listen_many(spotter, sources, args.json)
        print(f"{count} detection(s) in {len(sources)} streams; {model.describe()}; threshold {config.threshold}",
              file=sys.stderr)
        return 0
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
                                   "microphone (the mic extra: pip install 'lstm-edge[mic]'). Several WAV files, "
                                   "or --streams N, run several streams through one model batch and name each "
                                   "line's stream.")
    p.add_argument("model_dir")
    p.add_argument("inputs", nargs="*", metavar="wav",
                   help="WAV file, or - for raw 16 kHz s16le PCM on stdin; several files: one stream each")
    p.add_argument("--streams", type=int, default=None, metavar="N",
                   help="N streams from one input: raw interleaved N-channel s16le PCM on stdin ('-'), or an "
                        "N-channel WAV file (one stream per channel, not downmixed)")
    p.add_argument("--mic", action="store_true", help="stream from the default microphone (needs sounddevice)")
    add_engine_options(p)
    p.add_argument("--threshold", type=float, default=None,
                   help="smoothed posterior that triggers a detection (default: the manifest's detector threshold, "
                        f"chosen on validation voices; {DetectorConfig.threshold} without one)")
    p.add_argument("--json", action="store_true", help='one JSON object per line: {"label", "start", "end", "score"}')
    p.set_defaults(func=cmd_listen)
