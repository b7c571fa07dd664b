"""Word error rate and real-time factor of the shipped speech recognizer against CMU PocketSphinx, same audio.

Each utterance of a split (``recipes/asr/synth.py`` format) goes through four systems in turn, the same int16 audio
(the utterance as stored, without ``evaluate.py``'s low-noise tail, so lstm-edge's WER can differ a little from
``evaluate.py``'s):

- lstm-edge float and int8 (ONNX, one thread): pushed in 100 ms chunks, the final results joined, as ``evaluate.py``
  does; the recognizer always decodes with its whole grammar (the manifest's word automaton);
- PocketSphinx (its en-us acoustic model and CMUdict, plus ``jsgf.EXTRA_PRONUNCIATIONS``) with JSGF grammars built
  from ``recipes/asr/grammar.py`` by ``recipes/asr/jsgf.py``:
  - "per-kind grammar": told which kind the utterance is (digit string, number 0-100 or command) and decoding with
    that kind's grammar alone. This is generous to PocketSphinx: lstm-edge is never told;
  - "whole grammar": one grammar for every kind, checked to accept exactly the sentences the manifest's grammar does
    (the setting comparable to lstm-edge).

Each grammar's decoder is loaded once. PocketSphinx settings are ``SPHINX_SETTINGS`` (picked on a validation split
with ``--tune``, which tries ``TUNING_GRID`` on validation and decodes the chosen split with the lowest whole-grammar
WER; ``--sphinx-settings`` sets them by hand). WER is given
per kind, per voice family (the synthesiser; MBROLA voices apart) and per voice; out-of-grammar utterances (kind
``out_of_grammar``) are left out of the WER, and the share of them that still gives text is reported (PocketSphinx
has no rejection; "per-kind" decodes them with the whole grammar); RTF = processing seconds / audio seconds, one
thread.

Run: ``python benchmarks/bench_vs_pocketsphinx.py --data DIR [--split test] [--model models/asr/export] [--limit N]
[--tune | --sphinx-settings JSON] [--out benchmarks/results/vs_pocketsphinx.json]`` (needs ``pip install
pocketsphinx``; DIR from ``python -m lstm_edge.recipes.asr.synth --out DIR``).

Keyword spotting (the keyword model against PocketSphinx's keyword-list search) is in ``bench_kws_vs_pocketsphinx.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lstm_edge.recipes.asr.evaluate import OUT_OF_GRAMMAR
from lstm_edge.recipes.asr.jsgf import (
    EXTRA_PRONUNCIATIONS,
    KINDS,
    Fsg,
    automaton_fsg,
    dictionary_text,
    jsgf,
    language_difference,
    pronunciations,
    read_fsg,
    words_of,
)
from lstm_edge.recipes.asr.synth import load_split, utterances
from lstm_edge.recipes.asr.train import edit_distance
from lstm_edge.runtime.asr import CHUNK_SECONDS, SpeechRecognizer
from lstm_edge.runtime.model import StreamingModel

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_RATE = 16000
LSTM_SYSTEMS: tuple[str, ...] = ("lstm-edge float", "lstm-edge int8")
SPHINX_SYSTEMS: tuple[str, ...] = ("pocketsphinx per-kind grammar", "pocketsphinx whole grammar")
SYSTEMS: tuple[str, ...] = LSTM_SYSTEMS + SPHINX_SYSTEMS
ALL = "all"


@dataclass(frozen=True)
class SphinxSettings:
    """PocketSphinx decoder options (``Decoder`` keyword arguments; empty: its defaults) and how audio is fed:
    ``whole_utterance`` gives the decoder each utterance in one call (its batch CMN then sees the whole utterance
    first), otherwise it gets the same 100 ms chunks as lstm-edge."""

    options: Mapping[str, float] = field(default_factory=dict)
    whole_utterance: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"options": dict(self.options), "whole_utterance": self.whole_utterance}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SphinxSettings:
        unknown = set(data) - {"options", "whole_utterance"}
        if unknown:
            raise ValueError(f"PocketSphinx settings keys {sorted(unknown)}: expected options, whole_utterance")
        return cls(dict(data.get("options", {})), bool(data.get("whole_utterance", False)))


# Chosen with --tune on a validation split of 40 utterances (``synth --train 10 --eval 40``): whole-grammar WER
# 32.5% against 36.1% for the defaults (whole utterances) and 38.0% (defaults, 100 ms chunks); lower wip or higher lw
# changed nothing on whole utterances. The wider beams cost time: validation RTF 2.1 against 0.06-0.3 for the other
# settings (a busy 2-core machine).
SPHINX_SETTINGS = SphinxSettings({"beam": 1e-64, "pbeam": 1e-64, "wbeam": 1e-40}, whole_utterance=True)
# Each option set, fed in 100 ms chunks and as whole utterances: defaults, a lower word insertion penalty, a higher
# language weight, wider beams.
TUNING_OPTIONS: tuple[dict[str, float], ...] = ({}, {"wip": 0.01}, {"lw": 10.0},
                                                {"beam": 1e-64, "pbeam": 1e-64, "wbeam": 1e-40})
TUNING_GRID: tuple[SphinxSettings, ...] = tuple(SphinxSettings(options, whole) for options in TUNING_OPTIONS
                                                for whole in (False, True))


def voice_family(voice: str) -> str:
    """The synthesiser of a voice id ``engine:name``; MBROLA voices (``mbrola:us1``, or espeak-ng's ``mb-us1``) are
    their own family."""
    engine, _, name = voice.partition(":")
    if engine == "espeak" and name.startswith("mb-"):
        return "mbrola"
    return engine


class SphinxDecoder:
    """One PocketSphinx decoder with one JSGF grammar, loaded once, decoding utterance after utterance."""

    def __init__(self, grammar: str, dictionary: Path, settings: SphinxSettings) -> None:
        from pocketsphinx import Decoder

        self.settings = settings
        self.grammar = grammar
        # FATAL: no log line for each utterance whose best path does not reach the grammar's end (then the best
        # partial path is the result, as PocketSphinx gives it)
        self.decoder = Decoder(lm=None, dict=str(dictionary), loglevel="FATAL", **dict(settings.options))
        missing = [w for w in words_of(grammar) if self.decoder.lookup_word(w) is None]
        if missing:
            raise KeyError(f"PocketSphinx has no pronunciation of {missing}")
        self.decoder.add_jsgf_string("grammar", grammar)
        self.decoder.activate_search("grammar")

    def fsg(self) -> Fsg:
        """The decoder's JSGF as PocketSphinx compiles it (before the search adds alternate pronunciations and
        fillers)."""
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "grammar.fsg"
            self.decoder.parse_jsgf(self.grammar).writefile(str(path))
            return read_fsg(path.read_text())

    def transcribe(self, audio: np.ndarray) -> str:
        """The best sentence for 16 kHz mono int16 audio ("" when nothing was recognised)."""
        pcm = np.ascontiguousarray(audio, dtype=np.int16)
        self.decoder.start_utt()
        if self.settings.whole_utterance:
            self.decoder.process_raw(pcm.tobytes(), False, True)
        else:
            step = int(SAMPLE_RATE * CHUNK_SECONDS)
            for start in range(0, pcm.size, step):
                self.decoder.process_raw(pcm[start:start + step].tobytes(), False, False)
        self.decoder.end_utt()
        hypothesis = self.decoder.hyp()
        return str(hypothesis.hypstr) if hypothesis is not None else ""


def sphinx_dictionary(folder: Path) -> tuple[Path, dict[str, list[str]]]:
    """A pronunciation dictionary of every grammar word written into ``folder``: (path, entries)."""
    from pocketsphinx import get_model_path

    entries = pronunciations(words_of(jsgf()), Path(get_model_path("en-us/cmudict-en-us.dict")))
    path = folder / "grammar.dict"
    path.write_text(dictionary_text(entries))
    return path, entries


def sphinx_decoders(dictionary: Path, settings: SphinxSettings) -> dict[str, SphinxDecoder]:
    """A decoder per kind's grammar and one for the whole grammar (key ``all``)."""
    decoders = {kind: SphinxDecoder(jsgf([kind]), dictionary, settings) for kind in KINDS}
    decoders[ALL] = SphinxDecoder(jsgf(), dictionary, settings)
    return decoders


def lstm_transcriber(recognizer: SpeechRecognizer) -> Callable[[np.ndarray], str]:
    """Push audio in 100 ms chunks, flush, join the final results (as ``evaluate.py``)."""
    step = int(recognizer.sample_rate * CHUNK_SECONDS)

    def transcribe(audio: np.ndarray) -> str:
        stream = recognizer.create_stream()
        finals = [r.text for start in range(0, audio.size, step) for r in stream.push(audio[start:start + step])
                  if r.final]
        finals += [r.text for r in stream.flush()]
        return " ".join(" ".join(finals).split())

    return transcribe


def signals(arrays: Mapping[str, np.ndarray], limit: int | None = None) -> list[np.ndarray]:
    """The int16 audio of each utterance, as the data set has it (its own leading and trailing silence; no tail
    added: PocketSphinx inserts words when the noise floor drops, as after ``evaluate.py``'s low-noise tail)."""
    return utterances(dict(arrays))[:limit]


@dataclass
class Tally:
    """Word errors and reference words per group key, out-of-grammar utterances with text per voice family, and
    processing time."""

    counts: dict[str, list[int]] = field(default_factory=dict)
    out_of_grammar: dict[str, list[int]] = field(default_factory=dict)
    seconds: float = 0.0

    def add_out_of_grammar(self, family: str, gave_text: bool) -> None:
        for key in (family, ALL):
            pair = self.out_of_grammar.setdefault(key, [0, 0])
            pair[0] += gave_text
            pair[1] += 1

    def add(self, keys: Sequence[str], errors: int, words: int) -> None:
        for key in keys:
            pair = self.counts.setdefault(key, [0, 0])
            pair[0] += errors
            pair[1] += words

    def wer(self, key: str) -> float | None:
        errors, words = self.counts.get(key, (0, 0))
        return round(errors / words, 4) if words else None


def group_keys(kind: str, voice: str) -> list[str]:
    """The groups an utterance counts in: ``kind/family`` for kind and family each possibly ``all``, and its voice."""
    family = voice_family(voice)
    return [f"{k}/{f}" for k in (kind, ALL) for f in (family, ALL)] + [f"voice/{voice}"]


def run_systems(transcribers: Mapping[str, Callable[[np.ndarray, str], str]], arrays: Mapping[str, np.ndarray],
                limit: int | None = None) -> tuple[dict[str, Tally], list[dict[str, Any]], float]:
    """Every utterance through every system in turn: (tally per system, per-utterance hypotheses, audio seconds)."""
    audio = signals(arrays, limit)
    tallies = {name: Tally() for name in transcribers}
    details = []
    for transcribe in transcribers.values():
        transcribe(audio[0], str(arrays["kinds"][0]))  # warm-up
    for i, signal in enumerate(audio):
        kind, voice, reference = str(arrays["kinds"][i]), str(arrays["voices"][i]), str(arrays["texts"][i]).split()
        row: dict[str, Any] = {"voice": voice, "kind": kind, "reference": " ".join(reference), "hypotheses": {}}
        for name, transcribe in transcribers.items():
            began = time.perf_counter()
            text = transcribe(signal, kind)
            tallies[name].seconds += time.perf_counter() - began
            if kind == OUT_OF_GRAMMAR:  # no WER: does it give text at all?
                tallies[name].add_out_of_grammar(voice_family(voice), bool(text.split()))
            else:
                tallies[name].add(group_keys(kind, voice), edit_distance(reference, text.split()), len(reference))
            row["hypotheses"][name] = text
        details.append(row)
    return tallies, details, sum(s.size for s in audio) / SAMPLE_RATE


def system_report(tally: Tally, audio_seconds: float) -> dict[str, Any]:
    """WER overall, per kind, per family, per kind and family, per voice; RTF."""
    keys = sorted(tally.counts)
    kinds = sorted({k.split("/")[0] for k in keys if not k.startswith("voice/")} - {ALL})
    families = sorted({k.split("/")[1] for k in keys if not k.startswith("voice/")} - {ALL})
    return {
        "wer_all": tally.wer(f"{ALL}/{ALL}"),
        "wer_by_kind": {k: tally.wer(f"{k}/{ALL}") for k in kinds},
        "wer_by_family": {f: tally.wer(f"{ALL}/{f}") for f in families},
        "wer_by_kind_and_family": {f"{k}/{f}": tally.wer(f"{k}/{f}") for k in kinds for f in families
                                   if f"{k}/{f}" in tally.counts},
        "wer_by_voice": {k.split("/", 1)[1]: tally.wer(k) for k in keys if k.startswith("voice/")},
        "words": {k: n for k, (_, n) in sorted(tally.counts.items()) if not k.startswith("voice/")},
        "out_of_grammar_with_text": {key: {"utterances": hits, "of": total, "rate": round(hits / total, 4)}
                                     for key, (hits, total) in sorted(tally.out_of_grammar.items())},
        "rtf": round(tally.seconds / audio_seconds, 5),
    }


def kind_blind(transcribe: Callable[[np.ndarray], str]) -> Callable[[np.ndarray, str], str]:
    """A transcriber that is not told the utterance's kind."""
    def run(audio: np.ndarray, kind: str) -> str:
        return transcribe(audio)

    return run


def sphinx_transcribers(decoders: Mapping[str, SphinxDecoder]) -> dict[str, Callable[[np.ndarray, str], str]]:
    """PocketSphinx told the utterance's kind (its kind's grammar; out-of-grammar utterances: the whole grammar), and
    not told (the whole grammar)."""
    def per_kind(audio: np.ndarray, kind: str) -> str:
        return decoders.get(kind, decoders[ALL]).transcribe(audio)

    return {SPHINX_SYSTEMS[0]: per_kind, SPHINX_SYSTEMS[1]: kind_blind(decoders[ALL].transcribe)}


def tune(arrays: Mapping[str, np.ndarray], dictionary: Path, grid: Sequence[SphinxSettings] = TUNING_GRID,
         limit: int | None = None) -> tuple[SphinxSettings, list[dict[str, Any]]]:
    """The grid's settings with the lowest whole-grammar WER on ``arrays`` (validation), and every try's WER."""
    tries = []
    for settings in grid:
        decoder = SphinxDecoder(jsgf(), dictionary, settings)
        tallies, _, seconds = run_systems({"whole": kind_blind(decoder.transcribe)}, arrays, limit)
        wer = tallies["whole"].wer(f"{ALL}/{ALL}")
        tries.append({**settings.to_dict(), "wer_all": wer, "rtf": round(tallies["whole"].seconds / seconds, 5)})
        print(f"[tune] {settings.to_dict()}: validation whole-grammar WER {wer}, RTF {tries[-1]['rtf']}", flush=True)
    best = min(range(len(grid)), key=lambda i: (tries[i]["wer_all"], i))
    return grid[best], tries


def compare(model_dir: Path, arrays: Mapping[str, np.ndarray], settings: SphinxSettings = SPHINX_SETTINGS,
            limit: int | None = None, validation: Mapping[str, np.ndarray] | None = None) -> dict[str, Any]:
    """The side-by-side run (with ``validation``: PocketSphinx settings tuned on it first); the report as a dict."""
    report: dict[str, Any] = {"model": str(model_dir), "chunk_seconds": CHUNK_SECONDS}
    with tempfile.TemporaryDirectory() as folder:
        dictionary, entries = sphinx_dictionary(Path(folder))
        tuning = None
        if validation is not None:
            settings, tuning = tune(validation, dictionary, limit=limit)
        transcribers: dict[str, Callable[[np.ndarray, str], str]] = {}
        manifest_grammar: Mapping[str, Any] | None = None
        for name, precision in zip(LSTM_SYSTEMS, ("float", "int8")):
            model = StreamingModel.load(model_dir, backend="onnx", precision=precision, threads=1)
            recognizer = SpeechRecognizer(model)
            manifest_grammar = recognizer.settings.grammar
            transcribers[name] = kind_blind(lstm_transcriber(recognizer))
        decoders = sphinx_decoders(dictionary, settings)
        same = None
        if manifest_grammar is not None and "arcs" in manifest_grammar:
            difference = language_difference(decoders[ALL].fsg(), automaton_fsg(manifest_grammar))
            if difference is not None:
                raise ValueError(f"the whole-grammar JSGF and the manifest's grammar differ on {difference}")
            same = True
        transcribers.update(sphinx_transcribers(decoders))
        tallies, details, seconds = run_systems(transcribers, arrays, limit)
    report["pocketsphinx"] = {
        "version": _version("pocketsphinx"), "settings": settings.to_dict(), "tuning_on_validation": tuning,
        "added_pronunciations": {w: p for w, p in entries.items() if p == [EXTRA_PRONUNCIATIONS.get(w)]},
        "whole_grammar_same_language_as_manifest": same,
        "per_kind_grammar_note": "PocketSphinx is told each utterance's kind (lstm-edge is not): generous to it",
    }
    report["utterances"] = len(details)
    report["audio_seconds"] = round(seconds, 1)
    report["systems"] = {name: system_report(tally, seconds) for name, tally in tallies.items()}
    report["utterance_hypotheses"] = details
    return report


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def markdown(report: Mapping[str, Any]) -> str:
    """Rows: kind x voice family (WER %, words); columns: the four systems; then an RTF row."""
    systems = report["systems"]
    first = systems[SYSTEMS[0]]
    kinds = list(first["wer_by_kind"]) + [ALL]
    families = list(first["wer_by_family"]) + [ALL]
    header = ["task", "voices", "words", "lstm-edge float", "lstm-edge int8", "PocketSphinx per-kind grammar*",
              "PocketSphinx whole grammar"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for kind in kinds:
        for family in families:
            key = f"{kind}/{family}"
            words = first["words"].get(key)
            if not words:
                continue
            cells = [_percent(_wer(systems[name], kind, family)) for name in SYSTEMS]
            lines.append(f"| {kind} | {family} | {words} | " + " | ".join(cells) + " |")
    out_of_grammar = first["out_of_grammar_with_text"].get(ALL)
    if out_of_grammar:
        cells = [f"{systems[name]['out_of_grammar_with_text'][ALL]['rate'] * 100:.1f}" for name in SYSTEMS]
        lines.append(f"| out of grammar: % with text | all | {out_of_grammar['of']} utt. | " + " | ".join(cells)
                     + " |")
    lines.append("| RTF (1 thread) | | | " + " | ".join(f"{systems[name]['rtf']:.3f}" for name in SYSTEMS) + " |")
    lines.append("")
    lines.append("WER %. *PocketSphinx is told each utterance's kind and decodes with that kind's grammar alone "
                 "(generous to it); lstm-edge and 'whole grammar' decode with the whole grammar.")
    settings = report["pocketsphinx"]["settings"]
    lines.append(f"PocketSphinx {report['pocketsphinx']['version']}, options {settings['options'] or 'default'}, "
                 + ("whole utterances (batch CMN: it sees each utterance before decoding it)"
                    if settings["whole_utterance"] else "100 ms chunks (streaming)") + ".")
    return "\n".join(lines)


def _wer(system: Mapping[str, Any], kind: str, family: str) -> float | None:
    if kind == ALL and family == ALL:
        return system["wer_all"]
    if family == ALL:
        return system["wer_by_kind"].get(kind)
    if kind == ALL:
        return system["wer_by_family"].get(family)
    return system["wer_by_kind_and_family"].get(f"{kind}/{family}")


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="directory of the ASR recipe's validation/test .npz")
    parser.add_argument("--split", default="test", choices=("validation", "test"))
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "asr" / "export")
    parser.add_argument("--limit", type=int, default=None, help="first N utterances only (also when tuning)")
    parser.add_argument("--tune", action="store_true", help="pick the PocketSphinx settings from TUNING_GRID on the "
                                                            "validation split first")
    parser.add_argument("--sphinx-settings", type=json.loads, default=None,
                        help='PocketSphinx settings to use instead of SPHINX_SETTINGS, JSON: {"options": {"beam": '
                             '1e-48, ...}, "whole_utterance": true}')
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "vs_pocketsphinx.json")
    args = parser.parse_args(argv)
    if args.tune and args.split == "validation":
        parser.error("--tune picks settings on the validation split: evaluate them on --split test")
    if args.tune and args.sphinx_settings is not None:
        parser.error("--tune and --sphinx-settings: expected one of them")
    settings = SphinxSettings.from_dict(args.sphinx_settings) if args.sphinx_settings else SPHINX_SETTINGS
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    arrays = load_split(args.data, args.split)
    validation = load_split(args.data, "validation") if args.tune else None
    report = {"machine": {"machine": platform.machine(), "python": platform.python_version()},
              "data": str(args.data), "split": args.split,
              **compare(args.model, arrays, settings, args.limit, validation)}
    report["pocketsphinx"]["settings_from"] = ("--tune on the validation split" if args.tune else "--sphinx-settings"
                                               if args.sphinx_settings else "SPHINX_SETTINGS")
    print(markdown(report))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
