"""The speech-recognition demo recording: a few held-out test utterances in a row, with what was said.

Picks, from the test split of a set written by ``synth.py`` (voices never used in training), one digit string, one
number and two commands, alternating the held-out SLT speaker and MBROLA voices, joins them with 0.8 s of quiet
noise and writes ``OUT/demo.wav`` (16 kHz mono s16le) and ``OUT/demo.json`` (``{"utterances": [{"text", "voice",
"start_s", "end_s"}]}``, times of the speech within the recording).

Run: ``python -m lstm_edge.recipes.asr.demo_audio --data DIR --out models/asr``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lstm_edge.recipes.asr.synth import SAMPLE_RATE, load_split, utterances
from lstm_edge.runtime.audio import write_wav

GAP_SECONDS = 0.8
KINDS: tuple[str, ...] = ("digits", "command", "number", "command")


def pick(arrays: dict[str, np.ndarray], seed: int = 0) -> list[int]:
    """Indices of test utterances: one per entry of ``KINDS``, alternating the SLT speaker and MBROLA voices."""
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for position, kind in enumerate(KINDS):
        mbrola = position % 2 == 1
        candidates = [i for i in range(len(arrays["kinds"])) if str(arrays["kinds"][i]) == kind
                      and str(arrays["voices"][i]).startswith("mbrola:") == mbrola and i not in chosen]
        if candidates:
            chosen.append(int(rng.choice(candidates)))
    return chosen


def build(arrays: dict[str, np.ndarray], indices: Sequence[int], seed: int = 0) -> tuple[np.ndarray, list[dict]]:
    """The joined int16 recording and its utterance list."""
    rng = np.random.default_rng(seed)
    audio = utterances(arrays)
    pieces: list[np.ndarray] = []
    events: list[dict[str, Any]] = []
    position = 0
    for i in indices:
        gap = (rng.normal(size=int(GAP_SECONDS * SAMPLE_RATE)) * 3.0).astype(np.int16)
        pieces += [gap, audio[i]]
        position += gap.size
        events.append({"text": str(arrays["texts"][i]), "voice": str(arrays["voices"][i]),
                       "start_s": round((position + int(arrays["speech_start"][i])) / SAMPLE_RATE, 3),
                       "end_s": round((position + int(arrays["speech_end"][i])) / SAMPLE_RATE, 3)})
        position += audio[i].size
    pieces.append((rng.normal(size=int(GAP_SECONDS * SAMPLE_RATE)) * 3.0).astype(np.int16))
    return np.concatenate(pieces), events


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    arrays = load_split(args.data, "test")
    recording, events = build(arrays, pick(arrays))
    args.out.mkdir(parents=True, exist_ok=True)
    write_wav(args.out / "demo.wav", recording, SAMPLE_RATE)
    (args.out / "demo.json").write_text(json.dumps({"utterances": events}, indent=1))
    print(json.dumps(events))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
