"""The recognizer's grammar (``grammar.py``) for CMU PocketSphinx: JSGF grammars and a pronunciation dictionary.

``jsgf(kinds)`` writes one JSGF grammar for the chosen kinds of sentence ("digits", "number", "command"; all three:
the whole grammar). ``pronunciations(words, cmudict)`` gives each word its CMUdict pronunciations, plus ours for the
words CMUdict lacks (``EXTRA_PRONUNCIATIONS``). ``read_fsg`` and ``language_difference`` compare a finite-state
grammar in PocketSphinx's text format (what ``FsgModel.writefile`` writes) with the grammar's word automaton
(``grammar.word_automaton``): a shortest word sequence that one accepts and the other does not, or None.
"""

from __future__ import annotations

import inspect
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lstm_edge.recipes.asr.grammar import DIGITS, ROOMS, TEENS, TEMPLATES, TENS, UNITS, digit_string, number_words

KINDS: tuple[str, ...] = ("digits", "number", "command")
# ARPAbet pronunciations of grammar words missing from CMUdict ("mute" is M Y UW T there).
EXTRA_PRONUNCIATIONS: dict[str, str] = {"unmute": "AH N M Y UW T"}
# JSGF rule of each template slot.
SLOT_RULES: dict[str, str] = {"{number}": "<number>", "{unit}": "<unit>", "{room}": "<room>", "{digits}": "<digits>"}


def _alternatives(items: Iterable[str]) -> str:
    return " | ".join(items)


def _digit_string_lengths() -> tuple[int, int]:
    """The shortest and longest digit string ``grammar.digit_string`` draws (its default bounds)."""
    parameters = inspect.signature(digit_string).parameters
    return int(parameters["low"].default), int(parameters["high"].default)


def _template(template: Sequence[str]) -> str:
    parts = []
    for part in template:
        if part.startswith("{"):
            if part not in SLOT_RULES:
                raise ValueError(f"grammar slot {part!r}: expected one of {sorted(SLOT_RULES)}")
            parts.append(SLOT_RULES[part])
        else:
            parts.append(part)
    return " ".join(parts)


def rules() -> dict[str, str]:
    """Every private rule: name -> expansion. ``<number>`` is 1-100 (a command's number), ``<number_or_zero>``
    0-100 (a "number" sentence)."""
    low, high = _digit_string_lengths()
    hundred = " ".join(number_words(100))
    return {
        "digit": _alternatives(DIGITS),
        "nonzero_digit": _alternatives(DIGITS[1:]),
        "teen": _alternatives(TEENS),
        "tens": _alternatives(TENS),
        "digits": " ".join(["<digit>"] * low + ["[<digit>]"] * (high - low)),
        "number": f"<nonzero_digit> | <teen> | <tens> [<nonzero_digit>] | {hundred}",
        "number_or_zero": f"{DIGITS[0]} | <number>",
        "unit": _alternatives(UNITS),
        "room": _alternatives(ROOMS),
        "command": _alternatives(f"({_template(t)})" for t in TEMPLATES),
    }


KIND_RULES: dict[str, str] = {"digits": "<digits>", "number": "<number_or_zero>", "command": "<command>"}


def jsgf(kinds: Sequence[str] = KINDS, name: str = "lstm_edge") -> str:
    """A JSGF grammar whose public rule ``<sentence>`` is any sentence of the given kinds."""
    unknown = [k for k in kinds if k not in KIND_RULES]
    if unknown or not kinds:
        raise ValueError(f"kinds {list(kinds)}: expected one or more of {list(KINDS)}")
    lines = ["#JSGF V1.0;", "", f"grammar {name};", ""]
    lines += [f"<{rule}> = {expansion};" for rule, expansion in rules().items()]
    lines.append(f"public <sentence> = {_alternatives(KIND_RULES[k] for k in kinds)};")
    return "\n".join(lines) + "\n"


def words_of(grammar_text: str) -> list[str]:
    """The words of a JSGF grammar written by ``jsgf`` (sorted)."""
    words: set[str] = set()
    for line in grammar_text.splitlines():
        if "=" not in line:
            continue
        expansion = line.split("=", 1)[1].rstrip(";")
        for token in expansion.replace("(", " ").replace(")", " ").replace("[", " ").replace("]", " ").split():
            if token != "|" and not token.startswith("<"):
                words.add(token)
    return sorted(words)


def read_cmudict(path: Path, words: Iterable[str]) -> dict[str, list[str]]:
    """The CMUdict pronunciations (``word``, ``word(2)``... lines) of the given words."""
    wanted = set(words)
    found: dict[str, list[str]] = {}
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            entry, _, phones = line.strip().partition(" ")
            word = entry.split("(", 1)[0]
            if word in wanted and phones:
                found.setdefault(word, []).append(phones.strip())
    return found


def pronunciations(words: Iterable[str], cmudict: Path,
                   extra: Mapping[str, str] = EXTRA_PRONUNCIATIONS) -> dict[str, list[str]]:
    """Every word's pronunciations: CMUdict's, else ``extra``'s; a word with neither raises ``KeyError``."""
    words = sorted(set(words))
    found = read_cmudict(cmudict, words)
    for word in words:
        if word not in found and word in extra:
            found[word] = [extra[word]]
    missing = [w for w in words if w not in found]
    if missing:
        raise KeyError(f"no pronunciation for {missing}: expected each in {cmudict} or EXTRA_PRONUNCIATIONS")
    return {w: found[w] for w in words}


def dictionary_text(entries: Mapping[str, Sequence[str]]) -> str:
    """A pronunciation dictionary in CMUdict's format (alternates as ``word(2)``)."""
    lines = []
    for word, variants in sorted(entries.items()):
        for index, phones in enumerate(variants):
            lines.append(f"{word if index == 0 else f'{word}({index + 1})'} {phones}")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Fsg:
    """A finite-state grammar: arcs ``(from, word or None for an empty arc, to)``."""

    start: int
    final: frozenset[int]
    arcs: tuple[tuple[int, str | None, int], ...]


def read_fsg(text: str) -> Fsg:
    """Parse PocketSphinx's FSG text format (``FSG_BEGIN``, ``START_STATE``, ``FINAL_STATE``, ``TRANSITION from to
    prob [word]``)."""
    start, final, arcs = None, None, []
    for line in text.splitlines():
        fields = line.split()
        if not fields:
            continue
        if fields[0] in ("START_STATE", "S"):
            start = int(fields[1])
        elif fields[0] in ("FINAL_STATE", "F"):
            final = int(fields[1])
        elif fields[0] in ("TRANSITION", "T"):
            arcs.append((int(fields[1]), fields[4] if len(fields) > 4 else None, int(fields[2])))
    if start is None or final is None:
        raise ValueError("FSG text: expected START_STATE and FINAL_STATE lines")
    return Fsg(start, frozenset({final}), tuple(arcs))


def automaton_fsg(automaton: Mapping[str, Any]) -> Fsg:
    """``grammar.word_automaton()`` (or the manifest's grammar of that form) as an ``Fsg``."""
    return Fsg(int(automaton["start"]), frozenset(int(s) for s in automaton["final"]),
               tuple((int(a), str(w), int(b)) for a, w, b in automaton["arcs"]))


def _closure(fsg: Fsg, states: Iterable[int], empty: Mapping[int, list[int]]) -> frozenset[int]:
    seen = set(states)
    stack = list(seen)
    while stack:
        for target in empty.get(stack.pop(), []):
            if target not in seen:
                seen.add(target)
                stack.append(target)
    return frozenset(seen)


def language_difference(a: Fsg, b: Fsg) -> list[str] | None:
    """A shortest word sequence accepted by exactly one of the two grammars, or None when they accept the same
    sequences (breadth-first search over pairs of state sets)."""
    tables = []
    for fsg in (a, b):
        empty: dict[int, list[int]] = {}
        moves: dict[int, dict[str, list[int]]] = {}
        for source, word, target in fsg.arcs:
            if word is None:
                empty.setdefault(source, []).append(target)
            else:
                moves.setdefault(source, {}).setdefault(word, []).append(target)
        tables.append((fsg, empty, moves))
    start = tuple(_closure(fsg, [fsg.start], empty) for fsg, empty, _ in tables)
    paths: dict[tuple[frozenset[int], ...], list[str]] = {start: []}
    queue = deque([start])
    while queue:
        pair = queue.popleft()
        accepted = [bool(states & fsg.final) for states, (fsg, _, _) in zip(pair, tables)]
        if accepted[0] != accepted[1]:
            return paths[pair]
        words = sorted({w for states, (_, _, moves) in zip(pair, tables) for s in states for w in moves.get(s, {})})
        for word in words:
            following = tuple(
                _closure(fsg, [t for s in states for t in moves.get(s, {}).get(word, [])], empty)
                for states, (fsg, empty, moves) in zip(pair, tables))
            if following not in paths:
                paths[following] = paths[pair] + [word]
                queue.append(following)
    return None
