"""Bits per character of trained language models on the validation text of every training source: the fortunes'
validation files and each Debian source's validation files (``recipes/text/sources.py``, the first
``BROAD_VALIDATION_CHARS`` of each), state carried. It is how the shipped model was chosen: never on test text.

Run: ``python -m lstm_edge.recipes.text.compare_lm models/text/lm OTHER_DIR ...`` (prints one JSON line per model).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from lstm_edge.recipes.text.corpus import DOCUMENT_SEPARATOR, split_by_file, tokenizer
from lstm_edge.recipes.text.model import load_model
from lstm_edge.recipes.text.sources import broad_splits
from lstm_edge.recipes.text.train_lm import BROAD_VALIDATION_CHARS, bits_per_char_torch


def validation_texts() -> dict[str, str]:
    texts = {"fortunes": split_by_file().text("validation")}
    for name, docs in broad_splits()["validation"].items():
        texts[name] = (DOCUMENT_SEPARATOR.join(docs) + DOCUMENT_SEPARATOR)[:BROAD_VALIDATION_CHARS]
    return texts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dirs", nargs="+", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    texts = {name: tokenizer().encode(text) for name, text in validation_texts().items()}
    for model_dir in args.model_dirs:
        model, _ = load_model(model_dir)
        scores = {name: round(bits_per_char_torch(model, ids, 8), 3) for name, ids in texts.items()}
        print(json.dumps({"model": str(model_dir), "validation_bits_per_char": scores}), flush=True)


if __name__ == "__main__":
    main()
