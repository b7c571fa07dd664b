"""CLI: ``lstm-edge generate | score | suggest | classify`` over character text models."""

from __future__ import annotations

import argparse
import json

import numpy as np

from lstm_edge.runtime.errors import InputError, expected_got
from lstm_edge.runtime.model import StreamingModel
from lstm_edge.runtime.text import TextClassifier, TextModel


def _load(args: argparse.Namespace) -> StreamingModel:
    return StreamingModel.load(args.model_dir, backend=args.backend, precision=args.precision)


def cmd_generate(args: argparse.Namespace) -> int:
    text = TextModel(_load(args))
    text.feed(args.prompt)
    continuation = text.generate(args.n, temperature=args.temperature, seed=args.seed)
    if args.json:
        print(json.dumps({"prompt": args.prompt, "continuation": continuation, "n": args.n,
                          "temperature": args.temperature, "seed": args.seed}))
    else:
        print(args.prompt + continuation)
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    result = TextModel(_load(args)).score_file(args.file, errors=args.errors)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['bits_per_char']:.4f} bits/char over {result['chars']} characters"
              + (f" ({result['unknown_chars']} unknown)" if result["unknown_chars"] else ""))
    return 0


def cmd_suggest(args: argparse.Namespace) -> int:
    text = TextModel(_load(args))
    text.feed(args.text)
    suggestions = text.suggest(args.k)
    if args.json:
        print(json.dumps({"text": args.text, "word": text.current_word,
                          "suggestions": [{"word": s.word, "probability": s.probability} for s in suggestions]}))
    else:
        for s in suggestions:
            print(f"{s.word}\t{s.probability:.4f}")
    return 0


def cmd_classify(args: argparse.Namespace) -> int:
    if not args.text:
        raise InputError(expected_got("text to classify", "at least one character", "an empty text"))
    classifier = TextClassifier(_load(args))
    per_char = classifier.feed(args.text)
    final = per_char[-1]
    label = classifier.labels[int(np.argmax(final))]
    if args.json:
        print(json.dumps({"label": label, "probabilities": dict(zip(classifier.labels, map(float, final))),
                          "label_after_each_char": [classifier.labels[int(i)] for i in per_char.argmax(axis=1)]}))
    else:
        for name, p in sorted(zip(classifier.labels, final), key=lambda item: -item[1]):
            print(f"{name}\t{p:.4f}")
    return 0


def _non_negative_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value!r}") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {number}")
    return number


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("model_dir")
    p.add_argument("--backend", choices=("onnx", "litert"), default=None)
    p.add_argument("--precision", choices=("float", "int8"), default="float")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def register(sub) -> None:
    p = sub.add_parser("generate", help="continue a prompt with a character language model",
                       description="Feed the prompt, then generate N characters (temperature 0: greedy).")
    _common(p)
    p.add_argument("--prompt", default="")
    p.add_argument("-n", type=_non_negative_int, default=200, help="characters to generate (0: none)")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy; > 0 samples")
    p.add_argument("--seed", type=int, default=None)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("score", help="bits per character of a UTF-8 text file",
                       description="Stream a UTF-8 file through the language model (64 KB at a time) and print its "
                       "bits per character. Invalid UTF-8 is an error unless --errors replace.")
    _common(p)
    p.add_argument("file")
    p.add_argument("--errors", choices=("strict", "replace"), default="strict")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("suggest", help="the most likely completions of the text's last word",
                       description="Feed the text, then beam-search characters until a word boundary.")
    _common(p)
    p.add_argument("text")
    p.add_argument("-k", type=int, default=3, help="number of completions")
    p.set_defaults(func=cmd_suggest)

    p = sub.add_parser("classify", help="classify text with a character classifier (answers after every char)")
    _common(p)
    p.add_argument("text")
    p.set_defaults(func=cmd_classify)
