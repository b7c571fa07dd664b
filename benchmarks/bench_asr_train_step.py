"""One training step of the speech recognizer with subnormal floats kept and flushed to zero, side by side.

A trained LSTM's gradients hold many subnormal floats (|x| < 1.2e-38), and x86 cores take a slow path on each;
``torch.set_flush_denormal(True)``, which ``recipes/asr/train.py`` sets, flushes them to zero. This times forward +
CTC loss + backward of the shipped recognizer (``models/asr/float.pt``) on the four utterances of
``models/asr/demo.wav`` as one padded batch, one thread, the two modes in alternating rounds, and counts the
subnormal gradient values in each mode. Prints and saves the ratio.
Run: python benchmarks/bench_asr_train_step.py [--rounds N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from _common import save

ROOT = Path(__file__).resolve().parent.parent


def batch(model_dir: Path) -> tuple[torch.Tensor, ...]:
    """The demo's utterances as the trainer batches them: padded features and their CTC targets."""
    from lstm_edge.recipes.asr.train import _batch
    from lstm_edge.runtime.asr import stack_frames
    from lstm_edge.runtime.audio import read_wav
    from lstm_edge.runtime.frontend import LogMelConfig, LogMelFrontend

    config = json.loads((model_dir / "config.json").read_text())
    demo = json.loads((model_dir / "demo.json").read_text())["utterances"]
    audio = read_wav(model_dir / "demo.wav")[0][:, 0]
    frontend = LogMelFrontend(LogMelConfig.from_dict(config["frontend"]))
    rate = frontend.config.sample_rate
    rows = [stack_frames(frontend.compute(audio[int((u["start_s"] - 0.3) * rate):int((u["end_s"] + 0.3) * rate)]),
                         int(config["architecture"]["stack"])) for u in demo]
    return _batch(rows, [u["text"] for u in demo], np.arange(len(rows)))


def main() -> None:
    from lstm_edge.recipes.asr.export_model import load_checkpoint

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", type=Path, default=ROOT / "models" / "asr")
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, _ = load_checkpoint(args.model_dir)
    model.train()
    x, lengths, targets, target_lengths = batch(args.model_dir)
    ctc = torch.nn.CTCLoss(blank=0, zero_infinity=True)
    tiny = torch.finfo(torch.float32).tiny

    def step() -> int:
        model.zero_grad()
        loss = ctc(model(x).transpose(0, 1), targets, lengths, target_lengths)
        loss.backward()
        return sum(int(((p.grad != 0) & (p.grad.abs() < tiny)).sum()) for p in model.parameters())

    seconds: dict[bool, list[float]] = {False: [], True: []}
    subnormal: dict[bool, int] = {}
    for flush in (False, True):  # warm-up
        torch.set_flush_denormal(flush)
        step()
    for _ in range(args.rounds):
        for flush in (False, True):
            torch.set_flush_denormal(flush)
            began = time.perf_counter()
            subnormal[flush] = step()
            seconds[flush].append(time.perf_counter() - began)
    torch.set_flush_denormal(False)
    kept, flushed = statistics.median(seconds[False]), statistics.median(seconds[True])
    payload = {"frames": int(lengths.sum()), "batch": int(x.shape[0]), "threads": 1, "rounds": args.rounds,
               "step_ms_subnormals_kept": round(kept * 1000, 1), "step_ms_flushed": round(flushed * 1000, 1),
               "ratio_kept_over_flushed": round(kept / flushed, 2),
               "subnormal_gradient_values": {"kept": subnormal[False], "flushed": subnormal[True]}}
    print(json.dumps(payload))
    print(save("asr_train_step", payload))


if __name__ == "__main__":
    main()
