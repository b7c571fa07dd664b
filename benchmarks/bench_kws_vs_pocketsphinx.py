"""Keyword spotting of the shipped lstm-edge keyword model against CMU PocketSphinx's keyword-list search, same audio.

Both systems listen to the same long streams (``streams-{split}.npz`` of ``recipes/kws/synth.py``): "negative"
running speech without keywords (its hours are the false-alarm denominator), keywords inside phrases ("phrase") and
keywords said between two other words ("apart"). Every system's detections go through one matching rule, that of
``recipes/kws/detection.py``: a detection of keyword L finds the first unfound event of label L that it overlaps,
``[event_start, event_end + MATCH_SLACK_S]``; every other detection is a false alarm; false alarms per hour count
those in negative streams. ``score_detections`` applies the rule to any (label, start_s, end_s) lists; for lstm-edge
it is checked to give exactly what ``detection.score_threshold`` gives (the run stops if not).

- lstm-edge, ONNX float and int8 (one thread): ``detection.runtime_scorer`` + ``stream_posteriors`` (the frontend
  over each stream, the model pushed 100 frames at a time) + ``score_threshold``, at the manifest's detector settings
  (as shipped; the recipe's validation report beside the export, ``detection_validation.json``, gives the budget its
  threshold was chosen for) and, rows "budget threshold", at the threshold of ``detection.THRESHOLDS`` that
  ``detection.choose_threshold`` picks on the tuning streams for ``--budget`` (one threshold for all keywords).
- PocketSphinx (``pip install pocketsphinx``; its en-us acoustic model, the keywords' CMUdict pronunciations, other
  settings its defaults: ``kws_plp`` 0.1, ``kws_delay`` 10 frames, live CMN carried from stream to stream) in
  keyword-list mode: a kws file of ``keyword /threshold/`` lines. Each stream is one utterance (``start_utt``, the
  int16 audio through ``process_raw`` in 100 ms chunks, ``end_utt``); its detections are then read from ``seg()``:
  the keyword, ``start_frame / 100`` s and ``(end_frame + 1) / 100`` s (end frame inclusive, 100 frames/s), and
  ``prob``, from which ``detection_score`` recovers the integer score PocketSphinx compared with the threshold
  (``src/kws_search.c``: the keyword's path score minus the best phone-loop score, reported as
  ``logbase ** (score - KWS_MAX)``; thresholds become integers by ``threshold_score``).

Per-keyword PocketSphinx thresholds are tuned on the validation streams only (``--tune-split``): for each keyword,
the threshold of ``GRID`` with the highest recall of that keyword whose false alarms per hour stay within
``--budget`` / number of keywords (ties and the no-threshold-within case as ``detection.choose_threshold`` decides
for lstm-edge's one threshold; per-keyword thresholds are the more generous setting; with about an hour of
validation negatives, 1/h over ten keywords allows each no false alarm there). The search does not depend on
thresholds (they only gate which candidates become detections), so one *permissive* pass at the grid's lowest
threshold, filtered by score afterwards, stands for every grid level: that needs 3 decoding passes in all
(permissive validation pass, a check pass on validation with the chosen thresholds, the evaluation pass). Filtering
equals decoding at the stricter threshold except where PocketSphinx merges overlapping candidates of one keyword
differently: the filter then keeps a rare extra detection (measured: 42 of 29,621 detections on the smoke set over
27 levels, none at 1e-5 or above; on 26.5 min of full-size validation streams 5 of 6,087 at 1e-10, 1 of 840 at 1,
none at 1e+10 and 1e+20). The check pass reports how many detections differ at the chosen thresholds, and its
validation numbers are the ones reported.

RTF = processing seconds / audio seconds of the evaluation split, one thread (lstm-edge: frontend + model +
detector; PocketSphinx: ``process_raw`` + ``seg``; loading excluded).

Run: ``python benchmarks/bench_kws_vs_pocketsphinx.py --data DIR [--tune-split validation] [--split test]
[--export-dir models/kws/export] [--budget 1.0] [--negative-minutes N] [--out
benchmarks/results/kws_vs_pocketsphinx.json]`` (DIR from ``python -m lstm_edge.recipes.kws.synth --out DIR``).
"""

from __future__ import annotations

import os

# One thread for numpy's BLAS too (read when numpy loads); onnxruntime gets threads=1 from StreamingModel.load.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse
import json
import math
import platform
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from bench_vs_pocketsphinx import ROOT, _version

from lstm_edge.recipes.asr.jsgf import dictionary_text, pronunciations
from lstm_edge.recipes.kws.detection import (
    MATCH_SLACK_S,
    choose_threshold,
    runtime_scorer,
    score_threshold,
    stream_posteriors,
    streams_summary,
    sweep,
)
from lstm_edge.recipes.kws.synth import NON_KEYWORD_LABELS, SAMPLE_RATE, load_streams
from lstm_edge.runtime.asr import CHUNK_SECONDS
from lstm_edge.runtime.kws import DetectorConfig, KeywordSpotter

PRECISIONS: tuple[str, ...] = ("float", "int8")
SPHINX = "PocketSphinx kws"
# Thresholds tried per keyword, 1e-40 .. 1e+50 by decades (parsed from text: the kws file gives PocketSphinx the
# same double). The top reaches KWS_MAX's "about 1e+50": on 10 min of full-size validation negatives, "off" still
# had a false alarm at 1e+30.
GRID: tuple[float, ...] = tuple(float(f"1e{exponent}") for exponent in range(-40, 51))
SENSCR_SHIFT = 10  # PocketSphinx shifts acoustic scores (and thresholds) right by this many bits
KWS_MAX = 1500  # src/kws_search.c: a detection's reported prob is its score minus this

Detections = list[tuple[str, float, float]]  # (label, start_s, end_s) of one stream


class DataError(ValueError):
    """Streams or models that do not fit the benchmark."""


@dataclass(frozen=True)
class SphinxDetection:
    label: str
    start: float  # seconds from the start of the stream
    end: float
    score: int  # PocketSphinx's integer score, compared with threshold_score(threshold)


def threshold_score(threshold: float, logbase: float) -> int:
    """The integer PocketSphinx compares scores with for a kws-file threshold (``kws_search_read_list``)."""
    return int(math.log(threshold) * (1.0 / math.log(logbase))) >> SENSCR_SHIFT


def detection_score(prob: float, logbase: float) -> int:
    """The integer score of a keyword detection back from ``Segment.prob`` (``logbase ** (score - KWS_MAX)``)."""
    return round(math.log(prob) / math.log(logbase)) + KWS_MAX


def streams_of(data_dir: Path, split: str) -> dict[str, np.ndarray]:
    path = Path(data_dir) / f"streams-{split}.npz"
    if not path.is_file():
        present = sorted(p.name for p in Path(data_dir).glob("streams-*.npz")) if Path(data_dir).is_dir() else None
        raise DataError(f"{split} streams: expected {path} (python -m lstm_edge.recipes.kws.synth --out "
                        f"{data_dir}), got " + ("no such folder" if present is None else
                                                f"no such file ({data_dir} holds {present or 'no stream files'})"))
    return load_streams(data_dir, split)


def limit_negative(streams: Mapping[str, np.ndarray], seconds: float) -> dict[str, np.ndarray]:
    """The streams with only the first ``seconds`` of negative audio (the last negative stream kept cut short);
    keyword streams unchanged."""
    offsets, kinds = streams["offsets"], streams["stream_kinds"]
    left = int(round(seconds * SAMPLE_RATE))
    lengths = []
    for number, kind in enumerate(kinds):
        length = int(offsets[number + 1] - offsets[number])
        if kind == "negative":
            length = min(length, left)
            left -= length
        lengths.append(length)
    kept = [number for number, length in enumerate(lengths) if length > 0]
    renumber = np.full(len(kinds), -1, dtype=np.int64)
    renumber[kept] = np.arange(len(kept))
    events = np.flatnonzero((renumber[streams["event_stream"]] >= 0)
                            & (streams["event_end"] <= np.asarray(lengths)[streams["event_stream"]]))
    limited = dict(streams)
    limited.update(
        audio=np.concatenate([streams["audio"][offsets[n]:offsets[n] + lengths[n]] for n in kept]),
        offsets=np.concatenate([[0], np.cumsum([lengths[n] for n in kept])]).astype(np.int64),
        stream_kinds=kinds[kept], event_stream=renumber[streams["event_stream"][events]],
        event_label=streams["event_label"][events], event_start=streams["event_start"][events],
        event_end=streams["event_end"][events])
    return limited


def score_detections(streams: Mapping[str, np.ndarray], detections: Sequence[Detections],
                     labels: Sequence[str]) -> dict[str, Any]:
    """``detection.score_threshold``'s matching and numbers for detections given per stream (in the order given),
    plus the false alarms of each label in negative streams and the negative hours."""
    kinds = streams["stream_kinds"]
    if len(detections) != len(kinds):
        raise DataError(f"detections: expected one list per stream ({len(kinds)}), got {len(detections)}")
    durations = np.diff(streams["offsets"]) / SAMPLE_RATE
    events_of: dict[tuple[int, str], list[tuple[int, float, float]]] = {}
    for event in range(streams["event_label"].size):
        key = (int(streams["event_stream"][event]), labels[int(streams["event_label"][event])])
        events_of.setdefault(key, []).append((event, streams["event_start"][event] / SAMPLE_RATE,
                                              streams["event_end"][event] / SAMPLE_RATE + MATCH_SLACK_S))
    found = np.zeros(streams["event_label"].size, dtype=bool)
    negative_alarms, positive_alarms = 0, 0
    alarms_per_label: dict[str, int] = {}
    negative_per_label: dict[str, int] = {}
    for number, stream_detections in enumerate(detections):
        negative = kinds[number] == "negative"
        for label, start, end in stream_detections:
            matched = next((event for event, first, last in events_of.get((number, label), ())
                            if not found[event] and start <= last and end >= first), None)
            if matched is not None:
                found[matched] = True
                continue
            alarms_per_label[label] = alarms_per_label.get(label, 0) + 1
            if negative:
                negative_alarms += 1
                negative_per_label[label] = negative_per_label.get(label, 0) + 1
            else:
                positive_alarms += 1
    negative_hours = float(durations[kinds == "negative"].sum()) / 3600
    positive_hours = float(durations[kinds != "negative"].sum()) / 3600
    event_kinds = kinds[streams["event_stream"]] if found.size else np.array([], dtype=str)
    per_keyword = {label: float(np.mean(found[streams["event_label"] == index])) for index, label in enumerate(labels)
                   if label not in NON_KEYWORD_LABELS and np.any(streams["event_label"] == index)}
    return {
        "recall": float(np.mean(found)) if found.size else 0.0,
        "recall_by_kind": {str(kind): float(np.mean(found[event_kinds == kind])) for kind in np.unique(event_kinds)},
        "events_by_kind": {str(kind): int(np.sum(event_kinds == kind)) for kind in np.unique(event_kinds)},
        "false_alarms_per_hour": negative_alarms / negative_hours if negative_hours else 0.0,
        "false_alarms": negative_alarms,
        "negative_hours": negative_hours,
        "false_alarms_in_keyword_streams_per_hour": positive_alarms / positive_hours if positive_hours else 0.0,
        "false_alarms_by_label": dict(sorted(alarms_per_label.items())),
        "negative_false_alarms_by_label": dict(sorted(negative_per_label.items())),
        "per_keyword_recall": per_keyword,
    }


def _differences(ours: Mapping[str, Any], theirs: Mapping[str, Any]) -> list[str]:
    """Keys of ``theirs`` whose values ``ours`` does not reproduce (floats to 1e-9)."""
    def same(a: Any, b: Any) -> bool:
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
        if isinstance(a, float) or isinstance(b, float):
            return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
        return bool(a == b)

    return [key for key in theirs if key != "threshold" and not same(ours.get(key), theirs[key])]


# lstm-edge ------------------------------------------------------------------------------------------------------


def lstm_edge_pass(streams: Mapping[str, np.ndarray], export_dir: Path,
                   precision: str) -> tuple[list[np.ndarray], list[str], dict[str, Any], DetectorConfig, float]:
    """Posteriors of every stream: (posteriors, labels, frontend, the manifest's detector, processing seconds)."""
    score, labels, frontend, detector = runtime_scorer(export_dir, "onnx", precision)
    if list(labels) != [str(label) for label in streams["labels"]]:
        raise DataError(f"{export_dir} labels: expected the streams' {list(streams['labels'])}, got {list(labels)}")
    score(streams["audio"][:SAMPLE_RATE])  # warm-up
    began = time.perf_counter()
    posteriors = stream_posteriors(streams, score)
    return posteriors, labels, frontend, DetectorConfig.from_manifest(detector), time.perf_counter() - began


def lstm_edge_result(streams: Mapping[str, np.ndarray], posteriors: Sequence[np.ndarray], labels: Sequence[str],
                     frontend: Mapping[str, Any], config: DetectorConfig, model_seconds: float) -> dict[str, Any]:
    """``detection.score_threshold`` for one detector setting, its RTF, and the check that ``score_detections``
    gives the same numbers for the same detections."""
    began = time.perf_counter()
    result = score_threshold(streams, posteriors, labels, frontend, config)
    seconds = model_seconds + time.perf_counter() - began
    spotter = KeywordSpotter(None, config, labels=labels, frontend=frontend)
    detections = []
    for posterior in posteriors:
        stream = spotter.create_stream()
        detections.append([(d.label, d.start, d.end) for d in stream.push_posteriors(posterior) + stream.flush()])
    ours = score_detections(streams, detections, labels)
    differing = _differences(ours, result)
    if differing:
        raise RuntimeError(f"score_detections and detection.score_threshold differ on {differing}: expected the "
                           "same matching rule (has detection.py changed?)")
    return {**ours, **result, "detector": asdict(config), "rtf": seconds / _audio_seconds(streams),
            "seconds": round(seconds, 2)}


def run_lstm_edge(tune: Mapping[str, np.ndarray], evaluate: Mapping[str, np.ndarray], export_dir: Path,
                  precision: str, budget: float) -> dict[str, dict[str, Any]]:
    """Results on both splits at the manifest's threshold and at the threshold ``detection.choose_threshold``
    picks on ``tune`` for ``budget`` (rows ``{setting: {"tune": ..., "evaluate": ...}}``)."""
    tune_pass = lstm_edge_pass(tune, export_dir, precision)
    evaluate_pass = lstm_edge_pass(evaluate, export_dir, precision)
    manifest = tune_pass[3]
    swept = sweep(tune, tune_pass[0], tune_pass[1], tune_pass[2], manifest)
    chosen = replace(manifest, threshold=choose_threshold(swept, budget)["threshold"])
    return {setting: {"tune": lstm_edge_result(tune, *tune_pass[:3], config, tune_pass[4]),
                      "evaluate": lstm_edge_result(evaluate, *evaluate_pass[:3], config, evaluate_pass[4])}
            for setting, config in (("manifest", manifest), ("budget", chosen))}


# PocketSphinx ---------------------------------------------------------------------------------------------------


def sphinx_dictionary(folder: Path, keywords: Sequence[str]) -> tuple[Path, dict[str, list[str]]]:
    """The keywords' CMUdict pronunciations written into ``folder`` (the keyword search uses the first of each)."""
    from pocketsphinx import get_model_path

    entries = pronunciations(keywords, Path(get_model_path("en-us/cmudict-en-us.dict")))
    path = folder / "keywords.dict"
    path.write_text(dictionary_text(entries))
    return path, entries


class SphinxSpotter:
    """One PocketSphinx decoder in keyword-list mode with one threshold per keyword."""

    def __init__(self, thresholds: Mapping[str, float], dictionary: Path, folder: Path) -> None:
        from pocketsphinx import Decoder

        kws = folder / "keywords.kws"
        kws.write_text("".join(f"{word} /{threshold!r}/\n" for word, threshold in thresholds.items()))
        self.decoder = Decoder(lm=None, kws=str(kws), dict=str(dictionary), loglevel="FATAL")
        self.logbase = float(self.decoder.config["logbase"])
        self.frame_rate = int(self.decoder.config["frate"])
        self.chunk = int(round(CHUNK_SECONDS * SAMPLE_RATE))

    def settings(self) -> dict[str, Any]:
        settings = {key: self.decoder.config[key] for key in ("kws_plp", "kws_delay", "beam", "logbase", "frate")}
        # the model's feat.params says batch; fed in chunks, src/feat/feat.c (feat_cmn) switches to live CMN
        return settings | {"cmn": f"live (configured {self.decoder.config['cmn']!r})", "chunk_samples": self.chunk}

    def detect(self, pcm: np.ndarray) -> list[SphinxDetection]:
        """The detections of one stream (one utterance, fed in 100 ms chunks), by start time."""
        pcm = np.ascontiguousarray(pcm, dtype=np.int16)
        self.decoder.start_utt()
        for start in range(0, pcm.size, self.chunk):
            self.decoder.process_raw(pcm[start:start + self.chunk].tobytes(), False, False)
        self.decoder.end_utt()
        found = [SphinxDetection(segment.word.strip(), segment.start_frame / self.frame_rate,
                                 (segment.end_frame + 1) / self.frame_rate,
                                 detection_score(segment.prob, self.logbase))
                 for segment in self.decoder.seg() or ()]
        return sorted(found, key=lambda d: (d.start, d.end))


def sphinx_pass(streams: Mapping[str, np.ndarray], spotter: SphinxSpotter) -> tuple[list[list[SphinxDetection]],
                                                                                     float]:
    """Every stream through the decoder: (detections per stream, processing seconds)."""
    offsets = streams["offsets"]
    began = time.perf_counter()
    detections = [spotter.detect(streams["audio"][offsets[n]:offsets[n + 1]]) for n in range(len(offsets) - 1)]
    return detections, time.perf_counter() - began


def at_thresholds(detections: Sequence[Sequence[SphinxDetection]], scores: Mapping[str, int]) -> list[Detections]:
    """The detections a stricter pass would give: each keyword's at or above its threshold's score."""
    return [[(d.label, d.start, d.end) for d in stream if d.score >= scores[d.label]] for stream in detections]


def tune_thresholds(streams: Mapping[str, np.ndarray], detections: Sequence[Sequence[SphinxDetection]],
                    labels: Sequence[str], keywords: Sequence[str], budget: float, logbase: float,
                    grid: Sequence[float] = GRID) -> tuple[dict[str, float], dict[str, Any]]:
    """Each keyword's threshold from ``grid`` on permissive-pass detections: (thresholds, per-keyword sweep)."""
    rows: dict[str, list[dict[str, Any]]] = {keyword: [] for keyword in keywords}
    for threshold in grid:
        score = threshold_score(threshold, logbase)
        result = score_detections(streams, at_thresholds(detections, dict.fromkeys(keywords, score)), labels)
        for keyword in keywords:
            alarms = result["negative_false_alarms_by_label"].get(keyword, 0)
            rows[keyword].append({"threshold": threshold, "recall": result["per_keyword_recall"].get(keyword, 0.0),
                                  "false_alarms": alarms, "false_alarms_per_hour":
                                  alarms / result["negative_hours"] if result["negative_hours"] else 0.0})
    per_keyword_budget = budget / len(keywords)
    chosen = {keyword: choose_threshold(rows[keyword], per_keyword_budget) for keyword in keywords}
    return ({keyword: row["threshold"] for keyword, row in chosen.items()},
            {"per_keyword_budget_per_hour": per_keyword_budget, "chosen": chosen, "sweep": rows})


def _mismatches(expected: Sequence[Detections], got: Sequence[Detections]) -> int:
    """Detections in one list and not the other, over all streams (times compared to the frame)."""
    def frames(stream: Detections) -> list[tuple[str, int, int]]:
        return [(label, round(start * 100), round(end * 100)) for label, start, end in stream]

    total = 0
    for ours, theirs in zip(expected, got):
        a, b = Counter(frames(ours)), Counter(frames(theirs))
        total += sum(((a - b) + (b - a)).values())
    return total


def run_pocketsphinx(tune: Mapping[str, np.ndarray], evaluate: Mapping[str, np.ndarray], labels: Sequence[str],
                     budget: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """Tune per-keyword thresholds on ``tune``, then decode ``evaluate``: (result on evaluate, tuning report)."""
    keywords = [label for label in labels if label not in NON_KEYWORD_LABELS]
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        dictionary, entries = sphinx_dictionary(folder, keywords)
        permissive = SphinxSpotter(dict.fromkeys(keywords, min(GRID)), dictionary, folder)
        passes = []
        candidates, seconds = sphinx_pass(tune, permissive)
        passes.append({"split": "tune", "thresholds": f"all {min(GRID)!r}", "seconds": round(seconds, 1),
                       "rtf": seconds / _audio_seconds(tune)})
        _log(f"PocketSphinx permissive pass on the tuning streams: {seconds:.0f} s")
        thresholds, tuning = tune_thresholds(tune, candidates, labels, keywords, budget, permissive.logbase)
        spotter = SphinxSpotter(thresholds, dictionary, folder)
        checked, seconds = sphinx_pass(tune, spotter)
        passes.append({"split": "tune", "thresholds": "chosen", "seconds": round(seconds, 1),
                       "rtf": seconds / _audio_seconds(tune)})
        exact = [[(d.label, d.start, d.end) for d in stream] for stream in checked]
        scores = {keyword: threshold_score(t, spotter.logbase) for keyword, t in thresholds.items()}
        tuning["filter_check"] = {
            "detections_at_chosen_thresholds": sum(map(len, exact)),
            "differing_from_filtered_permissive_pass": _mismatches(at_thresholds(candidates, scores), exact)}
        tuning["validation"] = score_detections(tune, exact, labels)
        _log(f"PocketSphinx check pass on the tuning streams: {seconds:.0f} s, "
             f"{tuning['filter_check']['differing_from_filtered_permissive_pass']} detections differ from the filter")
        found, seconds = sphinx_pass(evaluate, spotter)
        passes.append({"split": "evaluate", "thresholds": "chosen", "seconds": round(seconds, 1),
                       "rtf": seconds / _audio_seconds(evaluate)})
        _log(f"PocketSphinx pass on the evaluation streams: {seconds:.0f} s")
        result = score_detections(evaluate, [[(d.label, d.start, d.end) for d in s] for s in found], labels)
        settings = spotter.settings()
    result.update(thresholds=thresholds, rtf=seconds / _audio_seconds(evaluate), seconds=round(seconds, 2))
    tuning.update(passes=passes, settings=settings,
                  pronunciations={word: variants[0] for word, variants in entries.items()},
                  grid={"from": min(GRID), "to": max(GRID), "levels": len(GRID)})
    return result, tuning


# report ---------------------------------------------------------------------------------------------------------


def _audio_seconds(streams: Mapping[str, np.ndarray]) -> float:
    return float(streams["audio"].size) / SAMPLE_RATE


def _log(message: str) -> None:
    print(f"[kws-vs-pocketsphinx] {message}", flush=True)


def compare(tune: Mapping[str, np.ndarray], evaluate: Mapping[str, np.ndarray], export_dir: Path,
            budget: float) -> dict[str, Any]:
    """Every system on the evaluation streams (and lstm-edge on the tuning streams too); the report as a dict."""
    labels = [str(label) for label in evaluate["labels"]]
    if [str(label) for label in tune["labels"]] != labels:
        raise DataError(f"tuning streams labels: expected the evaluation streams' {labels}, got {list(tune['labels'])}")
    systems: dict[str, Any] = {}
    validation: dict[str, Any] = {}
    for precision in PRECISIONS:
        for setting, splits in run_lstm_edge(tune, evaluate, export_dir, precision, budget).items():
            name = f"lstm-edge onnx {precision}" + (", budget threshold" if setting == "budget" else "")
            systems[name], validation[name] = splits["evaluate"], splits["tune"]
        _log(f"lstm-edge onnx {precision}: {systems[f'lstm-edge onnx {precision}']['seconds']:.0f} s")
    systems[SPHINX], tuning = run_pocketsphinx(tune, evaluate, labels, budget)
    validation[SPHINX] = tuning.pop("validation")
    keys = ("recall", "recall_by_kind", "false_alarms_per_hour", "false_alarms", "negative_hours")
    return {"systems": systems, "tune_split_results": {name: {k: r[k] for k in keys} for name, r in validation.items()},
            "pocketsphinx": {"version": _version("pocketsphinx"), "model": "en-us (pocketsphinx wheel)", **tuning},
            "lstm_edge": {"version": _version("lstm-edge"), "onnxruntime": _version("onnxruntime"),
                          "export_dir": str(export_dir)}}


def markdown(report: Mapping[str, Any]) -> str:
    """system | in phrase | apart | false alarms/h | RTF, then the PocketSphinx thresholds."""
    lines = ["| system | in phrase | apart | false alarms/h | RTF (1 thread) |", "|---|---|---|---|---|"]
    for name, result in report["systems"].items():
        cells = []
        for kind in ("phrase", "apart"):
            events = result["events_by_kind"].get(kind, 0)
            recall = result["recall_by_kind"].get(kind)
            cells.append("-" if recall is None else f"{100 * recall:.1f}% ({round(recall * events)}/{events})")
        cells.append(f"{result['false_alarms_per_hour']:.2f} ({result['false_alarms']} in "
                     f"{result['negative_hours']:.3g} h)")
        cells.append(f"{result['rtf']:.4f}")
        label = name if "detector" not in result else f"{name} (threshold {result['threshold']})"
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    sphinx = report["pocketsphinx"]
    lines.append("")
    lines.append(f"{report['split']} streams; recall of keywords in phrases / said apart; false alarms in keyword-free "
                 f"speech. PocketSphinx {sphinx['version']} thresholds, tuned on {report['tune_split']} "
                 f"(<= {sphinx['per_keyword_budget_per_hour']:.3g} false alarms/h per keyword): "
                 + ", ".join(f"{k} {t:.0e}" for k, t in report["systems"][SPHINX]["thresholds"].items()) + ".")
    lines.append(f"On {report['tune_split']}, false alarms/h: " + ", ".join(
        f"{name} {result['false_alarms_per_hour']:.2f}" for name, result in report["tune_split_results"].items())
        + f"; the filter check found {sphinx['filter_check']['differing_from_filtered_permissive_pass']} of "
        f"{sphinx['filter_check']['detections_at_chosen_thresholds']} PocketSphinx detections differing.")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="output folder of lstm_edge.recipes.kws.synth")
    parser.add_argument("--tune-split", default="validation", choices=("validation", "test"))
    parser.add_argument("--split", default="test", choices=("validation", "test"))
    parser.add_argument("--export-dir", type=Path, default=ROOT / "models" / "kws" / "export")
    parser.add_argument("--budget", type=float, default=1.0,
                        help="false alarms per hour for all keywords together (each keyword: budget / keywords)")
    parser.add_argument("--negative-minutes", type=float, default=None,
                        help="use only the first N minutes of negative audio of each split (quick runs)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "kws_vs_pocketsphinx.json")
    args = parser.parse_args(argv)
    if args.tune_split == args.split:
        parser.error(f"--tune-split and --split: expected two different splits, got {args.split} twice")
    if args.budget <= 0 or (args.negative_minutes is not None and args.negative_minutes <= 0):
        parser.error("--budget and --negative-minutes: expected positive numbers")
    started = time.perf_counter()
    tune, evaluate = streams_of(args.data, args.tune_split), streams_of(args.data, args.split)
    if args.negative_minutes is not None:
        tune, evaluate = (limit_negative(s, 60 * args.negative_minutes) for s in (tune, evaluate))
    report: dict[str, Any] = {
        "machine": {"machine": platform.machine(), "python": platform.python_version(), "cpus": os.cpu_count()},
        "data": str(args.data), "tune_split": args.tune_split, "split": args.split, "budget_per_hour": args.budget,
        "negative_minutes_limit": args.negative_minutes, "match_slack_s": MATCH_SLACK_S,
        "streams": {args.tune_split: streams_summary(tune), args.split: streams_summary(evaluate)},
        "audio_seconds": {args.tune_split: round(_audio_seconds(tune), 1),
                          args.split: round(_audio_seconds(evaluate), 1)},
        **compare(tune, evaluate, args.export_dir, args.budget)}
    report["seconds"] = round(time.perf_counter() - started, 1)
    print(markdown(report))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
