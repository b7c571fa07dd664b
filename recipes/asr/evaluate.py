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

Utterances of kind ``out_of_grammar`` (English sentences outside the grammar) are left out of every WER and of the
stream. With a rejection rule (the manifest's ``decoder.rejection``, or ``--rejection``) the report gives the share
of them that still produce text (``out_of_grammar_with_text``), and the grammar utterances with a rejected result
(``in_grammar_rejected``; their words are deletions in the WER), each per synthesiser family too. Each utterance
is decoded once with a rule that rejects nothing, and the rule is applied to its final results afterwards: the
same results the rule gives in the runtime, where rejection changes nothing else in a stream.

Run: ``python -m lstm_edge.recipes.asr.evaluate MODEL_DIR --data DIR [--split test] [--out FILE.json]``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from lstm_edge.recipes.asr.synth import load_split, utterances
from lstm_edge.recipes.asr.train import edit_distance
from lstm_edge.runtime.asr import CHUNK_SECONDS, IdleReset, RecognizerSettings, SpeechRecognizer
from lstm_edge.runtime.ctc import BeamSettings, RejectionRule
from lstm_edge.runtime.model import StreamingModel

TAIL_SECONDS = 1.0
OUT_OF_GRAMMAR = "out_of_grammar"  # the kind of the utterances outside the grammar: no WER, rejection rates only
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


@dataclass(frozen=True)
class Final:
    """A final result of an utterance: its text, its disagreement with the best path (None without a rejection
    rule) and when it came (seconds of audio to the end of its chunk plus that chunk's processing; None: the
    flush at the end of the input)."""

    text: str
    disagreement: float | None
    at: float | None


@dataclass(frozen=True)
class Run:
    """One utterance streamed alone: every final result (none rejected), processing and audio seconds."""

    finals: tuple[Final, ...]
    processing: float
    seconds: float


def measuring(settings: RecognizerSettings) -> RecognizerSettings:
    """The same settings with a rejection rule that rejects nothing (``max_disagreement`` 1) when they have one, so
    every final result comes with its disagreement: the results any threshold keeps are then exactly those at or
    below it (rejection changes nothing else in a stream)."""
    if settings.decoder.rejection is None:
        return settings
    return replace(settings, decoder=replace(settings.decoder, rejection=RejectionRule(1.0)))


def kept(finals: Sequence[Final], rule: RejectionRule | None) -> list[Final]:
    """The final results ``rule`` keeps."""
    return [f for f in finals if rule is None or f.disagreement is None or not rule.rejects(f.disagreement)]


def run_utterance(recognizer: SpeechRecognizer, audio: np.ndarray, tail: np.ndarray) -> Run:
    """Stream ``audio`` then ``tail`` in ``CHUNK_SECONDS`` chunks through a new stream, then flush."""
    rate = recognizer.sample_rate
    step = int(rate * CHUNK_SECONDS)
    signal = np.concatenate([audio, tail])
    stream = recognizer.create_stream()
    finals: list[Final] = []
    processing = 0.0
    for start in range(0, len(signal), step):
        began = time.perf_counter()
        results = stream.push(signal[start:start + step])
        spent = time.perf_counter() - began
        processing += spent
        at = min(start + step, len(signal)) / rate + spent
        finals += [Final(r.text, r.disagreement, at) for r in results if r.final]
    began = time.perf_counter()
    finals += [Final(r.text, r.disagreement, None) for r in stream.flush()]
    processing += time.perf_counter() - began
    return Run(tuple(finals), processing, len(signal) / rate)


def run_split(recognizer: SpeechRecognizer, audio_list: Sequence[np.ndarray]) -> list[Run]:
    """Every utterance streamed alone, each followed by ``TAIL_SECONDS`` of low noise (seeded)."""
    rng = np.random.default_rng(0)
    recognizer.transcribe(audio_list[0])  # warm-up
    runs = []
    for audio in audio_list:
        tail = (rng.normal(size=int(TAIL_SECONDS * recognizer.sample_rate)) * 3.0).astype(np.int16)
        runs.append(run_utterance(recognizer, audio, tail))
    return runs


def load_recognizer(model_dir: Path, backend: str | None, precision: str, decoder: dict[str, Any] | None = None,
                    grammar: dict[str, Any] | None = None, idle_reset: Any = "manifest",
                    rejection: Any = "manifest") -> SpeechRecognizer:
    """A recognizer with the manifest's settings (``decoder``, ``grammar``, and ``idle_reset`` and ``rejection``, a
    dict or None for none, override them)."""
    model = StreamingModel.load(model_dir, backend=backend, precision=precision)
    settings = RecognizerSettings.from_manifest(model.manifest.extra)
    if decoder:
        settings = replace(settings, decoder=BeamSettings.from_dict(decoder))
    if grammar:
        settings = replace(settings, grammar=grammar)
    if idle_reset != "manifest":
        settings = replace(settings, idle_reset=IdleReset.from_dict(idle_reset))
    if rejection != "manifest":
        settings = replace(settings, decoder=replace(settings.decoder, rejection=RejectionRule.from_dict(rejection)))
    return SpeechRecognizer(model, settings)


def score(runs: Sequence[Run], arrays: dict[str, np.ndarray], rule: RejectionRule | None) -> dict[str, Any]:
    """WER of the grammar utterances (their rejected results count as deletions), the grammar utterances with a
    rejected result, and the out-of-grammar utterances that still give text, under ``rule``; each also per
    synthesiser family (and WER per family and kind, and per voice)."""
    errors: dict[str, list[int]] = {}
    by_engine: dict[str, list[int]] = {}  # synthesiser family of the voice: espeak, flite
    by_engine_kind: dict[str, list[int]] = {}  # "flite/digits": family and kind
    by_voice: dict[str, list[int]] = {}
    rejected: dict[str, list[int]] = {}  # family -> [grammar utterances with a rejected result, grammar utterances]
    accepted: dict[str, list[int]] = {}  # family -> [out-of-grammar utterances with text, out-of-grammar utterances]
    examples: list[dict[str, str]] = []
    for i, run in enumerate(runs):
        finals = kept(run.finals, rule)
        hypothesis = " ".join(f.text for f in finals).split()
        voice = str(arrays["voices"][i])
        engine, kind = voice.split(":")[0], str(arrays["kinds"][i])
        if kind == OUT_OF_GRAMMAR:
            _count(accepted, engine, bool(finals))
            continue
        _count(rejected, engine, len(finals) < len(run.finals))
        reference = str(arrays["texts"][i]).split()
        distance = edit_distance(reference, hypothesis)
        for counts in (errors.setdefault(kind, [0, 0]), by_engine.setdefault(engine, [0, 0]),
                       by_engine_kind.setdefault(f"{engine}/{kind}", [0, 0]), by_voice.setdefault(voice, [0, 0])):
            counts[0] += distance
            counts[1] += len(reference)
        if distance and len(examples) < 15:
            examples.append({"voice": voice, "reference": " ".join(reference), "hypothesis": " ".join(hypothesis)})
    total = [sum(v[0] for v in errors.values()), sum(v[1] for v in errors.values())]
    return {
        "wer": _rates(errors), "wer_all": round(total[0] / max(total[1], 1), 4),
        "wer_by_synthesiser": _rates(by_engine), "wer_by_synthesiser_and_kind": _rates(by_engine_kind),
        "wer_by_voice": _rates(by_voice),
        "words": {kind: n for kind, (_, n) in sorted(errors.items())},
        "in_grammar_rejected": _shares(rejected),
        "out_of_grammar_with_text": _shares(accepted),
        "errors": examples,
    }


def _count(counts: dict[str, list[int]], key: str, hit: bool) -> None:
    entry = counts.setdefault(key, [0, 0])
    entry[0] += hit
    entry[1] += 1


def _shares(counts: dict[str, list[int]]) -> dict[str, Any]:
    """``{utterances, of, rate, by_synthesiser}`` of a family -> [hits, utterances] count."""
    hits, total = sum(v[0] for v in counts.values()), sum(v[1] for v in counts.values())
    return {"utterances": hits, "of": total, "rate": round(hits / total, 4) if total else None,
            "by_synthesiser": _rates(counts)}


def evaluate_precision(model_dir: Path, arrays: dict[str, np.ndarray], backend: str | None, precision: str,
                       limit: int | None = None, decoder: dict[str, Any] | None = None,
                       grammar: dict[str, Any] | None = None, idle_reset: Any = "manifest",
                       rejection: Any = "manifest") -> dict[str, Any]:
    """WER per kind, rejection rates, RTF and final latency for one precision (``decoder``, ``grammar``, and
    ``idle_reset`` and ``rejection``, a dict or None for none, override the manifest's settings)."""
    recognizer = load_recognizer(model_dir, backend, precision, decoder, grammar, idle_reset, rejection)
    rule = recognizer.settings.decoder.rejection
    recognizer = SpeechRecognizer(recognizer.model, measuring(recognizer.settings))
    rate = recognizer.sample_rate
    audio_list = utterances(arrays)[:limit]
    runs = run_split(recognizer, audio_list)
    grammar_utterances = [i for i in range(len(runs)) if str(arrays["kinds"][i]) != OUT_OF_GRAMMAR]
    latencies: list[float] = []
    silent: list[float] = []  # grammar utterances with no result at all, timed as if the end of the input were one
    for i in grammar_utterances:
        run, finals = runs[i], kept(runs[i].finals, rule)
        timed = [f.at for f in finals if f.at is not None]
        latency = (timed[-1] if timed else run.seconds) - int(arrays["speech_end"][i]) / rate
        (latencies if finals else silent).append(latency)
    chosen = {key: arrays[key][grammar_utterances] for key in ("texts", "speech_start")}
    recording, stream_reference = continuous_recording(chosen, [audio_list[i] for i in grammar_utterances], rate)
    stream_results = [r for r in recognizer.transcribe(recording)
                      if rule is None or r.disagreement is None or not rule.rejects(r.disagreement)]
    stream_hypothesis = " ".join(r.text for r in stream_results).split()
    stream_wer = edit_distance(stream_reference, stream_hypothesis) / max(len(stream_reference), 1)
    scores = score(runs, arrays, rule)
    return {
        "backend": recognizer.model.backend,
        "engine": recognizer.model.engine, "precision": precision, "utterances": len(runs),
        "rejection": rule.to_dict() if rule else None,
        **{k: v for k, v in scores.items() if k != "errors"}, "stream_wer": round(stream_wer, 4),
        "stream_seconds": round(recording.size / rate, 1),
        "rtf": round(sum(r.processing for r in runs) / sum(r.seconds for r in runs), 5),
        "audio_seconds": round(sum(r.seconds for r in runs), 1),
        "final_latency_seconds": _spread(latencies),
        "utterances_without_result": len(silent),
        "final_latency_with_silent_seconds": _spread(latencies + silent),
        "errors": scores["errors"],
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
    parser.add_argument("--rejection", default=None,
                        help="rejection rule (JSON, null for none) to try instead of the manifest's")
    args = parser.parse_args(argv)
    grammar = json.loads(args.grammar.read_text()) if args.grammar else None

    arrays = load_split(args.data, args.split)
    voices = sorted(set(str(v) for v in arrays["voices"]))
    report: dict[str, Any] = {"split": args.split, "decoder_override": args.decoder,
                              "grammar_override": str(args.grammar) if args.grammar else None,
                              "idle_reset_override": args.idle_reset, "rejection_override": args.rejection,
                              "voices": voices,
                              "chunk_seconds": CHUNK_SECONDS,
                              "tail_seconds": TAIL_SECONDS, "results": []}
    for precision in args.precisions.split(","):
        result = evaluate_precision(args.model_dir, arrays, args.backend, precision, args.limit, args.decoder,
                                    grammar, "manifest" if args.idle_reset is None else json.loads(args.idle_reset),
                                    "manifest" if args.rejection is None else json.loads(args.rejection))
        report["results"].append(result)
        print(json.dumps({k: v for k, v in result.items() if k != "errors"}), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
