"""The text corpus: English quotes of the Debian ``fortunes`` package, cleaned and split by source file.

Licence: the fortune files are distributed under the BSD licence of fortune-mod (see
``/usr/share/doc/fortunes/copyright``; copyright The Regents of the University of California, redistribution with
the notice retained). Install with ``apt-get install -y fortunes``. Nothing of the corpus is shipped except the
short reference text stored in the exported manifest.

Cleaning: one document per fortune (files are ``%``-separated); Unicode is folded to ASCII where a plain
equivalent exists (accents dropped, curly quotes straightened), other characters are dropped; tabs and runs of
spaces become one space, lines are stripped; documents that are mostly not letters (ASCII art) are dropped.
Documents are joined with a blank line.

Language-model split: BY SOURCE FILE (each topic file lies in exactly one of train / validation / test), chosen by a
seeded shuffle of the file names filling test and validation to ~10% of the characters each.
"""

from __future__ import annotations

import random
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lstm_edge.runtime.tokenizer import Tokenizer

FORTUNES_DIR = Path("/usr/share/games/fortunes")
EXCLUDED_FILES = ("ascii-art", "translate-me")  # pictures, and text that is not English
DOCUMENT_SEPARATOR = "\n\n"
UNKNOWN_CHAR = "\ufffd"
# id 0 = unknown, then newline and printable ASCII: 97 tokens.
VOCAB: tuple[str, ...] = (UNKNOWN_CHAR, "\n") + tuple(chr(c) for c in range(32, 127))
SPLIT_SEED = 0
SPLIT_FRACTION = 0.10

_ASCII_FOLD = {"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-", "\u2014": "--",
               "\u2026": "...", "\u00a0": " "}


def tokenizer() -> Tokenizer:
    """The character tokenizer of the text models (recorded in their manifests)."""
    return Tokenizer.chars(VOCAB, unknown_id=0)


class CorpusError(ValueError):
    """The fortunes corpus is not installed or a split is empty."""


def clean_document(text: str) -> str:
    """One fortune -> plain ASCII text with single spaces and stripped lines ('' when nothing useful is left)."""
    text = "".join(_ASCII_FOLD.get(c, c) for c in text)
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if c == "\n" or 32 <= ord(c) < 127 or c == "\t")
    text = text.replace("\t", " ")
    lines = [re.sub(r" {2,}", " ", line).strip() for line in text.split("\n")]
    text = "\n".join(lines).strip()
    text = re.sub(r"\n{3,}", "\n\n", text)
    letters = sum(c.isalpha() for c in text)
    if not text or letters < 0.5 * len(text.replace(" ", "").replace("\n", "")):
        return ""
    return text


def source_files(root: Path = FORTUNES_DIR) -> list[Path]:
    if not root.is_dir():
        raise CorpusError(f"{root}: no fortunes here; install them with `apt-get install -y fortunes`")
    files = [p for p in sorted(root.iterdir()) if p.is_file() and not p.is_symlink() and p.suffix == ""
             and p.name not in EXCLUDED_FILES]
    if not files:
        raise CorpusError(f"{root}: no fortune files found")
    return files


def read_documents(path: Path) -> list[str]:
    raw = path.read_bytes().decode("utf-8", errors="replace")
    docs = (clean_document(d) for d in re.split(r"\n%\n?", raw))
    return [d for d in docs if d]


@dataclass(frozen=True)
class TextSplits:
    """Files and documents per split (``files[split]`` lists file names)."""

    files: dict[str, list[str]]
    documents: dict[str, list[str]]

    def text(self, split: str) -> str:
        return DOCUMENT_SEPARATOR.join(self.documents[split]) + DOCUMENT_SEPARATOR


def split_by_file(root: Path = FORTUNES_DIR, seed: int = SPLIT_SEED, fraction: float = SPLIT_FRACTION) -> TextSplits:
    """Train / validation / test by source file (seeded shuffle; test then validation filled to ``fraction``)."""
    docs_by_file = {p.name: read_documents(p) for p in source_files(root)}
    sizes = {name: sum(len(d) for d in docs) for name, docs in docs_by_file.items()}
    total = sum(sizes.values())
    names = sorted(docs_by_file)
    random.Random(seed).shuffle(names)
    files: dict[str, list[str]] = {"train": [], "validation": [], "test": []}
    filled = {"test": 0, "validation": 0}
    for name in names:
        target = next((s for s in ("test", "validation") if filled[s] < fraction * total), "train")
        files[target].append(name)
        if target != "train":
            filled[target] += sizes[name]
    documents = {split: [d for name in sorted(names_) for d in docs_by_file[name]] for split, names_ in files.items()}
    for split, docs in documents.items():
        if not docs:
            raise CorpusError(f"split {split!r} is empty")
    return TextSplits({k: sorted(v) for k, v in files.items()}, documents)


def split_documents(docs: Sequence[str], seed: int, fractions: Sequence[float] = (0.8, 0.1, 0.1)) -> list[list[str]]:
    """Seeded shuffle of ``docs`` cut into parts of the given fractions (the classifier's split by document)."""
    order = list(docs)
    random.Random(seed).shuffle(order)
    cuts, start, parts = [], 0, []
    for f in fractions[:-1]:
        cuts.append(start + round(f * len(order)))
        start = cuts[-1]
    bounds = [0] + cuts + [len(order)]
    for a, b in zip(bounds[:-1], bounds[1:]):
        parts.append(order[a:b])
    return parts
