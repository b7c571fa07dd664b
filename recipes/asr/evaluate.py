"""Word error rate, real-time factor and endpoint latency of an exported recognizer on unseen voices.

Each utterance of the split is streamed in 100 ms chunks through ``SpeechRecognizer`` (frontend + model + beam
search + endpointing, one thread), followed by 1 s of low noise so the endpoint rules can fire. The hypothesis is
the concatenation of the final results. Reports WER per kind (digit strings, numbers, commands), also per
synthesiser family and kind and per voice, the real-time factor (processing time / audio time) and the
final-result latency: audio time from the end of speech to the end of the chunk that produced the last final
result, plus that chunk's processing time (the end of the input if only the flush produced it). An utterance that
gives no result at all (all its words deleted, counted in the WER) has no final result to time: it is counted in
``utterances_without_result`` and left out of the latency, which is also reported with it counted as the end of
the input (``final_latency_with_silent_seconds``).

``stream_wer`` is the WER of the same utterances as one continuous recording, the way a microphone delivers them:
each is preceded by a gap of 0.3-3 s (seeded) made of its own lead-in noise repeated, so the background does not
jump, and the whole recording goes through one stream; the final results joined are scored against the references
joined. It shows what a long silence does to the recognizer between utterances.

Run: ``python -m lstm_edge.recipes.asr.evaluate MODEL_DIR --data DIR [--split test] [--out FILE.json]``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from lstm_edge.recipes.asr.synth import load_split, utterances
from lstm_edge.recipes.asr.train import edit_distance
from lstm_edge.runtime.asr import CHUNK_SECONDS, IdleReset, RecognizerSettings, SpeechRecognizer
from lstm_edge.runtime.ctc import BeamSettings
from lstm_edge.runtime.model import StreamingModel

TAIL_SECONDS = 1.0
STREAM_GAP_SECONDS = (0.3, 3.0)


def continuous_recording(arrays: dict[str, np.ndarray], audio_list: Sequence[np.ndarray], rate: int,
                         seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """The utterances in one recording, each after a gap of its own lead-in noise (see the module docstring), then
    ``TAIL_SECONDS`` of the last one's; returns the recording and the reference words."""
    def looped(noise: np.ndarray, n: int) -> np.ndarray:
        return np.tile(noise, n // noise.size + 1)[:n]

    rng = np.random.default_rng(seed)
    pieces: list[np.ndarray] = []
    words: list[str] = []
    for i, audio in enumerate(audio_list):
        lead = audio[: max(int(arrays["speech_start"][i]) - rate // 100, rate // 100)]
        pieces += [looped(lead, int(rng.uniform(*STREAM_GAP_SECONDS) * rate)), audio]
        words += str(arrays["texts"][i]).split()
    pieces.append(looped(lead, int(TAIL_SECONDS * rate)))
    return np.concatenate(pieces), words


def evaluate_precision(model_dir: Path, arrays: dict[str, np.ndarray], backend: str | None, precision: str,
                       limit: int | None = None, decoder: dict[str, Any] | None = None,
                       grammar: dict[str, Any] | None = None, idle_reset: Any = "manifest") -> dict[str, Any]:
    """WER per kind, RTF and final latency for one precision (``decoder``, ``grammar`` and ``idle_reset``, a dict or
    None for none, override the manifest's settings)."""
    model = StreamingModel.load(model_dir, backend=backend, precision=precision)
    settings = RecognizerSettings.from_manifest(model.manifest.extra)
    if decoder:
        settings = replace(settings, decoder=BeamSettings.from_dict(decoder))
    if grammar:
        settings = replace(settings, grammar=grammar)
    if idle_reset != "manifest":
        settings = replace(settings, idle_reset=IdleReset.from_dict(idle_reset))
    recognizer = SpeechRecognizer(model, settings)
    rate = recognizer.sample_rate
    step = int(rate * CHUNK_SECONDS)
    rng = np.random.default_rng(0)
    audio_list = utterances(arrays)[:limit]
    errors: dict[str, list[int]] = {}
    by_engine: dict[str, list[int]] = {}  # synthesiser family of the voice: espeak, flite
    by_engine_kind: dict[str, list[int]] = {}  # "flite/digits": family and kind
    by_voice: dict[str, list[int]] = {}
    latencies: list[float] = []
    silent: list[float] = []  # utterances with no result at all, timed as if the end of the input were one
    examples: list[dict[str, str]] = []
    processing, duration = 0.0, 0.0
    recognizer.transcribe(audio_list[0])  # warm-up
    for i, audio in enumerate(audio_list):
        tail = (rng.normal(size=int(TAIL_SECONDS * rate)) * 3.0).astype(np.int16)
        signal = np.concatenate([audio, tail])
        stream = recognizer.create_stream()
        finals, last_final_at = [], None
        for start in range(0, len(signal), step):
            began = time.perf_counter()
            results = stream.push(signal[start:start + step])
            spent = time.perf_counter() - began
            processing += spent
            for result in results:
                if result.final:
                    finals.append(result.text)
                    last_final_at = min(start + step, len(signal)) / rate + spent
        began = time.perf_counter()
        flushed = [r.text for r in stream.flush()]
        finals.extend(flushed)
        processing += time.perf_counter() - began
        duration += len(signal) / rate
        end_of_speech = int(arrays["speech_end"][i]) / rate
        latency = (last_final_at if last_final_at is not None else len(signal) / rate) - end_of_speech
        (latencies if last_final_at is not None or flushed else silent).append(latency)
        hypothesis = " ".join(finals).split()
        reference = str(arrays["texts"][i]).split()
        kind = str(arrays["kinds"][i])
        distance = edit_distance(reference, hypothesis)
        voice = str(arrays["voices"][i])
        engine = voice.split(":")[0]
        for counts in (errors.setdefault(kind, [0, 0]), by_engine.setdefault(engine, [0, 0]),
                       by_engine_kind.setdefault(f"{engine}/{kind}", [0, 0]), by_voice.setdefault(voice, [0, 0])):
            counts[0] += distance
            counts[1] += len(reference)
        if distance and len(examples) < 15:
            examples.append({"voice": str(arrays["voices"][i]), "reference": " ".join(reference),
                             "hypothesis": " ".join(hypothesis)})
    recording, stream_reference = continuous_recording(arrays, audio_list, rate)
    stream_hypothesis = " ".join(r.text for r in recognizer.transcribe(recording)).split()
    stream_wer = edit_distance(stream_reference, stream_hypothesis) / max(len(stream_reference), 1)
    wer = _rates(errors)
    total = [sum(v[0] for v in errors.values()), sum(v[1] for v in errors.values())]
    return {
        "backend": recognizer.model.backend,
        "engine": recognizer.model.engine, "precision": precision, "utterances": len(audio_list),
        "wer": wer, "wer_all": round(total[0] / max(total[1], 1), 4), "stream_wer": round(stream_wer, 4),
        "stream_seconds": round(recording.size / rate, 1),
        "wer_by_synthesiser": _rates(by_engine), "wer_by_synthesiser_and_kind": _rates(by_engine_kind),
        "wer_by_voice": _rates(by_voice),
        "words": {kind: n for kind, (_, n) in sorted(errors.items())},
        "rtf": round(processing / duration, 5), "audio_seconds": round(duration, 1),
        "final_latency_seconds": _spread(latencies),
        "utterances_without_result": len(silent),
        "final_latency_with_silent_seconds": _spread(latencies + silent),
        "errors": examples,
    }


def _rates(counts: dict[str, list[int]]) -> dict[str, float]:
    """Word error rate of each key's [errors, words]."""
    return {key: round(e / max(n, 1), 4) for key, (e, n) in sorted(counts.items())}


def _spread(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {"median": round(float(np.median(values)), 3), "p90": round(float(np.percentile(values, 90)), 3),
            "max": round(float(np.max(values)), 3)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--split", default="test", choices=("validation", "test"))
    parser.add_argument("--backend", default="onnx")
    parser.add_argument("--precisions", default="float,int8")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--decoder", type=json.loads, default=None, help="decoder settings (JSON) to try instead of "
                                                                          "the manifest's")
    parser.add_argument("--grammar", type=Path, default=None, help="a grammar (JSON file, either form the manifest "
                                                                    "takes) to try instead of the manifest's")
    parser.add_argument("--idle-reset", default=None,
                        help="idle reset settings (JSON, null for none) to try instead of the manifest's")
    args = parser.parse_args(argv)
    grammar = json.loads(args.grammar.read_text()) if args.grammar else None

    arrays = load_split(args.data, args.split)
    voices = sorted(set(str(v) for v in arrays["voices"]))
    report: dict[str, Any] = {"split": args.split, "decoder_override": args.decoder,
                              "grammar_override": str(args.grammar) if args.grammar else None,
                              "idle_reset_override": args.idle_reset, "voices": voices,
                              "chunk_seconds": CHUNK_SECONDS,
                              "tail_seconds": TAIL_SECONDS, "results": []}
    for precision in args.precisions.split(","):
        result = evaluate_precision(args.model_dir, arrays, args.backend, precision, args.limit, args.decoder,
                                    grammar, "manifest" if args.idle_reset is None else json.loads(args.idle_reset))
        report["results"].append(result)
        print(json.dumps({k: v for k, v in result.items() if k != "errors"}), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
