"""`lstm-edge score` throughput: characters per second of one exact stream (every character conditioned on all
before it) per engine and precision, over the same text, one thread, in one run; and the bits per character each
gives, so a faster engine is seen to score the same text the same.

Text: the held-out test files of the fortunes split, repeated to ``--chars`` characters.
Run: ``python benchmarks/bench_text_score_rate.py [--chars 300000]``; writes results/text_score_rate.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from lstm_edge.recipes.text.corpus import split_by_file  # noqa: E402
from lstm_edge.runtime.model import StreamingModel  # noqa: E402
from lstm_edge.runtime.text import TextModel  # noqa: E402

from _common import save  # noqa: E402

VARIANTS = (("onnx", "float"), ("onnx", "int8"), ("litert", "float"), ("litert", "int8"),
            ("native", "float"), ("native", "int8"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=Path("models/text/lm/export"))
    parser.add_argument("--chars", type=int, default=300_000)
    args = parser.parse_args()
    held_out = split_by_file().text("test")
    text = (held_out * (args.chars // len(held_out) + 1))[:args.chars]
    rows = []
    for backend, precision in VARIANTS:
        model = TextModel(StreamingModel.load(args.model_dir, backend=backend, precision=precision, threads=1))
        started = time.perf_counter()
        bits, chars, _ = model.score_pieces(text[i:i + 65536] for i in range(0, len(text), 65536))
        seconds = time.perf_counter() - started
        rows.append({"backend": backend, "precision": precision, "chars": chars, "seconds": round(seconds, 2),
                     "chars_per_second": round(chars / seconds), "bits_per_char": round(bits / chars, 4),
                     "engine": model.model.describe()})
        print(f"{backend:7s} {precision:5s} {chars / seconds:9.0f} chars/s  {bits / chars:.4f} bits/char  "
              f"({model.model.describe()})", flush=True)
    slowest = min(r["chars_per_second"] for r in rows)
    for row in rows:
        row["speed_vs_slowest"] = round(row["chars_per_second"] / slowest, 2)
    save("text_score_rate", {"model_dir": str(args.model_dir), "threads": 1, "results": rows})


if __name__ == "__main__":
    main()
