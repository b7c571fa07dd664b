"""Streaming detection metrics on long held-out recordings: recall at a false-alarm rate, over detector thresholds.

The streams (``streams-{split}.npz`` of the synth recipe, voices of that split only) are *negative* running speech
with no keyword, whose length is the false-alarm denominator (false alarms per hour of non-keyword speech, as
Porcupine, openWakeWord and Speech-Commands papers report), and *positive* streams with keywords between sentences
(recall). The model runs once per stream; the runtime's own detector (``KeywordStream.push_posteriors``) is then
swept over ``THRESHOLDS``. A keyword counts as found when a detection of its label overlaps
``[start, end + MATCH_SLACK_S]``; every other detection is a false alarm.

Two uses:

* ``--model-dir models/kws --split validation --choose-threshold``: the float torch model on validation streams;
  the lowest threshold whose false alarms per hour stay within ``--max-false-alarms-per-hour`` becomes the
  detector's default (written to ``config.json``'s ``detector``, which the export copies into the manifest).
* ``--export-dir models/kws/export --split test``: the deployed files (runtime only; float and int8) on test
  streams, at the manifest's threshold and over the whole sweep; ``--plot`` draws the ROC-style curve.

    python -m lstm_edge.recipes.kws.detection --data DATA --model-dir models/kws --split validation \\
        --choose-threshold --out models/kws/detection_validation.json
    python -m lstm_edge.recipes.kws.detection --data DATA --export-dir models/kws/export --split test \\
        --validation-report models/kws/detection_validation.json --out models/kws/detection_report.json \\
        --plot docs/kws_detection.png
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from lstm_edge.recipes.kws.synth import NON_KEYWORD_LABELS, SAMPLE_RATE, load_streams
from lstm_edge.runtime.frontend import LogMelConfig, LogMelFrontend
from lstm_edge.runtime.kws import Detection, DetectorConfig, KeywordSpotter, softmax

# Denser above 0.97: posteriors of a trained model crowd there, and a budget of a few false alarms per hour falls
# between 0.98 and 0.99 (a custom-phrase run measured 34% recall at 0.98 and 9% at 0.99).
THRESHOLDS: tuple[float, ...] = (0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.92, 0.94, 0.96, 0.97, 0.975, 0.98,
                                  0.9825, 0.985, 0.9875, 0.99, 0.9925, 0.995, 0.998, 0.999)
MATCH_SLACK_S = 0.5
KIND_NAMES = {"phrase": "in phrases", "apart": "said apart"}
DEFAULT_MAX_FALSE_ALARMS_PER_HOUR = 1.0

Scorer = Callable[[np.ndarray], np.ndarray]  # int16 PCM -> per-frame logits [T, labels]


def torch_scorer(model_dir: Path) -> tuple[Scorer, list[str], dict[str, Any], dict[str, Any]]:
    """The float torch model of a trained model directory: (scorer, labels, frontend config, model config)."""
    import torch

    from lstm_edge.recipes.kws.model import load_model

    model, config = load_model(model_dir)
    frontend = LogMelFrontend(LogMelConfig.from_dict(config["frontend"]))

    def score(pcm: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(frontend.compute(pcm))[None])[0].numpy()

    return score, list(config["labels"]), dict(config["frontend"]), config


def runtime_scorer(export_dir: Path, backend: str, precision: str) -> tuple[Scorer, list[str], dict[str, Any],
                                                                             Mapping[str, Any] | None]:
    """A deployed model directory through the runtime (frontend + StreamingModel, 100-frame pushes)."""
    from lstm_edge.runtime.model import StreamingModel

    model = StreamingModel.load(export_dir, backend=backend, precision=precision)
    manifest = model.manifest
    if not manifest.frontend or not manifest.labels:
        raise ValueError(f"{export_dir}: expected a keyword-spotting model directory (frontend and labels)")
    frontend = LogMelFrontend(LogMelConfig.from_dict(dict(manifest.frontend)))

    def score(pcm: np.ndarray) -> np.ndarray:
        features = frontend.compute(pcm)
        stream = model.create_stream()
        return np.concatenate([stream.push(features[i:i + 100]) for i in range(0, len(features), 100)])

    return score, list(manifest.labels), dict(manifest.frontend), manifest.detector


def stream_posteriors(streams: Mapping[str, np.ndarray], score: Scorer) -> list[np.ndarray]:
    """Softmax posteriors [T, labels] of every stream."""
    offsets = streams["offsets"]
    return [softmax(score(streams["audio"][offsets[i]:offsets[i + 1]]).astype(np.float64))
            for i in range(len(offsets) - 1)]


def _smoothed_peaks(posteriors: np.ndarray, columns: Sequence[int], smoothing_frames: int) -> np.ndarray:
    """Per frame, the highest moving-average keyword posterior, as the detector smooths it (the first frames
    average over the frames seen so far)."""
    keywords = posteriors[:, columns]
    cumulative = np.cumsum(np.vstack([np.zeros((1, keywords.shape[1])), keywords]), axis=0)
    ends = np.arange(1, keywords.shape[0] + 1)
    starts = np.maximum(ends - smoothing_frames, 0)
    smoothed = (cumulative[ends] - cumulative[starts]) / (ends - starts)[:, None]
    return smoothed.max(axis=1) if smoothed.size else np.zeros(0)


def stream_detections(spotter: KeywordSpotter, posteriors: np.ndarray) -> list[Detection]:
    """The runtime detector's detections on one stream's posteriors, run only where one can open.

    A detection opens only at a frame whose smoothed keyword posterior reaches the threshold (a *candidate*).
    Candidates are grouped into windows (a new window when two are further apart than an event, its refractory
    period and the warm-up below); each window runs a fresh detector from ``margin`` frames before its first
    candidate (covering the smoothing and onset look-back, so the state at the candidate equals the one of a run
    over the whole stream) to the end of the last candidate's event and refractory period. The fresh detector is
    first fed ``smoothing_frames`` rows of zero keyword posterior: its first, shorter averages can then only be
    lower than the whole-stream ones, so nothing opens early. Times are shifted back to the stream's."""
    config = spotter.config
    columns = [i for i, label in enumerate(spotter.labels) if label not in NON_KEYWORD_LABELS]
    candidates = np.flatnonzero(_smoothed_peaks(posteriors, columns, config.smoothing_frames)
                                >= config.threshold - 1e-9)
    if candidates.size == 0:
        return []
    hop = spotter.hop_s
    smoothing = config.smoothing_frames
    margin = max(int(np.ceil(config.lookback_s / hop)), smoothing) + smoothing + 2
    reach = int(np.ceil((config.max_event_s + config.refractory_s) / hop)) + smoothing + 2
    breaks = np.flatnonzero(np.diff(candidates) > reach + margin)
    firsts = np.concatenate([[candidates[0]], candidates[breaks + 1]])
    lasts = np.concatenate([candidates[breaks], [candidates[-1]]])
    lead = np.zeros((smoothing, posteriors.shape[1]))
    lead[:, [i for i in range(posteriors.shape[1]) if i not in columns][:1]] = 1.0
    detections: list[Detection] = []
    for first, last in zip(firsts, lasts):
        low, high = max(0, int(first) - margin), min(len(posteriors), int(last) + reach)
        stream = spotter.create_stream()
        found = stream.push_posteriors(np.vstack([lead, posteriors[low:high]])) + stream.flush()
        shift = (low - smoothing) * hop
        detections += [replace(d, start=d.start + shift, end=d.end + shift) for d in found]
    return detections


def score_threshold(streams: Mapping[str, np.ndarray], posteriors: Sequence[np.ndarray], labels: Sequence[str],
                    frontend: Mapping[str, Any], config: DetectorConfig) -> dict[str, Any]:
    """Recall, false alarms per hour and per-keyword recall of one detector setting."""
    spotter = KeywordSpotter(None, config, labels=labels, frontend=frontend)
    kinds = streams["stream_kinds"]
    durations = np.diff(streams["offsets"]) / SAMPLE_RATE
    negative_alarms, positive_alarms = 0, 0
    alarms_per_label: dict[str, int] = {}
    found = np.zeros(streams["event_label"].size, dtype=bool)
    for number, posterior in enumerate(posteriors):
        detections = stream_detections(spotter, posterior)
        events = np.flatnonzero(streams["event_stream"] == number)
        for detection in detections:
            matched = None
            for event in events:
                start = streams["event_start"][event] / SAMPLE_RATE
                end = streams["event_end"][event] / SAMPLE_RATE + MATCH_SLACK_S
                if (not found[event] and labels[int(streams["event_label"][event])] == detection.label
                        and detection.start <= end and detection.end >= start):
                    matched = event
                    break
            if matched is not None:
                found[matched] = True
                continue
            alarms_per_label[detection.label] = alarms_per_label.get(detection.label, 0) + 1
            if kinds[number] == "negative":
                negative_alarms += 1
            else:
                positive_alarms += 1
    negative_hours = float(durations[kinds == "negative"].sum()) / 3600
    positive_hours = float(durations[kinds != "negative"].sum()) / 3600
    event_kinds = kinds[streams["event_stream"]] if found.size else np.array([], dtype=str)
    per_keyword = {}
    for index, label in enumerate(labels):
        of_label = streams["event_label"] == index
        if label not in NON_KEYWORD_LABELS and np.any(of_label):
            per_keyword[label] = float(np.mean(found[of_label]))
    return {
        "threshold": config.threshold,
        "recall": float(np.mean(found)) if found.size else 0.0,
        "recall_by_kind": {str(kind): float(np.mean(found[event_kinds == kind])) for kind in np.unique(event_kinds)},
        "events_by_kind": {str(kind): int(np.sum(event_kinds == kind)) for kind in np.unique(event_kinds)},
        "false_alarms_per_hour": negative_alarms / negative_hours if negative_hours else 0.0,
        "false_alarms": negative_alarms,
        "false_alarms_in_keyword_streams_per_hour": positive_alarms / positive_hours if positive_hours else 0.0,
        "false_alarms_by_label": dict(sorted(alarms_per_label.items())),
        "per_keyword_recall": per_keyword,
    }


def sweep(streams: Mapping[str, np.ndarray], posteriors: Sequence[np.ndarray], labels: Sequence[str],
          frontend: Mapping[str, Any], base: DetectorConfig,
          thresholds: Sequence[float] = THRESHOLDS) -> list[dict[str, Any]]:
    """``score_threshold`` for every threshold (the other detector settings from ``base``)."""
    return [score_threshold(streams, posteriors, labels, frontend, replace(base, threshold=t)) for t in thresholds]


def choose_threshold(rows: Sequence[Mapping[str, Any]], max_false_alarms_per_hour: float) -> dict[str, Any]:
    """The row of highest recall among those within the false-alarm budget (the lowest such threshold, recall
    falling with the threshold); the highest threshold when none is within it."""
    within = [row for row in rows if row["false_alarms_per_hour"] <= max_false_alarms_per_hour]
    if not within:
        return dict(max(rows, key=lambda row: row["threshold"]))
    return dict(max(within, key=lambda row: (row["recall"], -row["false_alarms_per_hour"], -row["threshold"])))


def streams_summary(streams: Mapping[str, np.ndarray]) -> dict[str, Any]:
    kinds = streams["stream_kinds"]
    durations = np.diff(streams["offsets"]) / SAMPLE_RATE
    return {"negative_hours": round(float(durations[kinds == "negative"].sum()) / 3600, 4),
            "hours_by_kind": {str(kind): round(float(durations[kinds == kind].sum()) / 3600, 4)
                              for kind in np.unique(kinds)},
            "keyword_events": int(streams["event_label"].size),
            "voices": [str(v) for v in streams["utterance_voices"]]}


def tune_on_validation(data_dir: Path, model_dir: Path,
                       max_false_alarms_per_hour: float = DEFAULT_MAX_FALSE_ALARMS_PER_HOUR,
                       write: bool = True, smoothing_candidates: Sequence[int] = ()) -> dict[str, Any]:
    """Sweep the float torch model of ``model_dir`` over the validation streams and choose the threshold (and,
    given ``smoothing_candidates``, the smoothing window: the pair of highest recall within the budget); with
    ``write``, store the detector settings in ``model_dir/config.json`` (key ``detector``)."""
    started = time.time()
    streams = load_streams(data_dir, "validation")
    score, labels, frontend, config = torch_scorer(model_dir)
    posteriors = stream_posteriors(streams, score)
    base = DetectorConfig(**{k: v for k, v in config.get("detector", {}).items() if k != "threshold"})
    by_smoothing = {}
    for smoothing in smoothing_candidates or (base.smoothing_frames,):
        candidate = replace(base, smoothing_frames=int(smoothing))
        rows = sweep(streams, posteriors, labels, frontend, candidate)
        by_smoothing[int(smoothing)] = (candidate, rows, choose_threshold(rows, max_false_alarms_per_hour))
    best = max(by_smoothing, key=lambda k: (by_smoothing[k][2]["false_alarms_per_hour"] <= max_false_alarms_per_hour,
                                            by_smoothing[k][2]["recall"], -by_smoothing[k][2]["false_alarms_per_hour"]))
    base, rows, chosen = by_smoothing[best]
    detector = asdict(replace(base, threshold=chosen["threshold"]))
    if write:
        config["detector"] = detector
        (Path(model_dir) / "config.json").write_text(json.dumps(config, indent=1))
    return {"split": "validation", "model": f"{model_dir} (float torch)", "streams": streams_summary(streams),
            "max_false_alarms_per_hour": max_false_alarms_per_hour, "chosen": chosen, "detector": detector,
            "sweep": rows, "smoothing_choice": {str(k): {"threshold": v[2]["threshold"], "recall": v[2]["recall"],
                                                         "false_alarms_per_hour": v[2]["false_alarms_per_hour"]}
                                                for k, v in by_smoothing.items()},
            "seconds": round(time.time() - started, 1)}


VARIANTS = (("onnx", "float"), ("onnx", "int8"), ("litert", "float"), ("litert", "int8"))


def evaluate_export(data_dir: Path, export_dir: Path, split: str = "test",
                    variants: Sequence[tuple[str, str]] = VARIANTS,
                    swept: Sequence[tuple[str, str]] = (("onnx", "float"), ("onnx", "int8"))) -> dict[str, Any]:
    """The deployed files on ``split`` streams: each backend x precision at the manifest's threshold, and the
    ``swept`` ones over ``THRESHOLDS`` too."""
    streams = load_streams(data_dir, split)
    report: dict[str, Any] = {"split": split, "model": str(export_dir), "streams": streams_summary(streams),
                              "match_slack_s": MATCH_SLACK_S, "results": {}}
    for backend, precision in variants:
        started = time.time()
        score, labels, frontend, detector = runtime_scorer(export_dir, backend, precision)
        base = DetectorConfig.from_manifest(detector)
        posteriors = stream_posteriors(streams, score)
        rows = sweep(streams, posteriors, labels, frontend, base) if (backend, precision) in swept else []
        at_default = score_threshold(streams, posteriors, labels, frontend, base)
        report["results"][f"{backend}/{precision}"] = {"at_manifest_threshold": at_default, "sweep": rows,
                                                        "seconds": round(time.time() - started, 1)}
        by_kind = ", ".join(f"{KIND_NAMES.get(kind, kind)} {100 * value:.1f}%"
                            for kind, value in at_default["recall_by_kind"].items())
        print(f"[detection] {split} {backend}/{precision}: threshold {base.threshold} recall "
              f"{100 * at_default['recall']:.1f}% ({by_kind}) at {at_default['false_alarms_per_hour']:.2f} false "
              f"alarms/h ({time.time() - started:.0f}s)", flush=True)
    return report


def plot(report: Mapping[str, Any], validation: Mapping[str, Any] | None, path: Path, title: str) -> None:
    """ROC-style curves (recall vs false alarms per hour over thresholds) to a PNG: one per stream kind of
    keyword ("phrase": inside phrases, "apart": said apart) and model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6.4, 4.4), dpi=110)
    floor = 0.1  # zero false alarms drawn at this value on the log axis
    curves: list[tuple[str, Sequence[Mapping[str, Any]], str]] = []
    if validation is not None:
        curves.append(("validation voices, float (threshold chosen here)", validation["sweep"], "--"))
    for key, result in report["results"].items():
        if result["sweep"]:
            curves.append((f"{report['split']} voices, {key}", result["sweep"], "-"))
    for name, rows, style in curves:
        fa = [max(row["false_alarms_per_hour"], floor) for row in rows]
        kinds = sorted(rows[0].get("recall_by_kind", {})) or [None]
        for kind in kinds:
            recall = [100 * (row["recall"] if kind is None else row["recall_by_kind"][kind]) for row in rows]
            axis.plot(fa, recall, style, marker="." if kind != "apart" else "x",
                      label=name if kind is None else f"{name}, {KIND_NAMES.get(kind, kind)}")
    first = next(iter(report["results"].values()))["at_manifest_threshold"]
    axis.plot(max(first["false_alarms_per_hour"], floor), 100 * first["recall"], "k*", markersize=9,
              label=f"manifest threshold {first['threshold']} ({next(iter(report['results']))})")
    axis.axvline(1.0, color="grey", linewidth=0.8)
    axis.set_xscale("log")
    axis.set_xlabel(f"false alarms per hour of keyword-free speech (0 drawn at {floor})")
    axis.set_ylabel("recall of keywords in running speech (%)")
    axis.set_title(title, fontsize=10)
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, type=Path, help="output folder of lstm_edge.recipes.kws.synth")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model-dir", type=Path, help="trained model directory (float torch model)")
    source.add_argument("--export-dir", type=Path, help="exported model directory (runtime, float and int8)")
    parser.add_argument("--split", default="test", choices=("validation", "test"))
    parser.add_argument("--choose-threshold", action="store_true",
                        help="(validation, --model-dir) choose the detector threshold and write it to config.json")
    parser.add_argument("--max-false-alarms-per-hour", type=float, default=DEFAULT_MAX_FALSE_ALARMS_PER_HOUR)
    parser.add_argument("--smoothing-candidates", type=int, nargs="+", default=[],
                        help="(with --choose-threshold) smoothing windows in frames to choose from as well")
    parser.add_argument("--validation-report", type=Path, help="validation sweep to draw beside the test curves")
    parser.add_argument("--out", type=Path, help="write the report here (JSON)")
    parser.add_argument("--plot", type=Path, help="draw the curves to this PNG (needs the plot extra)")
    args = parser.parse_args(argv)
    if args.choose_threshold:
        if args.model_dir is None or args.split != "validation":
            parser.error("--choose-threshold needs --model-dir and --split validation (never tune on test)")
        report = tune_on_validation(args.data, args.model_dir, args.max_false_alarms_per_hour,
                                    smoothing_candidates=args.smoothing_candidates)
        chosen = report["chosen"]
        print(f"[detection] validation: threshold {chosen['threshold']} recall {100 * chosen['recall']:.1f}% at "
              f"{chosen['false_alarms_per_hour']:.2f} false alarms/h -> {args.model_dir / 'config.json'}")
    elif args.model_dir is not None:
        streams = load_streams(args.data, args.split)
        score, labels, frontend, config = torch_scorer(args.model_dir)
        base = DetectorConfig(**config.get("detector", {}))
        rows = sweep(streams, stream_posteriors(streams, score), labels, frontend, base)
        report = {"split": args.split, "model": f"{args.model_dir} (float torch)", "streams": streams_summary(streams),
                  "sweep": rows}
    else:
        report = evaluate_export(args.data, args.export_dir, args.split)
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    if args.plot:
        if "results" not in report:
            parser.error("--plot draws an --export-dir report")
        validation = json.loads(args.validation_report.read_text()) if args.validation_report else None
        plot(report, validation, args.plot, f"Keyword detection on held-out voices ({args.split} streams)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
