"""Train the streaming keyword LSTM on a set written by ``lstm_edge.recipes.kws.synth``.

Features come from the runtime's own numpy frontend (``lstm_edge.runtime.frontend``), so training and device
features are identical by construction; they are cached next to the data.

Streaming training: each training sequence concatenates ``clips_per_sequence`` random clips (the model runs forever
on the device with its state carried). Per-frame targets: ``_silence_`` before a word; ignored from the word's start
until ``lead_frames`` before its end; the clip's label from there until ``hold_frames`` after the end; ``_silence_``
again afterwards. Negatives (``_unknown_``: other words, crops of running sentences) are ``_unknown_`` from their
first frame. ``_silence_`` clips are silence throughout. Labels come from the set's ``index.json`` (any keyword set;
``--init-from`` warm-starts every tensor of matching shape from another model directory). Clip accuracy uses
``kws.clip_prediction``, on each clip alone (zero state) and on clips cut out of long streams (state carried).

Run: ``python -m lstm_edge.recipes.kws.train --data DIR --out models/kws``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lstm_edge.recipes.kws.model import (
    CONFIG_FILE,
    DEFAULT_ARCHITECTURE,
    DEFAULT_CLIP_RULE,
    WEIGHTS_FILE,
    KeywordLSTM,
    build_model,
    count_parameters,
    load_model,
)
from lstm_edge.recipes.kws.synth import (
    CLIP_SAMPLES,
    NON_KEYWORD_LABELS,
    SAMPLE_RATE,
    SILENCE_LABEL,
    UNKNOWN_LABEL,
    dataset_labels,
    load_split,
)
from lstm_edge.runtime.audio import write_wav
from lstm_edge.runtime.frontend import LogMelConfig, LogMelFrontend
from lstm_edge.runtime.kws import clip_prediction

IGNORE_TARGET = -100
# Every label set starts with these two (``synth.labels_for``).
SILENCE_INDEX = NON_KEYWORD_LABELS.index(SILENCE_LABEL)
UNKNOWN_INDEX = NON_KEYWORD_LABELS.index(UNKNOWN_LABEL)


@dataclass(frozen=True)
class TrainConfig:
    """Training settings (all recorded in train_report.json)."""

    seed: int = 0
    max_epochs: int = 40
    patience: int = 100
    batch_size: int = 16
    clips_per_sequence: int = 4
    learning_rate: float = 4e-3
    weight_decay: float = 1e-5
    grad_clip: float = 1.0
    lead_frames: int = 10
    hold_frames: int = 25
    log_gain_jitter: float = 0.7
    mel_shift_bins: float = 2.0
    freq_mask_probability: float = 0.5
    freq_mask_max_bins: int = 5
    max_train_minutes: float = 50.0
    eval_clips_per_class: int = 10  # eval_clips.npz (the verify/demo accuracy gate): one clip is 0.83 points
    threads: int = 1
    input_size: int = DEFAULT_ARCHITECTURE["input_size"]
    hidden_size: int = DEFAULT_ARCHITECTURE["hidden_size"]
    lr_schedule: str = "cosine"  # "plateau" (halve on a validation plateau) or "cosine" (per step, over max_epochs)
    warmup_epochs: float = 1.0  # linear warm-up at the start of the cosine schedule
    min_learning_rate: float = 4e-5  # floor of the cosine schedule
    label_smoothing: float = 0.0
    unknown_weight: float = 1.0  # cross-entropy weight of the _unknown_ class (others 1)


def cached_features(data_dir: Path, split: str, frontend: LogMelFrontend) -> dict[str, np.ndarray]:
    """Log-mel features [N, frames, n_mels] plus labels and speech bounds of a split, cached on disk."""
    key = hashlib.sha1(json.dumps(frontend.config.to_dict(), sort_keys=True).encode()).hexdigest()[:10]
    cache_file = data_dir / f"features-{split}-{key}.npz"
    if cache_file.exists():
        with np.load(cache_file) as cached:
            return {name: cached[name] for name in cached.files}
    data = load_split(data_dir, split)
    features = np.stack([frontend.compute(clip) for clip in data["audio"]])
    result = {
        "features": features.astype(np.float32),
        "labels": data["labels"],
        "speech_start": data["speech_start"],
        "speech_end": data["speech_end"],
        # a keyword spoken in a phrase: where the phrase's speech lies in the clip (-1: no phrase; older sets)
        "context_start": data.get("context_start", np.full(data["labels"].shape, -1, dtype=np.int64)),
        "context_end": data.get("context_end", np.full(data["labels"].shape, -1, dtype=np.int64)),
        "kinds": data["kinds"],
        "label_names": np.array(dataset_labels(data_dir)),
    }
    np.savez(cache_file, allow_pickle=False, **result)
    return result


def stream_targets(
    labels: np.ndarray, speech_start: np.ndarray, speech_end: np.ndarray, n_frames: int, config: TrainConfig,
    hop_length: int, context_start: np.ndarray | None = None, context_end: np.ndarray | None = None,
) -> np.ndarray:
    """Per-frame targets of clips laid end to end (``n_frames`` each); a hold region may run into the next clip.
    A negative (``_unknown_``: another word, a crop of running speech) is ``_unknown_`` from its first frame on, so
    running speech is trained as such throughout; a keyword is ignored until ``lead_frames`` before its end. A
    keyword inside a phrase (``context_start`` >= 0) has the phrase's other words as ``_unknown_`` around it, its
    label still from ``lead_frames`` before its end until ``hold_frames`` after it."""
    targets = np.full(labels.shape[0] * n_frames, SILENCE_INDEX, dtype=np.int64)
    for k, (label, start, end) in enumerate(zip(labels, speech_start, speech_end)):
        if label == SILENCE_INDEX or start < 0:
            continue
        if context_start is not None and context_end is not None and context_start[k] >= 0:
            targets[k * n_frames + int(context_start[k]) // hop_length:
                    k * n_frames + int(context_end[k]) // hop_length] = UNKNOWN_INDEX
        start_frame = k * n_frames + int(start) // hop_length
        end_frame = k * n_frames + int(end) // hop_length
        if label == UNKNOWN_INDEX:
            targets[start_frame : end_frame + config.hold_frames] = UNKNOWN_INDEX
            continue
        label_from = max(start_frame, end_frame - config.lead_frames)
        targets[start_frame:label_from] = IGNORE_TARGET
        targets[label_from : end_frame + config.hold_frames] = int(label)
    return targets


def augment_features(features: np.ndarray, config: TrainConfig, rng: np.random.Generator) -> np.ndarray:
    """Per-sequence gain jitter, a fractional shift along the mel axis (a crude vocal-tract-length change),
    and an optional frequency mask; ``features`` is [B, T, n_mels]."""
    batch, _, n_mels = features.shape
    augmented = features + rng.uniform(-config.log_gain_jitter, config.log_gain_jitter, (batch, 1, 1))
    positions = np.arange(n_mels)[None, :] + rng.uniform(-config.mel_shift_bins, config.mel_shift_bins, (batch, 1))
    positions = np.clip(positions, 0, n_mels - 1)
    lower = np.minimum(np.floor(positions).astype(np.int64), n_mels - 2)
    fraction = (positions - lower)[:, None, :]
    below = np.take_along_axis(augmented, lower[:, None, :], axis=2)
    above = np.take_along_axis(augmented, lower[:, None, :] + 1, axis=2)
    augmented = below * (1.0 - fraction) + above * fraction
    for b in range(batch):
        if rng.random() < config.freq_mask_probability:
            width = int(rng.integers(1, config.freq_mask_max_bins + 1))
            first = int(rng.integers(0, n_mels - width + 1))
            augmented[b, :, first : first + width] = augmented[b, :, first : first + width].mean()
    return augmented.astype(np.float32)


def make_streams(
    n_clips: int, clips_per_sequence: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Random grouping of clip indices into sequences."""
    order = rng.permutation(n_clips)
    n_sequences = n_clips // clips_per_sequence
    return [order[i * clips_per_sequence : (i + 1) * clips_per_sequence] for i in range(n_sequences)]


@torch.no_grad()
def clip_logits(model: KeywordLSTM, features: np.ndarray) -> np.ndarray:
    """Per-frame logits [N, frames, labels] of clips run alone from a zero state."""
    model.eval()
    tensor = torch.from_numpy(features)
    return torch.cat([model(tensor[i : i + 256]) for i in range(0, tensor.shape[0], 256)]).numpy()


@torch.no_grad()
def evaluate(
    model: KeywordLSTM, split: dict[str, np.ndarray], clips_per_sequence: int, seed: int,
    clip_rule: dict[str, Any] | None = None,
) -> dict[str, float]:
    """Clip accuracy on clips alone (zero state) and on clips inside streams (state carried)."""
    model.eval()
    features = torch.from_numpy(split["features"])
    labels = split["labels"]
    alone = np.array([clip_prediction(logits, clip_rule) for logits in clip_logits(model, split["features"])])
    streams = make_streams(features.shape[0], clips_per_sequence, np.random.default_rng(seed))
    stream_features = torch.stack([features[idx].reshape(-1, features.shape[-1]) for idx in streams])
    stream_logits = model(stream_features).numpy()
    n_frames = features.shape[1]
    streamed_correct, streamed_total = 0, 0
    for sequence_index, idx in enumerate(streams):
        for k, clip_index in enumerate(idx):
            segment = stream_logits[sequence_index, k * n_frames : (k + 1) * n_frames]
            streamed_correct += int(clip_prediction(segment, clip_rule) == labels[clip_index])
            streamed_total += 1
    names = [str(name) for name in split["label_names"]]
    per_label = {names[c]: float(np.mean(alone[labels == c] == c)) for c in range(len(names)) if np.any(labels == c)}
    return {
        "clip_accuracy": float(np.mean(alone == labels)),
        "stream_clip_accuracy": streamed_correct / max(1, streamed_total),
        "per_label_clip_accuracy": per_label,  # type: ignore[dict-item]
    }


CLIP_RULE_GRID: dict[str, tuple[float, ...]] = {
    "window_frames": (10, 15, 20, 25, 35),
    "min_speech_probability": (0.3, 0.4, 0.5, 0.6),
}


def tune_clip_rule(
    model: KeywordLSTM, validation_split: dict[str, np.ndarray]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The clip rule of ``CLIP_RULE_GRID`` with the best clip accuracy on the validation split (ties go to the rule
    closest to ``DEFAULT_CLIP_RULE``), and the whole search as rows. Test data is never looked at."""
    logits = clip_logits(model, validation_split["features"])
    labels = validation_split["labels"]
    rows: list[dict[str, Any]] = []
    for window_frames in CLIP_RULE_GRID["window_frames"]:
        for min_speech_probability in CLIP_RULE_GRID["min_speech_probability"]:
            rule = dict(DEFAULT_CLIP_RULE, window_frames=int(window_frames),
                        min_speech_probability=float(min_speech_probability))
            predictions = np.array([clip_prediction(clip, rule) for clip in logits])
            rows.append({"rule": rule, "validation_clip_accuracy": float(np.mean(predictions == labels))})

    def preference(row: dict[str, Any]) -> tuple[float, float, float]:
        rule = row["rule"]
        return (row["validation_clip_accuracy"],
                -abs(rule["window_frames"] - DEFAULT_CLIP_RULE["window_frames"]),
                -abs(rule["min_speech_probability"] - DEFAULT_CLIP_RULE["min_speech_probability"]))

    return dict(max(rows, key=preference)["rule"]), rows


class CosineSchedule:
    """Multiplier of the base learning rate at optimizer step ``step``: linear warm-up, then half a cosine down to
    ``min_learning_rate`` at ``total_steps``. ``total_steps`` may be shortened during training (see ``train``)."""

    def __init__(self, config: TrainConfig, total_steps: int, steps_per_epoch: int) -> None:
        self.warmup_steps = int(round(config.warmup_epochs * steps_per_epoch))
        self.floor = config.min_learning_rate / config.learning_rate
        self.total_steps = total_steps

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        progress = min(1.0, (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
        return self.floor + (1.0 - self.floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def train(
    model: KeywordLSTM, train_split: dict[str, np.ndarray], validation_split: dict[str, np.ndarray],
    config: TrainConfig, hop_length: int,
) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    """Train with early stopping on validation; returns the best state_dict and per-epoch history."""
    rng = np.random.default_rng(config.seed)
    n_frames = train_split["features"].shape[1]
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    steps_per_epoch = -(-(train_split["features"].shape[0] // config.clips_per_sequence) // config.batch_size)
    if config.lr_schedule == "plateau":
        plateau: torch.optim.lr_scheduler.ReduceLROnPlateau | None = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", factor=0.5, patience=1)
        step_scheduler: torch.optim.lr_scheduler.LambdaLR | None = None
    elif config.lr_schedule == "cosine":
        plateau = None
        cosine = CosineSchedule(config, steps_per_epoch * config.max_epochs, steps_per_epoch)
        step_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine)
    else:
        raise ValueError(f"lr_schedule: expected 'plateau' or 'cosine', got {config.lr_schedule!r}")
    class_weights = torch.ones(model.n_labels)
    class_weights[UNKNOWN_INDEX] = config.unknown_weight
    loss_function = nn.CrossEntropyLoss(weight=class_weights, ignore_index=IGNORE_TARGET,
                                        label_smoothing=config.label_smoothing)
    best_score, best_state, epochs_without_gain, history = -1.0, None, 0, []
    started = time.time()
    planned_epochs = config.max_epochs
    for epoch in range(config.max_epochs):
        if epoch == planned_epochs:
            break
        model.train()
        epoch_started, losses = time.time(), []
        streams = make_streams(train_split["features"].shape[0], config.clips_per_sequence, rng)
        for batch_start in range(0, len(streams), config.batch_size):
            batch = streams[batch_start : batch_start + config.batch_size]
            features = np.stack([train_split["features"][idx].reshape(-1, model.n_mels) for idx in batch])
            features = augment_features(features, config, rng)
            targets = np.stack([
                stream_targets(train_split["labels"][idx], train_split["speech_start"][idx],
                               train_split["speech_end"][idx], n_frames, config, hop_length,
                               train_split["context_start"][idx], train_split["context_end"][idx])
                for idx in batch
            ])
            logits = model(torch.from_numpy(features.astype(np.float32)))
            loss = loss_function(logits.reshape(-1, model.n_labels), torch.from_numpy(targets).reshape(-1))
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            if step_scheduler is not None:
                step_scheduler.step()
            losses.append(float(loss.detach()))
        metrics = evaluate(model, validation_split, config.clips_per_sequence, seed=config.seed + 1)
        score = 0.5 * (metrics["clip_accuracy"] + metrics["stream_clip_accuracy"])
        learning_rate = optimizer.param_groups[0]["lr"]
        if plateau is not None:
            plateau.step(score)
        history.append({"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "validation": metrics,
                        "learning_rate": learning_rate, "seconds": round(time.time() - epoch_started, 1)})
        print(f"[train] epoch {epoch + 1} loss {np.mean(losses):.4f} val clip {metrics['clip_accuracy']:.4f} "
              f"stream {metrics['stream_clip_accuracy']:.4f} lr {learning_rate:.2e} "
              f"({time.time() - epoch_started:.0f}s)", flush=True)
        if score > best_score:
            best_score, epochs_without_gain = score, 0
            best_state = {name: value.detach().clone() for name, value in model.state_dict().items()}
        else:
            epochs_without_gain += 1
        if epochs_without_gain >= config.patience or (time.time() - started) / 60 > config.max_train_minutes:
            break
        if epoch == 0 and step_scheduler is not None:
            # Fit the cosine into the time budget, so a run cut by max_train_minutes still ends annealed.
            fitting = max(1, int(config.max_train_minutes * 60 // (time.time() - started)))
            if fitting < planned_epochs:
                planned_epochs = fitting
                cosine.total_steps = steps_per_epoch * planned_epochs
                print(f"[train] cosine fitted to the time budget: {planned_epochs} epochs", flush=True)
    if best_state is None:
        raise RuntimeError("training ran no epoch")
    return best_state, history


def write_eval_clips(out_dir: Path, data_dir: Path, model: KeywordLSTM, frontend: LogMelFrontend,
                     config: TrainConfig, clip_rule: dict[str, Any]) -> dict[str, Any]:
    """A small labelled test-voice set (int16 audio) with the float model's clip predictions."""
    test = load_split(data_dir, "test")
    labels = dataset_labels(data_dir)
    rng = np.random.default_rng(config.seed + 7)
    chosen = np.concatenate([
        rng.choice(of_label, min(config.eval_clips_per_class, of_label.size), replace=False)
        for of_label in (np.flatnonzero(test["labels"] == c) for c in range(len(labels)))
    ])
    audio = test["audio"][chosen]
    with torch.no_grad():
        logits = model(torch.from_numpy(np.stack([frontend.compute(clip) for clip in audio]))).numpy()
    predictions = np.array([clip_prediction(clip, clip_rule) for clip in logits], dtype=np.int64)
    np.savez_compressed(
        out_dir / "eval_clips.npz", audio=audio, labels=test["labels"][chosen], label_names=np.array(labels),
        voices=test["voices"][chosen], float_predictions=predictions, sample_rate=np.int64(SAMPLE_RATE),
    )
    return {"n_clips": int(chosen.size), "float_accuracy": float(np.mean(predictions == test["labels"][chosen]))}


DEMO_WORDS: tuple[str, ...] = ("yes", "stop", "left", "go", "off", "right", "down", "no", "up")


def write_demo(out_dir: Path, data_dir: Path, model: KeywordLSTM, frontend: LogMelFrontend,
               seed: int, clip_rule: dict[str, Any]) -> dict[str, Any]:
    """demo.wav: test-voice keywords separated by quiet noise; demo.json: words and their true times.
    The words are ``DEMO_WORDS`` for the default keywords, otherwise each keyword twice."""
    test = load_split(data_dir, "test")
    labels = dataset_labels(data_dir)
    keywords = [label for label in labels if label not in NON_KEYWORD_LABELS]
    rng = np.random.default_rng(seed)
    words = list(DEMO_WORDS) if set(DEMO_WORDS) <= set(keywords) else keywords * 2
    gap_samples = int(0.45 * SAMPLE_RATE)
    pieces: list[np.ndarray] = [np.zeros(int(0.6 * SAMPLE_RATE))]
    events: list[dict[str, Any]] = []
    position = pieces[0].size
    duration = test["speech_end"] - test["speech_start"]
    for word in words:
        of_word = (test["labels"] == labels.index(word)) & (test["kinds"] == "keyword")
        if not np.any(of_word):  # a tiny set may hold the keyword only inside phrases
            of_word = test["labels"] == labels.index(word)
        short = duration <= max(9000, int(np.median(duration[of_word])))
        candidates = np.flatnonzero(of_word & short)
        clip_index = int(rng.choice(candidates))
        start, end = int(test["speech_start"][clip_index]), int(test["speech_end"][clip_index])
        cut_from, cut_to = max(0, start - 800), min(CLIP_SAMPLES, end + 800)
        pieces.append(test["audio"][clip_index, cut_from:cut_to].astype(np.float64) / 32768.0)
        events.append({"label": word, "voice": str(test["voices"][clip_index]),
                       "start_s": round((position + start - cut_from) / SAMPLE_RATE, 3),
                       "end_s": round((position + end - cut_from) / SAMPLE_RATE, 3)})
        position += cut_to - cut_from
        pieces.append(np.zeros(gap_samples))
        position += gap_samples
    signal = np.concatenate(pieces)
    signal += rng.normal(0.0, 10.0 ** (-60 / 20), signal.size)
    pcm = np.round(np.clip(signal, -1.0, 32767 / 32768) * 32768).astype(np.int16)
    write_wav(out_dir / "demo.wav", pcm, SAMPLE_RATE)
    hop = frontend.config.hop_length
    with torch.no_grad():
        logits = model(torch.from_numpy(frontend.compute(pcm))[None])[0].numpy()
    detected = []
    for event in events:
        first = int(event["start_s"] * SAMPLE_RATE) // hop
        last = int(event["end_s"] * SAMPLE_RATE) // hop + 30
        detected.append(labels[clip_prediction(logits[first:last], clip_rule)])
    demo = {"sample_rate": SAMPLE_RATE, "duration_s": round(pcm.size / SAMPLE_RATE, 3), "events": events,
            "labels": list(labels)}
    (out_dir / "demo.json").write_text(json.dumps(demo, indent=1))
    return {"duration_s": demo["duration_s"], "words": words, "float_detected": detected,
            "float_correct": int(sum(d == w for d, w in zip(detected, words)))}


def warm_start(model: KeywordLSTM, init_from: Path) -> dict[str, Any]:
    """Copy every tensor of the model in ``init_from`` (``float.pt``) whose name and shape match ``model``'s (all of
    them for the same label set; all but the classifier for other keywords). Returns what was copied."""
    source = torch.load(Path(init_from) / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    target = model.state_dict()
    copied = {name: value for name, value in source.items() if name in target and target[name].shape == value.shape}
    if not any(name.startswith("lstm.") for name in copied):
        raise ValueError(f"--init-from {init_from}: expected an LSTM of the same size, got tensors "
                         f"{ {k: tuple(v.shape) for k, v in source.items()} }")
    model.load_state_dict(copied, strict=False)
    digest = hashlib.sha256((Path(init_from) / WEIGHTS_FILE).read_bytes()).hexdigest()
    return {"from": str(init_from), "sha256": digest, "copied": sorted(copied),
            "skipped": sorted(set(target) - set(copied))}


def _train_new_model(
    config: TrainConfig, splits: dict[str, dict[str, np.ndarray]], frontend: LogMelFrontend,
    labels: Sequence[str], init_from: Path | None = None,
) -> tuple[KeywordLSTM, list[dict[str, Any]], float, dict[str, Any], dict[str, Any] | None]:
    """Build, normalise (or warm-start) and train a model; returns (model with the best weights, history, seconds,
    model config, warm-start record)."""
    model_config: dict[str, Any] = {
        "model": "KeywordLSTM",
        "architecture": dict(DEFAULT_ARCHITECTURE, input_size=config.input_size, hidden_size=config.hidden_size,
                             n_labels=len(labels)),
        "frontend": frontend.config.to_dict(),
        "labels": list(labels),
        "clip_rule": dict(DEFAULT_CLIP_RULE),
        "input": {"name": "features", "shape": [1, "T", frontend.n_mels], "dtype": "float32"},
        "streaming_targets": {"lead_frames": config.lead_frames, "hold_frames": config.hold_frames},
    }
    model = build_model(model_config)
    model.normalize.set_statistics(
        splits["train"]["features"].reshape(-1, frontend.n_mels).mean(axis=0),
        splits["train"]["features"].reshape(-1, frontend.n_mels).std(axis=0),
    )
    started = None if init_from is None else warm_start(model, init_from)  # keeps the source's normalisation
    training_started = time.time()
    best_state, history = train(model, splits["train"], splits["validation"], config, frontend.config.hop_length)
    model.load_state_dict(best_state)
    model.eval()
    return model, history, time.time() - training_started, model_config, started


def run(data_dir: Path, out_dir: Path, config: TrainConfig, init_from: Path | None = None,
        tune_only: bool = False, extra_train: Sequence[Path] = ()) -> dict[str, Any]:
    """Train (or, with ``tune_only``, reload) a model on ``data_dir``, choose its clip rule on validation, and write
    ``config.json``, ``float.pt``, ``eval_clips.npz``, ``demo.wav``/``demo.json`` and ``train_report.json`` into
    ``out_dir``; returns the report. ``extra_train``: more sets of the same labels whose train splits join
    ``data_dir``'s (validation and test stay ``data_dir``'s)."""
    started = time.time()
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)

    frontend = LogMelFrontend(LogMelConfig())
    labels = dataset_labels(data_dir)
    splits = {name: cached_features(data_dir, name, frontend) for name in ("train", "validation", "test")}
    for extra in extra_train:
        if dataset_labels(extra) != labels:
            raise ValueError(f"{extra}/index.json labels: expected {list(labels)}, got {list(dataset_labels(extra))}")
        more = cached_features(extra, "train", frontend)
        splits["train"] = {key: np.concatenate([value, more[key]]) if key != "label_names" else value
                           for key, value in splits["train"].items()}
    print(f"[train] features ready ({time.time() - started:.0f}s)", flush=True)

    warm: dict[str, Any] | None = None
    if tune_only:
        model, model_config = load_model(out_dir)
        previous = json.loads((out_dir / "train_report.json").read_text())
        # the training settings of the run, except how many evaluation clips to write
        config = replace(TrainConfig(**previous["train_config"]), eval_clips_per_class=config.eval_clips_per_class)
        history, training_seconds = previous["history"], previous["training_seconds"]
        warm = previous.get("init_from")
    else:
        model, history, training_seconds, model_config, warm = _train_new_model(
            config, splits, frontend, labels, init_from)
    clip_rule, clip_rule_search = tune_clip_rule(model, splits["validation"])
    model_config["clip_rule"] = clip_rule
    print(f"[train] clip rule chosen on validation: {clip_rule}", flush=True)

    results = {name: evaluate(model, splits[name], config.clips_per_sequence, seed=config.seed + 2, clip_rule=clip_rule)
               for name in ("train", "validation", "test")}
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.save({name: value.contiguous() for name, value in model.state_dict().items()}, out_dir / WEIGHTS_FILE)
    (out_dir / CONFIG_FILE).write_text(json.dumps(model_config, indent=1))
    eval_clips = write_eval_clips(out_dir, data_dir, model, frontend, config, clip_rule)
    demo = write_demo(out_dir, data_dir, model, frontend, config.seed + 11, clip_rule)

    index = json.loads((data_dir / "index.json").read_text())
    report = {
        "accuracy": {name: {k: v for k, v in metrics.items()} for name, metrics in results.items()},
        "test_clip_accuracy": results["test"]["clip_accuracy"],
        "test_stream_clip_accuracy": results["test"]["stream_clip_accuracy"],
        "parameters": count_parameters(model),
        "labels": list(labels),
        "data": {name: {key: info[key] for key in ("n_clips", "per_label", "per_kind", "languages", "variants",
                                                   "flite_voices") if key in info}
                 | {"n_voices_used": len(info["voices_used"])}
                 for name, info in index["splits"].items()},
        "data_config": index["config"],
        "data_generation_seconds": index.get("wall_seconds"),
        "extra_train": [{"data": str(extra), "n_clips": info["splits"]["train"]["n_clips"], "config": info["config"]}
                        for extra, info in ((e, json.loads((Path(e) / "index.json").read_text()))
                                            for e in extra_train)],
        "init_from": warm,
        "epochs_run": len(history),
        "best_epoch": 1 + int(np.argmax([h["validation"]["clip_accuracy"] + h["validation"]["stream_clip_accuracy"]
                                         for h in history])),
        "history": history,
        "clip_rule_search": clip_rule_search,
        "train_config": asdict(config),
        "training_seconds": round(training_seconds, 1),
        "wall_seconds": round(time.time() - started, 1),
        "eval_clips": eval_clips,
        "demo": demo,
        "torch_version": torch.__version__,
    }
    (out_dir / "train_report.json").write_text(json.dumps(report, indent=1))
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="directory written by the synth recipe")
    parser.add_argument("--out", type=Path, required=True, help="model directory to write (e.g. models/kws)")
    parser.add_argument("--init-from", type=Path,
                        help="model directory whose float.pt initialises every tensor of matching name and shape")
    parser.add_argument("--extra-train", type=Path, nargs="+", default=[],
                        help="more synth sets (same labels) whose train splits are added")
    parser.add_argument("--max-epochs", type=int, default=TrainConfig.max_epochs)
    parser.add_argument("--max-train-minutes", type=float, default=TrainConfig.max_train_minutes)
    parser.add_argument("--seed", type=int, default=TrainConfig.seed)
    parser.add_argument("--threads", type=int, default=TrainConfig.threads,
                        help="torch threads (1 is fastest on a busy 2-core machine: OpenMP spin-waits)")
    parser.add_argument("--patience", type=int, default=TrainConfig.patience,
                        help="epochs without validation gain before stopping")
    parser.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    parser.add_argument("--learning-rate", type=float, default=TrainConfig.learning_rate)
    parser.add_argument("--lr-schedule", choices=("plateau", "cosine"), default=TrainConfig.lr_schedule)
    parser.add_argument("--warmup-epochs", type=float, default=TrainConfig.warmup_epochs)
    parser.add_argument("--min-learning-rate", type=float, default=TrainConfig.min_learning_rate)
    parser.add_argument("--label-smoothing", type=float, default=TrainConfig.label_smoothing)
    parser.add_argument("--unknown-weight", type=float, default=TrainConfig.unknown_weight,
                        help="cross-entropy weight of the _unknown_ class")
    parser.add_argument("--input-size", type=int, default=TrainConfig.input_size, help="width of the input projection")
    parser.add_argument("--hidden-size", type=int, default=TrainConfig.hidden_size, help="LSTM hidden size")
    parser.add_argument("--eval-clips-per-class", type=int, default=TrainConfig.eval_clips_per_class,
                        help="test clips per label in eval_clips.npz")
    parser.add_argument("--tune-only", action="store_true",
                        help="do not train: load the model in --out, choose its clip rule on validation again and "
                             "rewrite its config, evaluation, eval clips and demo")
    args = parser.parse_args(argv)
    config = TrainConfig(max_epochs=args.max_epochs, max_train_minutes=args.max_train_minutes, seed=args.seed,
                         threads=args.threads, patience=args.patience, batch_size=args.batch_size,
                         learning_rate=args.learning_rate, lr_schedule=args.lr_schedule,
                         warmup_epochs=args.warmup_epochs, min_learning_rate=args.min_learning_rate,
                         label_smoothing=args.label_smoothing, unknown_weight=args.unknown_weight,
                         input_size=args.input_size, hidden_size=args.hidden_size,
                         eval_clips_per_class=args.eval_clips_per_class)
    report = run(args.data, args.out, config, init_from=args.init_from, tune_only=args.tune_only,
                 extra_train=args.extra_train)
    print(json.dumps({"test": report["accuracy"]["test"], "parameters": report["parameters"],
                      "demo": report["demo"]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
