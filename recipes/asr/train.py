"""Train the CTC recognizer on a set written by ``lstm_edge.recipes.asr.synth``.

Features come from the runtime's own numpy frontend and frame stacker (``lstm_edge.runtime.frontend``,
``lstm_edge.runtime.asr.stack_frames``), so training and device features are identical. Trains for a wall-clock
budget, keeps the checkpoint with the lowest validation character error rate (greedy), writes
``OUT/float.pt`` (state dict), ``OUT/config.json`` and ``OUT/history.json``.

Run: ``python -m lstm_edge.recipes.asr.train --data DIR --out DIR [--budget-seconds 1800]``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lstm_edge.recipes.asr.grammar import TOKENS, encode
from lstm_edge.recipes.asr.model import DEFAULT_ARCHITECTURE, CtcLSTM
from lstm_edge.recipes.asr.synth import load_split, utterances
from lstm_edge.runtime.asr import stack_frames
from lstm_edge.runtime.ctc import greedy_decode
from lstm_edge.runtime.frontend import LogMelConfig, LogMelFrontend, hz_to_mel_htk, mel_to_hz_htk


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings."""

    budget_seconds: float = 1800.0
    max_epochs: int = 200
    batch_size: int = 16
    learning_rate: float = 2e-3
    seed: int = 0
    threads: int = 1
    feature_noise: float = 0.1
    patience: int = 3  # epochs without a better validation CER before the learning rate halves
    max_steps: int = 0  # > 0: stop after this many steps (smoke runs)
    start_blank_frames: int = 2  # frames at the start that must be blank (see train())
    freq_masks: int = 2  # SpecAugment: mel bands masked per utterance (the same bands in every stacked frame)
    freq_mask_width: int = 6
    time_masks: int = 2  # stacked frames masked per utterance, each up to time_mask_width and 10% of its length
    time_mask_width: int = 10
    band_gain_db: float = 0.0  # > 0: a random smooth gain curve over the mel bands per utterance, peak |gain| this
    lead_in_seconds: float = 0.0  # > 0: half the utterances get up to this much quiet noise in front (see lead_ins)
    warp: float = 0.0  # > 0: every utterance's spectrum is stretched by a factor in [1/(1+warp), 1+warp] (mel_warp)
    schedule: str = "plateau"  # "plateau": halve on stalls (patience); "cosine": decay over the budget (cosine_rate)
    final_rate: float = 0.02  # cosine: the rate at the end of the budget, as a share of learning_rate
    warmup_steps: int = 200  # cosine: linear ramp from a tenth of the rate over this many steps


def cosine_rate(config: TrainConfig, progress: float, step: int) -> float:
    """The cosine schedule's learning rate when ``progress`` (0-1) of the budget is spent, at ``step``.

    The budget is wall-clock time (or ``max_steps`` when set), so the rate reaches its floor when training stops on
    any machine: a run on a slower machine sees fewer epochs but still ends annealed.
    """
    floor = config.final_rate
    rate = config.learning_rate * (floor + (1.0 - floor) * 0.5 * (1.0 + np.cos(np.pi * min(max(progress, 0.0), 1.0))))
    if step < config.warmup_steps:
        rate *= 0.1 + 0.9 * step / config.warmup_steps
    return float(rate)


def split_features(data_dir: Path, split: str, frontend: LogMelFrontend, stack: int,
                   limit: int | None = None) -> tuple[list[np.ndarray], list[str], list[str]]:
    """(stacked features per utterance, texts, kinds) of one split's grammar utterances (its out-of-grammar ones,
    made to test rejection, are left out)."""
    arrays = load_split(data_dir, split)
    keep = [i for i, kind in enumerate(arrays["kinds"]) if kind != "out_of_grammar"][:limit]
    audio = utterances(arrays)
    features = [stack_frames(frontend.compute(audio[i]), stack) for i in keep]
    return features, [str(arrays["texts"][i]) for i in keep], [str(arrays["kinds"][i]) for i in keep]


# Levels of the lead-in noise bank, int16 standard deviations: 0 is digital silence, 64 is about -54 dBFS.
LEAD_IN_LEVELS: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)


def lead_in_bank(frontend: LogMelFrontend, stack: int, seconds: float = 1.0, seed: int = 0) -> list[np.ndarray]:
    """Stacked features of white noise at each of ``LEAD_IN_LEVELS`` (``seconds`` long each)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * frontend.config.sample_rate) + frontend.config.win_length
    return [stack_frames(frontend.compute((rng.normal(size=n) * level).astype(np.float32) / 32768.0), stack)
            for level in LEAD_IN_LEVELS]


def lead_ins(count: int, bank: list[np.ndarray], max_frames: int, rng: np.random.Generator) -> list[np.ndarray]:
    """For each of ``count`` utterances, with probability 1/2, a stretch of quiet noise to put in front of it: a
    random level of ``bank`` (digital silence to about -54 dBFS) for 20% to 100% of ``max_frames``, else nothing.
    On a device, speech follows silence whose level has nothing to do with the noise inside the utterance; the
    synthesised utterances only ever begin in their own noise."""
    width = bank[0].shape[1]
    out = []
    for _ in range(count):
        if max_frames <= 0 or rng.random() < 0.5:
            out.append(np.zeros((0, width), dtype=np.float32))
            continue
        source = bank[int(rng.integers(len(bank)))]
        frames = int(rng.integers(max(1, max_frames // 5), max_frames + 1))
        start = int(rng.integers(0, source.shape[0] - frames + 1))
        out.append(source[start:start + frames])
    return out


def _batch(features: list[np.ndarray], texts: list[str], indices: np.ndarray,
           leads: list[np.ndarray] | None = None) -> tuple[torch.Tensor, ...]:
    """Padded batch (with ``leads`` put in front of the utterances) and its CTC targets."""
    rows = [features[i] if leads is None or not leads[k].shape[0] else np.concatenate([leads[k], features[i]])
            for k, i in enumerate(indices)]
    lengths = [r.shape[0] for r in rows]
    x = np.zeros((len(indices), max(lengths), features[0].shape[1]), dtype=np.float32)
    for row, r in enumerate(rows):
        x[row, : lengths[row]] = r
    targets = [encode(texts[i]) for i in indices]
    return (torch.from_numpy(x), torch.tensor(lengths), torch.tensor([t for ts in targets for t in ts]),
            torch.tensor([len(t) for t in targets]))


def spec_augment(x: torch.Tensor, lengths: torch.Tensor, fill: torch.Tensor, n_mels: int, config: TrainConfig,
                 rng: np.random.Generator) -> torch.Tensor:
    """Mask random mel bands and time spans of a padded batch ``[B, T, n_mels * stack]`` with ``fill`` (the
    training mean, i.e. zero after the model's normalization)."""
    x = x.clone()
    stack = x.shape[2] // n_mels
    for row in range(x.shape[0]):
        for _ in range(config.freq_masks):
            width = int(rng.integers(0, config.freq_mask_width + 1))
            low = int(rng.integers(0, n_mels - width + 1))
            for s in range(stack):
                band = slice(s * n_mels + low, s * n_mels + low + width)
                x[row, :, band] = fill[band]
        length = int(lengths[row])
        for _ in range(config.time_masks):
            width = int(rng.integers(0, min(config.time_mask_width, length // 10) + 1))
            start = int(rng.integers(0, max(length - width, 0) + 1))
            x[row, start:start + width] = fill
    return x


def band_gain(x: torch.Tensor, n_mels: int, max_db: float, rng: np.random.Generator) -> torch.Tensor:
    """Give every utterance of a padded batch ``[B, T, n_mels * stack]`` of natural-log mel power its own smooth
    gain curve over the mel bands (a tilt plus two slow cosines, scaled to a random peak within ``max_db``): a
    different microphone, room or synthesiser colours speech this way, a constant offset per band in the log
    domain. The same curve is added to every stacked frame and time step."""
    stack = x.shape[2] // n_mels
    position = np.linspace(-1.0, 1.0, n_mels)
    curves = np.empty((x.shape[0], n_mels))
    for row in range(x.shape[0]):
        tilt, first, second = rng.uniform(-1.0, 1.0, size=3)
        curve = (tilt * position + first * np.cos(np.pi * (position + 1) * rng.uniform(0.5, 1.5))
                 + second * np.cos(np.pi * (position + 1) * rng.uniform(1.5, 3.0) + rng.uniform(0, 2 * np.pi)))
        peak = float(np.max(np.abs(curve)))
        curves[row] = curve / peak * rng.uniform(0.0, max_db) if peak > 0 else 0.0
    offsets = torch.from_numpy(np.tile(curves * np.log(10.0) / 10.0, (1, stack)).astype(np.float32))
    return x + offsets[:, None, :]


def mel_warp(x: torch.Tensor, frontend: LogMelConfig, max_warp: float, rng: np.random.Generator) -> torch.Tensor:
    """Stretch the frequency axis of every utterance of a padded batch ``[B, T, n_mels * stack]`` of log-mel
    features by its own factor ``alpha``, log-uniform in ``[1/(1+max_warp), 1+max_warp]``: the band centred at
    ``f`` takes the value the input had at ``f / alpha`` (linear between neighbouring bands; clamped at the edges).
    Formants move up by ``alpha``, as from a longer to a shorter vocal tract (vocal tract length perturbation, done
    on the mel bands instead of the spectrum). The same map is applied to every stacked frame and time step."""
    n_mels = frontend.n_mels
    stack = x.shape[2] // n_mels
    edges = np.linspace(hz_to_mel_htk(frontend.f_min), hz_to_mel_htk(frontend.f_max), n_mels + 2)
    centres_hz = mel_to_hz_htk(edges[1:-1])
    alphas = np.exp(rng.uniform(-np.log1p(max_warp), np.log1p(max_warp), size=x.shape[0]))
    source = (hz_to_mel_htk(centres_hz[None, :] / alphas[:, None]) - edges[1]) / (edges[2] - edges[1])
    source = np.clip(source, 0.0, n_mels - 1.0)
    low = np.minimum(np.floor(source).astype(np.int64), n_mels - 2)
    weight = torch.from_numpy((source - low).astype(np.float32))
    offsets = np.arange(stack) * n_mels
    low_index = torch.from_numpy((low[:, None, :] + offsets[None, :, None]).reshape(x.shape[0], 1, -1))
    weight = weight.repeat(1, stack)[:, None, :]
    index = low_index.expand(-1, x.shape[1], -1)
    return torch.gather(x, 2, index) * (1 - weight) + torch.gather(x, 2, index + 1) * weight


def edit_distance(reference: Sequence[Any], hypothesis: Sequence[Any]) -> int:
    """Levenshtein distance."""
    previous = list(range(len(hypothesis) + 1))
    for i, r in enumerate(reference, 1):
        current = [i] + [0] * len(hypothesis)
        for j, h in enumerate(hypothesis, 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h))
        previous = current
    return previous[-1]


def character_error_rate(model: CtcLSTM, features: list[np.ndarray], texts: list[str]) -> float:
    """Greedy-decoding CER of ``model`` on a split."""
    errors = total = 0
    with torch.no_grad():
        for x, text in zip(features, texts):
            log_probs = model(torch.from_numpy(x)[None])[0].numpy()
            hypothesis = "".join(TOKENS[t] for t in greedy_decode(log_probs).tokens)
            errors += edit_distance(text, hypothesis)
            total += len(text)
    return errors / max(total, 1)


RESUME_FILE = "resume.pt"


def save_resume_point(out_dir: Path, model: CtcLSTM, optimizer: torch.optim.Optimizer, rng: np.random.Generator,
                      progress: dict[str, Any]) -> None:
    """Everything a stopped run needs to go on as if it had not stopped (tensors and plain values only, so it loads
    with ``weights_only=True``); written atomically after every epoch."""
    point = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "rng": rng.bit_generator.state,
             "torch_rng": torch.get_rng_state(), **progress}
    temporary = out_dir / (RESUME_FILE + ".tmp")
    torch.save(point, temporary)
    temporary.replace(out_dir / RESUME_FILE)


def train(model: CtcLSTM, train_set: tuple[list[np.ndarray], list[str]],
          validation: tuple[list[np.ndarray], list[str]], config: TrainConfig, out_dir: Path,
          resume: bool = False) -> list[dict[str, Any]]:
    """Train within the budget; writes the best checkpoint to ``out_dir/float.pt`` and a resume point after every
    epoch (``resume``: go on from it; the budget counts the time already spent); returns the history."""
    features, texts = train_set
    rng = np.random.default_rng(config.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    n_mels = int(model.architecture["n_mels"])
    ctc = torch.nn.CTCLoss(blank=0, zero_infinity=True)
    started = time.time()
    history: list[dict[str, Any]] = []
    best = float("inf")
    stale = 0
    steps = 0
    first_epoch = 0
    if resume:
        point = torch.load(out_dir / RESUME_FILE, weights_only=True)
        model.load_state_dict(point["model"])
        optimizer.load_state_dict(point["optimizer"])
        rng.bit_generator.state = point["rng"]
        torch.set_rng_state(point["torch_rng"])
        history, best, stale, steps = point["history"], point["best"], point["stale"], point["steps"]
        started -= point["elapsed"]
        first_epoch = len(history)
        print(f"[train] resumed after epoch {first_epoch - 1}, {point['elapsed']:.0f} s spent", flush=True)
    order_by_length = np.argsort([f.shape[0] for f in features])
    frontend = LogMelFrontend(LogMelConfig())  # the one split_features() computed the features with
    stack = int(model.architecture["stack"])
    lead_frames = int(round(config.lead_in_seconds * frontend.config.sample_rate / frontend.config.hop_length / stack))
    bank = lead_in_bank(frontend, stack, seconds=2 * config.lead_in_seconds) if lead_frames else []
    for epoch in range(first_epoch, config.max_epochs):
        model.train()
        batches = [order_by_length[i:i + config.batch_size] for i in range(0, len(features), config.batch_size)]
        losses = []
        for b in rng.permutation(len(batches)):
            if config.schedule == "cosine":
                elapsed = time.time() - started
                progress = steps / config.max_steps if config.max_steps else elapsed / config.budget_seconds
                for group in optimizer.param_groups:
                    group["lr"] = cosine_rate(config, progress, steps)
            leads = lead_ins(len(batches[b]), bank, lead_frames, rng) if lead_frames else None
            x, lengths, targets, target_lengths = _batch(features, texts, batches[b], leads)
            if config.warp:
                x = mel_warp(x, frontend.config, config.warp, rng)
            if config.band_gain_db:
                x = band_gain(x, n_mels, config.band_gain_db, rng)
            if config.freq_masks or config.time_masks:
                x = spec_augment(x, lengths, model.mean, n_mels, config, rng)
            if config.feature_noise:
                x = x + config.feature_noise * torch.randn_like(x) * model.std
            log_probs = model(x).transpose(0, 1)
            loss = ctc(log_probs, targets, lengths, target_lengths)
            if config.start_blank_frames:
                # No speech in the first frames (every utterance has >= 50 ms of lead-in): blank there, so the
                # LSTM cannot settle on guessing the first characters from the prior before hearing them.
                loss = loss - log_probs[: config.start_blank_frames, :, 0].mean()
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            losses.append(float(loss.detach()))
            steps += 1
            if time.time() - started > config.budget_seconds or (config.max_steps and steps >= config.max_steps):
                break
        model.eval()
        cer = character_error_rate(model, *validation)
        history.append({"epoch": epoch, "loss": float(np.mean(losses)), "validation_cer": round(cer, 4),
                        "seconds": round(time.time() - started, 1), "lr": optimizer.param_groups[0]["lr"]})
        print(f"[train] {history[-1]}", flush=True)
        if cer < best:
            best, stale = cer, 0
            torch.save(model.state_dict(), out_dir / "float.pt")
        else:
            stale += 1
            if config.schedule == "plateau" and stale >= config.patience:
                stale = 0
                for group in optimizer.param_groups:
                    group["lr"] *= 0.5
        save_resume_point(out_dir, model, optimizer, rng, {"history": history, "best": best, "stale": stale,
                                                           "steps": steps, "elapsed": time.time() - started})
        if time.time() - started > config.budget_seconds or (config.max_steps and steps >= config.max_steps):
            break
    return history


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--budget-seconds", type=float, default=TrainConfig.budget_seconds)
    parser.add_argument("--max-steps", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="use only this many utterances per split")
    parser.add_argument("--init", type=Path, default=None, help="start from this float.pt (same architecture)")
    parser.add_argument("--start-blank-frames", type=int, default=TrainConfig.start_blank_frames)
    parser.add_argument("--learning-rate", type=float, default=TrainConfig.learning_rate)
    parser.add_argument("--hidden-size", type=int, default=DEFAULT_ARCHITECTURE["hidden_size"])
    parser.add_argument("--no-spec-augment", action="store_true", help="train without SpecAugment masks")
    parser.add_argument("--threads", type=int, default=TrainConfig.threads)
    parser.add_argument("--band-gain-db", type=float, default=TrainConfig.band_gain_db,
                        help="per-utterance random smooth gain over the mel bands, peak dB (0: off)")
    parser.add_argument("--lead-in-seconds", type=float, default=TrainConfig.lead_in_seconds,
                        help="quiet noise of a random level in front of half the utterances, up to this long (0: off)")
    parser.add_argument("--warp", type=float, default=TrainConfig.warp,
                        help="stretch each utterance's spectrum by a random factor up to 1 + this (0: off)")
    parser.add_argument("--schedule", default=TrainConfig.schedule, choices=("plateau", "cosine"),
                        help="learning rate: halve when validation stalls, or a cosine decay over the budget")
    parser.add_argument("--resume", action="store_true",
                        help="go on from OUT/resume.pt (written after every epoch) with the same settings and data")
    args = parser.parse_args(argv)
    if args.resume and not (args.out / RESUME_FILE).exists():
        parser.error(f"--resume: expected {args.out / RESUME_FILE} from an earlier run, got no such file")
    masks = {"freq_masks": 0, "time_masks": 0} if args.no_spec_augment else {}
    config = TrainConfig(budget_seconds=args.budget_seconds, max_steps=args.max_steps,
                         learning_rate=args.learning_rate, start_blank_frames=args.start_blank_frames,
                         threads=args.threads, band_gain_db=args.band_gain_db,
                         lead_in_seconds=args.lead_in_seconds, warp=args.warp, schedule=args.schedule, **masks)
    torch.set_num_threads(config.threads)
    # Subnormal floats appear in the LSTM's gradients as training settles, and x86 cores take a slow path on each:
    # without this, every epoch runs slower than the last (benchmarks/bench_asr_train_step.py times one step of the
    # shipped model both ways: 2.3x)
    torch.set_flush_denormal(True)
    torch.manual_seed(config.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    frontend = LogMelFrontend(LogMelConfig())
    architecture = dict(DEFAULT_ARCHITECTURE, input_size=args.hidden_size, hidden_size=args.hidden_size,
                        n_tokens=len(TOKENS))
    train_features, train_texts, _ = split_features(args.data, "train", frontend, architecture["stack"], args.limit)
    validation_features, validation_texts, _ = split_features(args.data, "validation", frontend,
                                                              architecture["stack"], args.limit)
    model = CtcLSTM(**architecture)
    stacked = np.concatenate(train_features)
    model.set_statistics(stacked.mean(axis=0), stacked.std(axis=0))
    if args.init is not None:
        model.load_state_dict(torch.load(args.init, weights_only=True))
    history = train(model, (train_features, train_texts), (validation_features, validation_texts), config, args.out,
                    resume=args.resume)
    (args.out / "config.json").write_text(json.dumps({
        "architecture": architecture, "tokens": list(TOKENS), "frontend": frontend.config.to_dict(),
        "train": asdict(config), "n_parameters": sum(p.numel() for p in model.parameters()),
        "n_train": len(train_texts), "init": str(args.init) if args.init else None}, indent=1))
    (args.out / "history.json").write_text(json.dumps(history, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
