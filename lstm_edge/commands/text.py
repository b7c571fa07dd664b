"""CLI: ``lstm-edge generate | score | suggest | classify`` over character text models."""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from lstm_edge.commands import add_engine_options, stdin_bytes
from lstm_edge.runtime.backends import PREFERENCE
from lstm_edge.runtime.errors import InputError, expected_got
from lstm_edge.runtime.model import StreamingModel
from lstm_edge.runtime.text import TextClassifier, TextModel, text_file

# Scoring is one long stream of single-character steps: the engine's per-step cost decides (README, Text).
SCORE_PREFERENCE = ("native", "onnx", "litert")


def _load(args: argparse.Namespace, preference: tuple[str, ...] = PREFERENCE) -> StreamingModel:
    return StreamingModel.load(args.model_dir, backend=args.backend, precision=args.precision,
                               preference=preference)


def _feed_prompt(text: TextModel, args: argparse.Namespace) -> str:
    """Feed ``--prompt`` or ``--prompt-file`` (a path, or '-' for standard input); return the prompt for display
    (a file's prompt is not echoed: it may be long)."""
    if args.prompt_file is None:
        text.feed(args.prompt)
        return args.prompt
    if args.prompt:
        raise InputError(expected_got("prompt", "--prompt or --prompt-file", "both"))
    if args.prompt_file == "-":
        text.feed_stream(stdin_bytes(), "standard input", errors=args.errors)
    else:
        with open(text_file(args.prompt_file), "rb") as handle:
            text.feed_stream(handle, args.prompt_file, errors=args.errors)
    return ""


def _adaptive(args: argparse.Namespace) -> bool | None:
    """``--adapt`` turns the adaptive part on; without it the manifest decides."""
    return True if args.adapt else None


def cmd_generate(args: argparse.Namespace) -> int:
    text = TextModel(_load(args), adaptive=_adaptive(args))
    prompt = _feed_prompt(text, args)
    characters = text.generate_iter(args.n, temperature=args.temperature, seed=args.seed)
    if args.json:
        continuation = "".join(characters)
        print(json.dumps({"prompt": prompt if args.prompt_file is None else None, "prompt_file": args.prompt_file,
                          "continuation": continuation, "n": args.n, "temperature": args.temperature,
                          "seed": args.seed}))
        return 0
    sys.stdout.write(prompt)
    for character in characters:  # printed as each is chosen
        sys.stdout.write(character)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0


class _Progress:
    """Bytes scored so far and the rate, on one rewritten line of stderr (only when stderr is a terminal)."""

    def __init__(self, total: int | None) -> None:
        self.total, self.started, self.shown = total, time.monotonic(), 0.0
        self.enabled = sys.stderr.isatty()

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        if not self.enabled or now - self.shown < 0.5:
            return
        self.shown = now
        rate = done / max(now - self.started, 1e-9) / 1e3
        of = f" of {self.total / 1e6:.1f} MB ({100 * done / self.total:.0f}%)" if self.total else ""
        sys.stderr.write(f"\rscored {done / 1e6:.1f} MB{of}, {rate:.0f} KB/s ")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self.shown:
            sys.stderr.write("\n")


def cmd_score(args: argparse.Namespace) -> int:
    text = TextModel(_load(args, SCORE_PREFERENCE), adaptive=_adaptive(args))
    started = time.perf_counter()
    if args.file == "-":
        progress = _Progress(None)
        result = text.score_stream(stdin_bytes(), "standard input", errors=args.errors, progress=progress)
    else:
        progress = _Progress(text_file(args.file).stat().st_size)
        result = text.score_file(args.file, errors=args.errors, progress=progress)
    progress.close()
    result["chars_per_second"] = round(result["chars"] / max(time.perf_counter() - started, 1e-9))
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['bits_per_char']:.4f} bits/char over {result['chars']} characters"
              + (f" ({result['unknown_chars']} unknown)" if result["unknown_chars"] else ""))
    return 0


def cmd_suggest(args: argparse.Namespace) -> int:
    text = TextModel(_load(args), adaptive=_adaptive(args))
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
    add_engine_options(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _adapt_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--adapt", action="store_true",
                   help="mix in a context model learned from the text as it is read (docs/manifest.md, Text models; "
                        "on by default when the manifest's extra.text.adaptive says so)")


def register(sub) -> None:
    p = sub.add_parser("generate", help="continue a prompt with a character language model",
                       description="Feed the prompt, then generate N characters (temperature 0: greedy).")
    _common(p)
    p.add_argument("--prompt", default="", help="text to continue (default: none, start from the model's start)")
    p.add_argument("--prompt-file", default=None, metavar="FILE|-",
                   help="read the prompt from a UTF-8 file, or '-' for standard input (fed 64 KB at a time)")
    p.add_argument("--errors", choices=("strict", "replace"), default="strict",
                   help="invalid UTF-8 in --prompt-file: an error (strict) or unknown characters (replace)")
    p.add_argument("-n", type=_non_negative_int, default=200, help="characters to generate (0: none)")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy; > 0 samples")
    p.add_argument("--seed", type=int, default=None)
    _adapt_option(p)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("score", help="bits per character of a UTF-8 text file",
                       description="Stream a UTF-8 file ('-': standard input) through the language model (64 KB at "
                       "a time) and print its bits per character; progress on stderr when it is a terminal. Invalid "
                       "UTF-8 is an error unless --errors replace. Without --backend: native (C), else onnx, else "
                       "litert; --precision int8 is several times faster (README, Text).")
    _common(p)
    p.add_argument("file", metavar="FILE|-")
    p.add_argument("--errors", choices=("strict", "replace"), default="strict")
    _adapt_option(p)
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("suggest", help="the most likely completions of the text's last word",
                       description="Feed the text, then beam-search characters until a word boundary.")
    _common(p)
    p.add_argument("text")
    p.add_argument("-k", type=int, default=3, help="number of completions")
    _adapt_option(p)
    p.set_defaults(func=cmd_suggest)

    p = sub.add_parser("classify", help="classify text with a character classifier (answers after every char)")
    _common(p)
    p.add_argument("text")
    p.set_defaults(func=cmd_classify)
