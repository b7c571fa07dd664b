"""CLI: ``lstm-edge transcribe MODEL_DIR FILE.wav|-``: one line per recognised utterance."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lstm_edge.commands import add_engine_options, stdin_bytes
from lstm_edge.runtime.errors import InputError


def _print_result(result, as_json: bool) -> None:
    if as_json:
        line = json.dumps(result.to_dict())
    elif result.final:
        line = result.text
    else:
        line = f"... {result.text}"
    print(line, flush=True)


def cmd_transcribe(args: argparse.Namespace) -> int:
    from lstm_edge.runtime.asr import CHUNK_SECONDS, SpeechRecognizer
    from lstm_edge.runtime.audio import iter_pcm_s16le, load_mono
    from lstm_edge.runtime.model import StreamingModel

    model = StreamingModel.load(args.model_dir, backend=args.backend, precision=args.precision)
    recognizer = SpeechRecognizer(model)
    if args.audio == "-":
        if recognizer.sample_rate != 16000:
            raise InputError(f"stdin PCM is read as 16 kHz, but the model expects {recognizer.sample_rate} Hz")
        chunks: Iterator[np.ndarray] = iter_pcm_s16le(stdin_bytes(), int(recognizer.sample_rate * CHUNK_SECONDS))
    else:
        audio, notes = load_mono(args.audio, recognizer.sample_rate)
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
        step = int(recognizer.sample_rate * CHUNK_SECONDS)
        chunks = (audio[i:i + step] for i in range(0, len(audio), step))
    stream = recognizer.create_stream()
    finals = 0
    late_error: InputError | None = None
    try:
        for chunk in chunks:
            for result in stream.push(chunk):
                if result.final or args.partial:
                    _print_result(result, args.json)
                    finals += result.final
    except InputError as error:  # found mid-stream in live input (an odd trailing byte): finish the whole samples
        late_error = error
    for result in stream.flush():
        _print_result(result, args.json)
        finals += 1
    if late_error is not None:
        raise late_error
    print(f"{finals} utterance(s); {model.describe()}", file=sys.stderr)
    return 0


def shipped_recognizer_dir() -> Path:
    """The ``asr`` folder of the installed ``lstm_edge.models`` package (model directory in ``export/``)."""
    models_package = importlib.import_module("lstm_edge.models")
    return Path(next(iter(models_package.__path__))) / "asr"


def demo_transcription(backend: str = "onnx", precisions: Sequence[str] = ("float", "int8")) -> list[str]:
    """Transcribe the shipped recognizer's demo recording (held-out voices) per precision; report lines with the
    reference, each hypothesis, its word errors and the real-time factor."""
    from lstm_edge.recipes.asr.train import edit_distance
    from lstm_edge.runtime.asr import SpeechRecognizer
    from lstm_edge.runtime.audio import load_mono
    from lstm_edge.runtime.model import StreamingModel

    assets = shipped_recognizer_dir()
    truth = json.loads((assets / "demo.json").read_text())["utterances"]
    lines: list[str] = []
    heard: dict[str, list[Any]] = {}
    for precision in precisions:
        recognizer = SpeechRecognizer(StreamingModel.load(assets / "export", backend=backend, precision=precision))
        audio, _ = load_mono(assets / "demo.wav", recognizer.sample_rate)
        recognizer.transcribe(audio[: recognizer.sample_rate])  # warm-up
        began = time.perf_counter()
        results = recognizer.transcribe(audio)
        rtf = (time.perf_counter() - began) / (len(audio) / recognizer.sample_rate)
        words = " ".join(r.text for r in results).split()
        reference = " ".join(u["text"] for u in truth).split()
        heard[precision] = results
        errors = edit_distance(reference, words)
        lines.append(f"{backend} {precision}: {len(results)} utterance(s), word errors {errors}/{len(reference)}, "
                     f"RTF {rtf:.4f}")
    for utterance in truth:
        lines.append(f"  said ({utterance['voice']}, {utterance['start_s']:.1f}-{utterance['end_s']:.1f}s): "
                     f"{utterance['text']}")
        for precision, results in heard.items():
            # the results whose words overlap this utterance's speech
            text = " ".join(w.word for r in results for w in r.words
                            if w.end > utterance["start_s"] - 0.3 and w.start < utterance["end_s"] + 0.3)
            lines.append(f"    heard {precision:5s}: {text}")
    return lines


def register(sub) -> None:
    p = sub.add_parser("transcribe", help="speech recognition of a WAV file or of 16 kHz PCM on stdin",
                       description="Stream audio through a speech-recognition model directory in 100 ms chunks "
                                   "and print one line per utterance (an utterance ends after trailing silence, "
                                   "by the endpoint rules of the manifest). FILE '-' reads 16 kHz mono s16le PCM "
                                   "from stdin.")
    p.add_argument("model_dir")
    p.add_argument("audio", metavar="FILE.wav|-")
    add_engine_options(p)
    p.add_argument("--json", action="store_true",
                   help='one JSON object per line: {"text", "start", "end", "words": [{"word", "start", "end"}]}')
    p.add_argument("--partial", action="store_true", help='also print partial hypotheses ({"partial": ...} with '
                                                          '--json, "... text" otherwise) as audio arrives')
    p.set_defaults(func=cmd_transcribe)
