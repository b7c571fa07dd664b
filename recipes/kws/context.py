"""Keywords in context: a keyword spoken inside a phrase, synthesised as one utterance, with its end located.

People say "turn the lights on" and "yes please", not a keyword alone. A phrase here is a keyword with words
before and after it (at the start, in the middle or at the end), taken from carrier templates ("please {k} now")
or from a keyword-free running sentence of the split, and spoken in one synthesiser call so the keyword is
co-articulated with its neighbours.

Where the keyword ends inside that utterance is found by speaking the phrase's prefixes with the same voice and
prosody and aligning each to the start of the full utterance (dynamic time warping of log-mel frames, open at the
end): the prefix through the keyword ends where the keyword ends, the prefix before it where the keyword begins. A
prefix spoken alone ends in a phrase-final lengthening (flite adds ~0.2 s), which the alignment absorbs and a plain
length comparison would not. The training targets (the keyword's label from ``lead_frames`` before the end until
``hold_frames`` after it) tolerate the remaining error of a frame or two.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from lstm_edge.recipes.speech.synthesis import Request, SynthError, synthesize_with_fallback
from lstm_edge.runtime.frontend import LogMelConfig, LogMelFrontend

POSITIONS: tuple[str, ...] = ("start", "middle", "end")
# Carrier templates per split ("{k}" is the keyword): validation and test phrases use templates training never saw.
TEMPLATES: dict[str, tuple[str, ...]] = {
    "train": (
        "{k} please", "please {k}", "say {k}", "say {k} now", "I said {k}", "{k} again", "and then {k}",
        "ok {k}", "okay {k} thanks", "{k} now", "now {k}", "just {k}", "{k} for me", "could you {k}",
        "the word is {k}", "{k} I said", "we need {k} here", "tell it {k} quickly", "{k} and then wait",
        "hey {k}", "maybe {k}", "{k} maybe", "it was {k} again", "so {k} then",
    ),
    "validation": (
        "{k} thank you", "kindly {k}", "I mean {k}", "{k} at once", "well {k}", "you can {k} now", "{k} I think",
    ),
    "test": (
        "{k} for now", "then {k}", "he said {k}", "{k} this time", "alright {k}", "let us {k} later", "{k} soon",
    ),
}


@dataclass(frozen=True)
class Phrase:
    """A keyword with words before and after it; ``text`` is what is spoken."""

    keyword: str
    before: str
    after: str

    @property
    def text(self) -> str:
        return " ".join(part for part in (self.before, self.keyword, self.after) if part)

    @property
    def through(self) -> str:
        """The prefix ending with the keyword."""
        return " ".join(part for part in (self.before, self.keyword) if part)


def _words_of(sentence: str) -> list[str]:
    return [w for w in sentence.lower().replace(",", " ").replace(".", " ").split() if w.strip("'")]


def template_phrase(keyword: str, template: str) -> Phrase:
    """A template (one ``{k}``) around ``keyword``."""
    before, _, after = template.partition("{k}")
    return Phrase(keyword, before.strip(), after.strip())


def sentence_phrase(keyword: str, sentence: str, position: str, rng: np.random.Generator,
                    max_words: int = 4) -> Phrase:
    """The keyword inserted into a run of words of ``sentence`` at ``position`` (1-``max_words`` words on each side
    that has any)."""
    words = _words_of(sentence) or ["well"]
    n_before = 0 if position == "start" else int(rng.integers(1, max_words + 1))
    n_after = 0 if position == "end" else int(rng.integers(1, max_words + 1))
    first = int(rng.integers(0, max(1, len(words) - n_before - n_after) + 1))
    run = words[first:first + n_before + n_after]
    cut = min(n_before, len(run))
    return Phrase(keyword, " ".join(run[:cut]), " ".join(run[cut:]))


def sample_phrase(keyword: str, split: str, sentences: Sequence[str], rng: np.random.Generator,
                  excluded: set[str], template_share: float = 0.4) -> Phrase:
    """A random phrase around ``keyword``: a split template (``template_share``) or a sentence run, keyword at a
    random position. Templates whose other words include an ``excluded`` word (another keyword) are not used."""
    templates = [t for t in TEMPLATES[split] if not (set(_words_of(t.replace("{k}", ""))) & excluded)]
    if templates and (not sentences or rng.random() < template_share):
        return template_phrase(keyword, str(rng.choice(templates)))
    return sentence_phrase(keyword, str(rng.choice(sentences)), str(rng.choice(POSITIONS)), rng)


HOP = 160  # alignment frame step, 10 ms


@functools.cache
def _frontend() -> LogMelFrontend:
    return LogMelFrontend(LogMelConfig())


def _log_mel(speech: np.ndarray) -> np.ndarray:
    pcm = np.round(np.clip(speech, -1.0, 32767 / 32768) * 32768).astype(np.int16)
    return _frontend().compute(pcm)


def aligned_end(prefix: np.ndarray, full: np.ndarray) -> int:
    """The sample of ``full`` where a spoken ``prefix`` of it ends: dynamic time warping of the prefix's log-mel
    frames against the start of ``full`` (symmetric steps: a diagonal step costs twice the frame distance, a step
    along one sequence once), open at the end of ``full``; the end frame minimises the path cost over the frames
    both sequences spent on it."""
    a, b = _log_mel(prefix), _log_mel(full)
    if a.shape[0] == 0 or b.shape[0] == 0:
        return min(prefix.size, full.size)
    cost = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=2))
    n, m = cost.shape
    total = np.full((n, m), np.inf)
    total[0] = np.cumsum(cost[0])
    for i in range(1, n):
        row = total[i]
        row[0] = total[i - 1, 0] + cost[i, 0]
        row[1:] = np.minimum(total[i - 1, :-1] + 2 * cost[i, 1:], total[i - 1, 1:] + cost[i, 1:])
        for j in range(1, m):  # a step along ``full`` alone
            candidate = row[j - 1] + cost[i, j]
            if candidate < row[j]:
                row[j] = candidate
    end_frame = int(np.argmin(total[-1] / (n + np.arange(1, m + 1))))
    return min(full.size, end_frame * HOP + 400)  # frame k covers samples k * 160 .. k * 160 + 400


def locate(full: np.ndarray, before: np.ndarray | None, through: np.ndarray) -> tuple[int, int]:
    """(start, end) sample of the keyword in ``full`` from its spoken prefixes (``through`` is ``full`` itself when
    the keyword ends the phrase)."""
    end = full.size if through is full else aligned_end(through, full)
    start = 0 if before is None else min(aligned_end(before, full), end - 1)
    if end - start < 800:  # under 50 ms: the prefixes did not line up with the utterance
        raise SynthError(f"keyword located at samples {start}..{end} of {full.size}: expected at least 800 samples")
    return start, end


def render_phrase(request: Request, phrase: Phrase) -> tuple[np.ndarray, int, int]:
    """Speak ``phrase`` with ``request``'s voice and prosody (its text is ignored): (float32 speech, keyword start,
    keyword end), silence trimmed."""
    full = synthesize_with_fallback(replace(request, text=phrase.text))
    through = full if not phrase.after else synthesize_with_fallback(replace(request, text=phrase.through))
    before = synthesize_with_fallback(replace(request, text=phrase.before)) if phrase.before else None
    start, end = locate(full, before, through)
    return full, start, end
