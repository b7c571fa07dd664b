"""Clean speech cached on disk per synthesiser request, rendered in a pool with a progress bar.

A request's file is named by a hash of the request (engine, voice, text, rate, pitch), so a generation that was
stopped resumes where it stopped, and two datasets that share requests synthesise them once. Files are int16 ``.npy``
(no pickle); a file that does not load (a write cut short) is rendered again. The cache holds dry speech only:
augmentation is drawn afterwards, per dataset, from the dataset's own seed.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lstm_edge.recipes.speech.synthesis import Request, synthesize
from lstm_edge.runtime.paths import cache_dir

DEFAULT_CACHE = Path(os.environ.get("LSTM_EDGE_SPEECH_CACHE") or cache_dir("speech"))


def request_key(request: Request) -> str:
    """A stable file name for a request."""
    text = f"{request.engine}\0{request.voice}\0{request.text}\0{request.rate:.4f}\0{request.pitch:.4f}"
    return hashlib.sha1(text.encode()).hexdigest()


class SpeechCache:
    """Dry speech per request under ``root/engine/ab/<hash>.npy``."""

    def __init__(self, root: Path | None) -> None:
        self.root = None if root is None else Path(root)

    def path(self, request: Request) -> Path | None:
        if self.root is None:
            return None
        key = request_key(request)
        return self.root / request.engine / key[:2] / f"{key}.npy"

    def load(self, request: Request) -> np.ndarray | None:
        path = self.path(request)
        if path is None or not path.exists():
            return None
        try:
            return np.load(path, allow_pickle=False).astype(np.float32) / 32768.0
        except (ValueError, OSError):
            return None

    def store(self, request: Request, speech: np.ndarray) -> None:
        path = self.path(request)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(temporary, np.round(np.clip(speech, -1.0, 32767 / 32768) * 32768).astype(np.int16))
        os.replace(temporary, path)  # atomic: a stopped run never leaves half a file under the final name


def _render_cached(task: tuple[Path | None, Callable[[Request], np.ndarray], Request]) -> np.ndarray:
    root, render, request = task
    cache = SpeechCache(root)
    cached = cache.load(request)
    if cached is not None:
        return cached
    speech = render(request)
    cache.store(request, speech)
    # what a later run loads back: int16-rounded, so a resumed run gives the same dataset as an uninterrupted one
    return np.round(np.clip(speech, -1.0, 32767 / 32768) * 32768).astype(np.float32) / 32768.0


def render_all(requests: Sequence[Request], pool: Any, cache_root: Path | None, label: str = "speech",
               render: Callable[[Request], np.ndarray] = synthesize) -> list[np.ndarray]:
    """Dry speech of every request, in order: cached ones loaded, the rest rendered in ``pool`` (a
    ``multiprocessing`` pool; ``render`` must be a module-level function) and stored. Shows a progress bar."""
    from tqdm import tqdm

    cache = SpeechCache(cache_root)
    out: list[np.ndarray | None] = [cache.load(r) for r in requests]
    missing = [i for i, speech in enumerate(out) if speech is None]
    tasks = [(cache_root, render, requests[i]) for i in missing]
    with tqdm(total=len(requests), initial=len(requests) - len(missing), desc=label, unit="utt",
              mininterval=30.0) as bar:
        for index, speech in zip(missing, pool.imap(_render_cached, tasks, chunksize=4)):
            out[index] = speech
            bar.update(1)
    return [speech for speech in out if speech is not None]
