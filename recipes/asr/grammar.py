"""The recognizer's domain: digit strings, numbers 0-99 and device commands, as a small generative grammar.

``sample_sentence(rng)`` draws one sentence (lowercase words); ``LEXICON`` is every word the grammar can produce;
``TOKENS`` are the CTC output symbols (blank first, then space and the letters the lexicon uses).
"""

from __future__ import annotations

import numpy as np

DIGITS: tuple[str, ...] = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
TEENS: tuple[str, ...] = ("ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
                          "eighteen", "nineteen")
TENS: tuple[str, ...] = ("twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
ROOMS: tuple[str, ...] = ("kitchen", "bedroom", "bathroom", "office", "hallway", "garage")
UNITS: tuple[str, ...] = ("seconds", "minutes", "hours")
BLANK = "<blank>"

# Templates: words, or "{slot}" names filled by _fill.
TEMPLATES: tuple[tuple[str, ...], ...] = (
    ("set", "a", "timer", "for", "{number}", "{unit}"),
    ("start", "a", "timer", "for", "{number}", "{unit}"),
    ("cancel", "the", "timer"),
    ("stop", "the", "alarm"),
    ("turn", "on", "the", "lights"),
    ("turn", "off", "the", "lights"),
    ("turn", "on", "the", "{room}", "lights"),
    ("turn", "off", "the", "{room}", "lights"),
    ("set", "the", "brightness", "to", "{number}", "percent"),
    ("dim", "the", "lights"),
    ("set", "the", "volume", "to", "{number}"),
    ("volume", "up"),
    ("volume", "down"),
    ("mute",),
    ("unmute",),
    ("play", "music"),
    ("pause", "the", "music"),
    ("resume",),
    ("next", "song"),
    ("previous", "song"),
    ("call", "{digits}"),
    ("dial", "{digits}"),
    ("set", "the", "temperature", "to", "{number}", "degrees"),
    ("what", "time", "is", "it"),
)
LEXICON: tuple[str, ...] = tuple(sorted(
    set(DIGITS) | set(TEENS) | set(TENS) | set(ROOMS) | set(UNITS) | {"hundred"}
    | {word for template in TEMPLATES for word in template if not word.startswith("{")}
))
TOKENS: tuple[str, ...] = (BLANK, " ") + tuple(sorted({ch for word in LEXICON for ch in word}))


def number_words(value: int) -> list[str]:
    """English words of 0 <= value <= 100."""
    if value < 10:
        return [DIGITS[value]]
    if value < 20:
        return [TEENS[value - 10]]
    if value == 100:
        return ["one", "hundred"]
    tens, ones = divmod(value, 10)
    return [TENS[tens - 2]] + ([DIGITS[ones]] if ones else [])


def digit_string(rng: np.random.Generator, low: int = 3, high: int = 8) -> list[str]:
    """A connected digit string of ``low``..``high`` digits."""
    return [DIGITS[int(d)] for d in rng.integers(0, 10, size=int(rng.integers(low, high + 1)))]


def _fill(slot: str, rng: np.random.Generator) -> list[str]:
    if slot == "{number}":
        return number_words(int(rng.integers(1, 101)))
    if slot == "{unit}":
        return [str(rng.choice(UNITS))]
    if slot == "{room}":
        return [str(rng.choice(ROOMS))]
    if slot == "{digits}":
        return digit_string(rng)
    return [slot]


def sample_sentence(rng: np.random.Generator, kind: str | None = None) -> tuple[str, str]:
    """(kind, sentence): kind is "digits" (a digit string), "number" (0-100) or "command"."""
    if kind is None:
        kind = str(rng.choice(["digits", "number", "command"], p=[0.35, 0.15, 0.5]))
    if kind == "digits":
        words = digit_string(rng)
    elif kind == "number":
        words = number_words(int(rng.integers(0, 101)))
    else:
        template = TEMPLATES[int(rng.integers(len(TEMPLATES)))]
        words = [w for part in template for w in _fill(part, rng)]
    return kind, " ".join(words)


def encode(text: str) -> list[int]:
    """Token ids of a sentence (characters; no blank)."""
    return [TOKENS.index(ch) for ch in text]


def _slot_fills(slot: str) -> list[list[str]]:
    """A finite set of fills of a slot that covers every word pair the slot can produce."""
    if slot == "{number}":
        return [number_words(v) for v in range(1, 101)]
    if slot == "{unit}":
        return [[u] for u in UNITS]
    if slot == "{room}":
        return [[r] for r in ROOMS]
    if slot == "{digits}":
        return [[a, b] for a in DIGITS for b in DIGITS]
    return [[slot]]


def word_graph() -> dict[str, object]:
    """The grammar as word successors: ``{"start": [...], "next": {word: [...]}, "final": [...]}`` (every word
    sequence the grammar produces is accepted; a few more are, as the graph only remembers the previous word)."""
    sequences: list[list[str]] = [[d, e] for d in DIGITS for e in DIGITS] + [number_words(v) for v in range(101)]
    for template in TEMPLATES:
        partial: list[list[str]] = [[]]
        for part in template:
            partial = [p + fill for p in partial for fill in _slot_fills(part)]
        sequences.extend(partial)
    start: set[str] = set()
    final: set[str] = set()
    following: dict[str, set[str]] = {}
    for words in sequences:
        start.add(words[0])
        final.add(words[-1])
        for a, b in zip(words, words[1:]):
            following.setdefault(a, set()).add(b)
    return {"start": sorted(start), "next": {w: sorted(n) for w, n in sorted(following.items())},
            "final": sorted(final)}



def _nfa_arcs() -> tuple[list[tuple[int, str, int]], set[int]]:
    """Every sentence ``sample_sentence`` can draw as a word automaton without empty arcs: (arcs, final states);
    state 0 is the start. Several arcs may leave a state with the same word (determinised by ``word_automaton``)."""
    arcs: list[tuple[int, str, int]] = []
    count = [1]

    def new() -> int:
        count[0] += 1
        return count[0] - 1

    def path(source: int, words: list[str], target: int) -> None:
        for word in words[:-1]:
            state = new()
            arcs.append((source, word, state))
            source = state
        arcs.append((source, words[-1], target))

    def digit_string(source: int, target: int, low: int = 3, high: int = 8) -> None:
        # the n-th digit leads on to the next digit and, when low <= n, may also end the string
        for n in range(1, high + 1):
            following = new() if n < high else None
            for digit in DIGITS:
                if following is not None:
                    arcs.append((source, digit, following))
                if n >= low:
                    arcs.append((source, digit, target))
            if following is None:
                break
            source = following

    def part(source: int, name: str, target: int) -> None:
        if name == "{digits}":
            digit_string(source, target)
        elif name == "{number}":
            for value in range(1, 101):
                path(source, number_words(value), target)
        else:
            for fill in _slot_fills(name):
                path(source, fill, target)

    final = new()
    digit_string(0, final)
    for value in range(101):
        path(0, number_words(value), final)
    for template in TEMPLATES:
        source = 0
        for index, name in enumerate(template):
            target = final if index == len(template) - 1 else new()
            part(source, name, target)
            source = target
    return arcs, {final}


def word_automaton() -> dict[str, object]:
    """The grammar as a minimal deterministic word automaton, the manifest's ``grammar`` form
    ``{"states": N, "start": 0, "final": [states], "arcs": [[from, word, to], ...]}``: it accepts exactly the
    sentences ``sample_sentence`` can draw."""
    arcs, nfa_final = _nfa_arcs()
    moves: dict[int, dict[str, set[int]]] = {}
    for source, word, target in arcs:
        moves.setdefault(source, {}).setdefault(word, set()).add(target)
    # subset construction
    start = frozenset({0})
    subsets: dict[frozenset[int], int] = {start: 0}
    queue = [start]
    dfa: dict[int, dict[str, int]] = {}
    while queue:
        subset = queue.pop()
        out: dict[str, set[int]] = {}
        for state in subset:
            for word, targets in moves.get(state, {}).items():
                out.setdefault(word, set()).update(targets)
        row = dfa.setdefault(subsets[subset], {})
        for word, targets in out.items():
            key = frozenset(targets)
            if key not in subsets:
                subsets[key] = len(subsets)
                queue.append(key)
            row[word] = subsets[key]
    final = {number for subset, number in subsets.items() if subset & nfa_final}
    # Moore minimisation: split classes by finality, then by (word -> class of target) until stable
    classes = {state: int(state in final) for state in range(len(subsets))}
    while True:
        signatures = {state: (classes[state], tuple(sorted((w, classes[t]) for w, t in dfa.get(state, {}).items())))
                      for state in classes}
        numbering: dict[object, int] = {}
        # number classes in order of first appearance from the start, so the start stays state 0
        refined = {state: numbering.setdefault(signatures[state], len(numbering)) for state in sorted(classes)}
        stable = len(numbering) == len(set(classes.values()))
        classes = refined
        if stable:
            break
    minimal_arcs = sorted({(classes[s], w, classes[t]) for s, row in dfa.items() for w, t in row.items()})
    return {"states": len(set(classes.values())), "start": classes[0],
            "final": sorted({classes[s] for s in final}), "arcs": [list(arc) for arc in minimal_arcs]}
