"""Running English sentences for negatives and out-of-grammar speech: the Debian ``fortunes`` text, split by source
file exactly as the text recipe splits it (a sentence of a test file is never spoken in training)."""

from __future__ import annotations

import re
from collections.abc import Iterable

from lstm_edge.recipes.speech.synthesis import SynthError
from lstm_edge.recipes.speech.voices import SPLITS

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def running_sentences(banned_words: Iterable[str] = (), banned_phrases: Iterable[str] = (), min_words: int = 4,
                      max_words: int = 16) -> dict[str, list[str]]:
    """Sentences per split, lower-cased, letters and apostrophes only, ``min_words``-``max_words`` long, without
    any of ``banned_words`` or ``banned_phrases``; sorted and unique."""
    from lstm_edge.recipes.text.corpus import split_by_file

    banned = set(banned_words)
    phrases = list(banned_phrases)
    splits = split_by_file()
    out: dict[str, list[str]] = {}
    for split in SPLITS:
        chosen: list[str] = []
        for document in splits.documents[split]:
            for sentence in _SENTENCE_END.split(document.replace("\n", " ")):
                words = re.sub(r"[^a-z' ]", " ", sentence.lower()).split()
                words = [w.strip("'") for w in words if w.strip("'")]
                if not min_words <= len(words) <= max_words or banned & set(words):
                    continue
                text = " ".join(words)
                if any(f" {p} " in f" {text} " for p in phrases):
                    continue
                chosen.append(text)
        out[split] = sorted(set(chosen))
        if not out[split]:
            raise SynthError(f"no usable sentence in the {split} fortunes files")
    return out
