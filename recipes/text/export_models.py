"""Export the trained text models (float ONNX + TFLite, C weight files), quantize them to int8 and run the parity
gate.

The language model's reference input is 2000 characters of validation text (``verify`` reports bits per character
of every file on it); the classifier's is 600 characters of validation quotes. Both manifests carry the character
tokenizer and ``extra.text`` (task, start text).

The hashed n-gram topic classifier (``--topics``, ``recipes/text/ngram.py``) is a step model (one character per
step) over the same reference quotes; it has no C weight files (the C library has no hashed-n-gram layer).

Run: ``python -m lstm_edge.recipes.text.export_models --lm models/text/lm --classifier models/text/classifier
--topics models/text/topics``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from lstm_edge.export import export
from lstm_edge.quantize import quantize
from lstm_edge.quantize.parity import format_table, parity_report
from lstm_edge.recipes.text.corpus import DOCUMENT_SEPARATOR, split_by_file, tokenizer
from lstm_edge.recipes.text.model import load_model

EXPORT_DIR = "export"
CHUNK_SIZES = (16, 1)
LM_TOLERANCES = {"int8_bits_per_char_increase": 0.03,
                 # near-ties between next characters are common; bits per character is the gate that matters
                 "int8_argmax_agreement": 0.95}
LM_REFERENCE_CHARS = 2000
CLASSIFIER_REFERENCE_CHARS = 600


def export_text_model(weights_dir: Path, reference_text: str, formats=("onnx", "tflite")) -> Path:
    """Export ``weights_dir`` (float.pt + config.json) into ``weights_dir/export``, quantize, add the C weight
    files (native backend, ``build-c``)."""
    from lstm_edge.export.c_export import add_c_files

    model, config = load_model(weights_dir)
    task = config["task"]
    labels = config.get("labels") if task == "classifier" else None
    text = {"task": task, "start_text": DOCUMENT_SEPARATOR if task == "language_model" else ""}
    reference = tokenizer().encode(reference_text)
    out_dir = export(model, torch.from_numpy(reference[None, :32]), weights_dir / EXPORT_DIR, formats=formats,
                     chunk_sizes=CHUNK_SIZES, labels=labels, name=f"char-{task}",
                     tolerances=LM_TOLERANCES if task == "language_model" else None,
                     output_semantics="logits", extra={"text": text}, reference_input=reference,
                     tokenizer=tokenizer())
    quantize(out_dir)
    add_c_files(out_dir)
    return out_dir


def export_topics_model(weights_dir: Path, reference_text: str, formats=("onnx", "tflite")) -> Path:
    """Export the hashed n-gram classifier in ``weights_dir`` into ``weights_dir/export`` and quantize it."""
    from lstm_edge.recipes.text.ngram import load_ngram

    model, settings = load_ngram(weights_dir)
    reference = tokenizer().encode(reference_text)[:, None]  # one character per step
    out_dir = export(model, torch.from_numpy(reference[:1]), weights_dir / EXPORT_DIR, formats=formats,
                     labels=settings["labels"], name="char-topics", output_semantics="logits",
                     extra={"text": {"task": "classifier", "start_text": ""}}, reference_input=reference,
                     tokenizer=tokenizer())
    quantize(out_dir)
    return out_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lm", type=Path)
    parser.add_argument("--classifier", type=Path)
    parser.add_argument("--topics", type=Path)
    args = parser.parse_args(argv)
    splits = split_by_file()
    failures = []
    if args.lm:
        out = export_text_model(args.lm, splits.text("validation")[:LM_REFERENCE_CHARS])
        report = parity_report(out)
        print(format_table(report))
        failures += report["failures"]
    for weights_dir, exporter in ((args.classifier, export_text_model), (args.topics, export_topics_model)):
        if weights_dir is None:
            continue
        from lstm_edge.recipes.text.classify import labelled_splits

        quotes = "\n".join(labelled_splits()["validation"][0])
        out = exporter(weights_dir, quotes[:CLASSIFIER_REFERENCE_CHARS])
        report = parity_report(out)
        print(format_table(report))
        failures += report["failures"]
    for failure in failures:
        print(f"FAIL {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
