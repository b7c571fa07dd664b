"""End-to-end real-time factor of speech recognition (frontend + model + beam search + endpointing), one core.

Streams the same recording (sentences of the grammar spoken by test-split voices, synthesised here with espeak-ng
and flite, separated by 1 s pauses) in 100 ms chunks through every backend x precision of the shipped recognizer,
in alternating rounds, next to the shipped keyword spotter on the same audio and the frontend alone. RTF =
processing time / audio duration (target <= 0.05).
Run: python benchmarks/bench_asr.py [--model-dir DIR] [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np

from lstm_edge.runtime.backends import NAMES

from _common import save

ROOT = Path(__file__).resolve().parent.parent
SENTENCES = (("espeak", "en-us-nyc+f3", "call four two seven one"), ("flite", "slt", "set a timer for ten minutes"),
             ("espeak", "en-gb-x-rp+m2", "turn off the kitchen lights"), ("flite", "slt", "nine three five two"),
             ("espeak", "en-us-nyc+m4", "set the volume to forty five"), ("espeak", "en-gb-x-rp+f2", "next song"))


def recording(rate: int = 16000) -> np.ndarray:
    from lstm_edge.recipes.asr.synth import Request, synthesize

    pieces = [np.zeros(rate // 2, dtype=np.float32)]
    for engine, voice, text in SENTENCES:
        speech = synthesize(Request(engine, voice, text, 160 if engine == "espeak" else 1.0, 50 if engine == "espeak"
                                    else 1.0))
        pieces += [speech * (0.5 / np.max(np.abs(speech))), np.zeros(rate, dtype=np.float32)]
    audio = np.concatenate(pieces) + np.random.default_rng(0).normal(size=sum(p.size for p in pieces)) * 1e-3
    return np.round(audio * 32767).astype(np.int16)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-dir", default=str(ROOT / "models" / "asr" / "export"))
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    from lstm_edge.runtime import StreamingModel
    from lstm_edge.runtime.asr import SpeechRecognizer
    from lstm_edge.runtime.backends import info
    from lstm_edge.runtime.kws import KeywordSpotter
    from lstm_edge.runtime.manifest import Manifest

    runners = {}
    texts = {}
    formats = {entry.format for entry in Manifest.load(args.model_dir).files}
    for backend in NAMES:
        if info(backend).format not in formats:
            continue
        for precision in ("float", "int8"):
            recognizer = SpeechRecognizer(StreamingModel.load(args.model_dir, backend=backend, precision=precision))
            runners[f"asr {backend} {precision}"] = recognizer.transcribe
    spotter = KeywordSpotter(StreamingModel.load(ROOT / "models" / "kws" / "export", backend="onnx"))
    runners["kws onnx float"] = spotter.detect
    audio = recording()
    duration = len(audio) / 16000
    frontend = recognizer.frontend

    def frontend_only(pcm: np.ndarray) -> None:
        stream = frontend.create_stream()
        for start in range(0, len(pcm), 1600):
            stream.push(pcm[start:start + 1600])

    runners["frontend only"] = frontend_only
    for run in runners.values():
        run(audio)  # warm-up
    timings: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(args.rounds):
        for name, run in runners.items():
            began = time.perf_counter()
            output = run(audio)
            timings[name].append(time.perf_counter() - began)
            if name.startswith("asr"):
                texts[name] = [r.text for r in output]
    results = {}
    print(f"audio {duration:.1f} s ({len(SENTENCES)} sentences) in 100 ms chunks, {args.rounds} rounds, median")
    for name, values in timings.items():
        seconds = statistics.median(values)
        results[name] = {"seconds": round(seconds, 4), "rtf": round(seconds / duration, 5)}
        print(f"  {name:18s} RTF {seconds / duration:.4f}{'  target <= 0.05' if name.startswith('asr') else ''}")
    reference = [s[2] for s in SENTENCES]
    for name, found in texts.items():
        results[name]["texts"] = found
        results[name]["all_sentences_right"] = found == reference
    print("saved", save("asr", {"audio_seconds": round(duration, 2), "rounds": args.rounds, "sentences": reference,
                                "results": results}))


if __name__ == "__main__":
    main()
