"""Broader English training text for the character language model: prose packaged in Debian under free licences.

Every source is one Debian package (install with ``apt-get install -y <package>``); its licence is the one its
``/usr/share/doc/<package>/copyright`` states, recorded here and in the training report. Nothing of this text is
shipped. Debian's own manuals (debian-reference, debian-faq, debian-handbook) are NOT sources: they are the held-out
test text of ``benchmarks/bench_text_adaptive.py``.

| source | package | licence | text |
|---|---|---|---|
| devil | dict-devil | public domain (Ambrose Bierce, 1911) | The Devil's Dictionary |
| jargon | dict-jargon | public domain | The Jargon File 4.4.7 |
| git | git-doc | GPL-2 | Git's guides and manual pages (AsciiDoc) |
| perl | perl-doc | GPL-1+ or Artistic | Perl's manual (POD) |
| python | python3.11-doc | PSF-2.0 | Python's documentation (reStructuredText sources) |
| gnu-standards | gnu-standards | GFDL-1.3 (no invariant sections) | GNU Coding Standards, Information for Maintainers |

Markup is reduced to its words (POD commands and formatting codes, reST roles and directives, AsciiDoc links and
rulers, Info node headers), then each file gets the fortunes' cleaning (``corpus.clean_document``, per paragraph).
The split is BY SOURCE FILE: within each source a seeded shuffle of its files fills validation to
``VALIDATION_FRACTION`` of its characters; a source of one file (the dictionaries) is cut into its entries first,
(the Info manual: its nodes) first, which are then the "files" split this way. A source's training
text is capped at ``MAX_TRAIN_CHARS`` (files in the seeded order), so Perl's manual does not drown the rest.
"""

from __future__ import annotations

import gzip
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from lstm_edge.recipes.text.corpus import DOCUMENT_SEPARATOR, CorpusError, clean_document

VALIDATION_FRACTION = 0.03
MAX_TRAIN_CHARS = 4_000_000
SPLIT_SEED = 0


@dataclass(frozen=True)
class Source:
    name: str
    package: str
    licence: str
    root: Path
    pattern: str  # glob under root
    reader: Callable[[Path], list[tuple[str, str]]]  # path -> [(document id, raw text)]


def _pod(raw: str) -> str:
    lines = []
    verbatim_skip = False
    for line in raw.split("\n"):
        if line.startswith("=cut") or line.startswith("=begin") or line.startswith("=for"):
            verbatim_skip = line.startswith("=begin")
            continue
        if line.startswith("=end"):
            verbatim_skip = False
            continue
        if verbatim_skip:
            continue
        if line.startswith("="):
            line = re.sub(r"^=\w+\s*", "", line)  # =head1 NAME -> NAME, =item * -> *
        lines.append(line)
    text = "\n".join(lines)
    for _ in range(3):  # nested codes: B<C<x>>
        text = re.sub(r"[A-Z]<<+\s+(.*?)\s+>>+", r"\1", text)
        text = re.sub(r"L<([^<>|]*)\|[^<>]*>", r"\1", text)
        text = re.sub(r"[BCIFSLXE]<([^<>]*)>", r"\1", text)
    return text.replace("E<gt>", ">").replace("E<lt>", "<")


def _rest(raw: str) -> str:
    lines = []
    for line in raw.split("\n"):
        if re.fullmatch(r"\s*([=\-~^\"'`#*+.:])\1{2,}\s*", line):  # section underlines
            continue
        if re.match(r"\s*\.\. ", line):  # directives, comments, targets
            continue
        if re.match(r"\s*:[\w-]+:( |$)", line):  # directive options, field lists
            continue
        lines.append(line)
    text = "\n".join(lines)
    text = re.sub(r":[\w:.-]+:`~?!?([^`<]*?)(?:\s*<[^`]*>)?`", r"\1", text)  # :func:`name <target>` -> name
    text = re.sub(r"``([^`]*)``", r"\1", text)
    text = re.sub(r"`([^`<]*?)\s*<[^`]*>`_+", r"\1", text)  # `words <url>`_
    text = re.sub(r"`([^`]*)`_*", r"\1", text)
    return text.replace("::\n", ":\n")


def _asciidoc(raw: str) -> str:
    lines = []
    for line in raw.split("\n"):
        if re.fullmatch(r"\s*([=\-~^+.*_/])\1{3,}\s*", line) or re.match(r"\s*(\[\[.*\]\]|\[.*\]|:[\w-]+:)\s*$", line):
            continue
        if line.startswith("ifdef::") or line.startswith("endif::") or line.startswith("include::"):
            continue
        lines.append(line)
    text = "\n".join(lines)
    text = re.sub(r"link(?:git)?:([\w./-]+)\[(\d*)\]", lambda m: m.group(1) + (f"({m.group(2)})" if m.group(2) else ""),
                  text)
    return re.sub(r"<<[^,>]*,\s*([^>]*)>>", r"\1", text).replace("{litdd}", "--")


def _info_nodes(path: Path) -> list[tuple[str, str]]:
    """An Info file's nodes (its "entries"), without node headers, menus' markers and the tag table."""
    nodes = []
    for i, part in enumerate(_read(path).split("\x1f")):
        if part.lstrip().startswith(("Tag Table:", "End Tag Table", "Indirect:", "Local Variables")):
            continue
        lines = [line for line in part.split("\n") if not line.startswith("File: ") and "\x7f" not in line]
        nodes.append((f"{path.name}#{i}", "\n".join(lines).replace("* Menu:", "")))
    return nodes


def _dictionary(raw: str) -> list[str]:
    """A dictd database's text: entries start at a line with no indent (the headword)."""
    entries: list[str] = []
    current: list[str] = []
    for line in raw.split("\n"):
        if line and not line[0].isspace() and current:
            entries.append("\n".join(current))
            current = []
        current.append(line.strip())
    if current:
        entries.append("\n".join(current))
    return [e for e in entries if len(e) > 40]


def _read(path: Path) -> str:
    data = path.read_bytes()
    if path.suffix in (".gz", ".dz"):
        data = gzip.decompress(data)
    return data.decode("utf-8", errors="replace")


def _whole(markup: Callable[[str], str]) -> Callable[[Path], list[tuple[str, str]]]:
    return lambda path: [(path.name, markup(_read(path)))]


def _entries(path: Path) -> list[tuple[str, str]]:
    return [(f"{path.name}#{i}", entry) for i, entry in enumerate(_dictionary(_read(path)))]


SOURCES: tuple[Source, ...] = (
    Source("devil", "dict-devil", "public domain", Path("/usr/share/dictd"), "devil.dict.dz", _entries),
    Source("jargon", "dict-jargon", "public domain", Path("/usr/share/dictd"), "jargon.dict.dz", _entries),
    Source("git", "git-doc", "GPL-2", Path("/usr/share/doc/git-doc"), "**/*.txt", _whole(_asciidoc)),
    Source("perl", "perl-doc", "GPL-1+ or Artistic", Path("/usr/share/perl"), "*/pod/*.pod", _whole(_pod)),
    Source("python", "python3.11-doc", "PSF-2.0", Path("/usr/share/doc/python3.11/html/_sources"), "**/*.rst.txt",
           _whole(_rest)),
    Source("gnu-standards", "gnu-standards", "GFDL-1.3, no invariant sections", Path("/usr/share/info"),
           "standards.info.gz", _info_nodes),
)


def clean_text(text: str) -> str:
    """Paragraph by paragraph through the fortunes' cleaning (pictures and code-only paragraphs drop out)."""
    paragraphs = (clean_document(p) for p in re.split(r"\n\s*\n", text))
    return DOCUMENT_SEPARATOR.join(p for p in paragraphs if p)


def source_documents(source: Source) -> Iterator[tuple[str, str]]:
    paths = sorted(source.root.glob(source.pattern)) if source.root.is_dir() else []
    if not paths:
        raise CorpusError(f"{source.name}: no {source.pattern} under {source.root}; install it with "
                          f"`apt-get install -y {source.package}`")
    for path in paths:
        for name, raw in source.reader(path):
            text = clean_text(raw)
            if text:
                yield f"{source.name}/{path.relative_to(source.root)}{name[len(path.name):]}", text


def broad_splits(seed: int = SPLIT_SEED, fraction: float = VALIDATION_FRACTION) -> dict[str, dict[str, list[str]]]:
    """``{"train"|"validation": {source name: [document, ...]}}``, split by source file within each source."""
    splits: dict[str, dict[str, list[str]]] = {"train": {}, "validation": {}}
    for source in SOURCES:
        documents = sorted(source_documents(source))
        total = sum(len(text) for _, text in documents)
        order = list(range(len(documents)))
        random.Random(f"{seed}:{source.name}").shuffle(order)
        filled, kept, train, validation = 0, 0, [], []
        for index in order:
            name, text = documents[index]
            if filled < fraction * total:
                validation.append(text)
                filled += len(text)
            elif kept < MAX_TRAIN_CHARS:
                train.append(text)
                kept += len(text)
        splits["train"][source.name] = train
        splits["validation"][source.name] = validation
    return splits


def licences() -> list[dict[str, str]]:
    return [{"source": s.name, "package": s.package, "licence": s.licence} for s in SOURCES]
