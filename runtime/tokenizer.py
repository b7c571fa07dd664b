"""Text tokenizers stated in the manifest (``manifest.tokenizer``), so an app tokenizes without Python.

Two types:

- ``{"type": "bytes"}``: token id = UTF-8 byte (vocabulary 256); every string encodes, nothing is unknown.
- ``{"type": "chars", "vocab": [...], "unknown_id": N}``: token id = index of the character in ``vocab``; a
  character outside it maps to ``unknown_id`` (never an error). ``vocab[unknown_id]`` is what decoding shows for it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lstm_edge.runtime.errors import ManifestError, expected_got

TOKENIZER_TYPES = ("bytes", "chars")


@dataclass(frozen=True)
class Tokenizer:
    """Maps text to int64 token ids and back; built from the manifest's ``tokenizer`` entry."""

    type: str
    vocab: tuple[str, ...] = ()
    unknown_id: int | None = None
    _index: Mapping[str, int] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Tokenizer:
        if not isinstance(data, Mapping):
            raise ManifestError(expected_got("manifest tokenizer", "a JSON object", type(data).__name__))
        kind = data.get("type")
        if kind == "bytes":
            return cls("bytes")
        if kind != "chars":
            raise ManifestError(expected_got("manifest tokenizer.type", f"one of {TOKENIZER_TYPES}", repr(kind)))
        vocab = data.get("vocab")
        if not isinstance(vocab, list) or not vocab or not all(isinstance(c, str) and len(c) == 1 for c in vocab):
            raise ManifestError(expected_got("manifest tokenizer.vocab", "a non-empty list of single characters",
                                             repr(vocab)[:80]))
        if len(set(vocab)) != len(vocab):
            raise ManifestError("manifest tokenizer.vocab: expected distinct characters, got duplicates")
        unknown_id = data.get("unknown_id")
        if not isinstance(unknown_id, int) or not 0 <= unknown_id < len(vocab):
            raise ManifestError(expected_got("manifest tokenizer.unknown_id", f"an int in [0, {len(vocab)})",
                                             repr(unknown_id)))
        return cls("chars", tuple(vocab), unknown_id, {c: i for i, c in enumerate(vocab)})

    @classmethod
    def chars(cls, vocab: Sequence[str], unknown_id: int) -> Tokenizer:
        return cls.from_dict({"type": "chars", "vocab": list(vocab), "unknown_id": unknown_id})

    def to_dict(self) -> dict[str, Any]:
        if self.type == "bytes":
            return {"type": "bytes"}
        return {"type": "chars", "vocab": list(self.vocab), "unknown_id": self.unknown_id}

    @property
    def vocab_size(self) -> int:
        return 256 if self.type == "bytes" else len(self.vocab)

    def encode(self, text: str) -> np.ndarray:
        """Token ids ``[len]`` (int64). Chars: one id per character, unknown ones -> ``unknown_id``."""
        if self.type == "bytes":
            return np.frombuffer(text.encode("utf-8", errors="surrogatepass"), dtype=np.uint8).astype(np.int64)
        get, unknown = self._index.get, self.unknown_id
        return np.fromiter((get(c, unknown) for c in text), dtype=np.int64, count=len(text))

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """Text of ``ids`` (bytes: invalid UTF-8 sequences become U+FFFD)."""
        if self.type == "bytes":
            return bytes(int(i) for i in ids).decode("utf-8", errors="replace")
        return "".join(self.vocab[int(i)] for i in ids)

    def token_text(self, token_id: int) -> str:
        """What one token shows as (bytes: the byte as latin-1 for ASCII, else U+FFFD)."""
        if self.type == "bytes":
            return chr(token_id) if token_id < 128 else "\ufffd"
        return self.vocab[token_id]
