"""An adaptive character model mixed with a language model's predictions, learned from the text being read.

A fixed model trained on one kind of text does not know a new text's vocabulary; a context model that counts what
it has read so far learns it as it goes (the idea of PPM compressors and of a keyboard's personal dictionary). This
module keeps such counts for contexts of 1..``max_order`` previous tokens (order 0: no context) and mixes their
prediction with the model's, one token at a time:

1. **Counts**: for order ``k >= 1`` a table of ``2 ** table_bits`` slots, each a uint16 count and a uint8 check.
   The context ``c = (x[t-k], ..., x[t-1])`` has the hash ``h_1 = (x[t-1] + 1) * 2654435761`` and ``h_k = (h_{k-1}
   xor (x[t-k] + 1)) * 2654435761 + k`` (all mod ``2**32``); token ``s`` in it has the key ``g = (h_k xor ((s + 1) *
   2654435769)) * 2246822507 mod 2**32``, its slot is ``g >> (32 - table_bits)`` and its check ``((g * 3266489909)
   mod 2**32) >> 24``. A slot whose check differs counts 0 (another context's); counting into it replaces it (check
   set, count 1). Order 0 is one row of ``V`` uint32 counts.
2. **Prediction** (Witten-Bell blending, lowest order first): ``P_-1 = 1/V``; for ``k = 0, 1, ...`` while the
   context's counts ``n`` have a total ``N > 0``: ``P_k = (n + d * P_{k-1}) / (N + d)``, with ``d`` the number of
   tokens whose count is non-zero. The last ``P_k`` is the adaptive prediction ``q``.
3. **Mixing** (logistic, as context-mixing compressors do): ``p = softmax(w_0 log m + w_1 log q)`` with ``m`` the
   model's probabilities (``log`` floored at ``log 1e-12``). After token ``x`` is read: ``w += learning_rate *
   (z[:, x] - z @ p)`` with ``z = [log m, log q]`` (the gradient of ``log p[x]``), starting from ``w = [1, 0]``.
4. **Update**: after the mixing step, every order's counter of ``x`` in its context is incremented; a counter that
   would pass 65535 halves the counters of that context first (rounding down).

All arithmetic in float64. The memory is ``max_order * 2 ** table_bits * 3`` bytes plus ``V`` counters (7.5 MiB at
the defaults). ``reset`` forgets everything; ``get_state`` / ``set_state`` suspend and resume (docs/manifest.md,
"Text models").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lstm_edge.runtime.errors import InputError, ManifestError, expected_got

MULTIPLIER = 2654435761
MASK32 = 0xFFFFFFFF
LOG_FLOOR = float(np.log(1e-12))
COUNT_LIMIT = 65535


@dataclass(frozen=True)
class AdaptiveSettings:
    max_order: int = 5
    table_bits: int = 19
    learning_rate: float = 0.02

    @classmethod
    def from_manifest(cls, data: Mapping[str, Any]) -> AdaptiveSettings:
        """``extra.text.adaptive`` of a manifest: ``{"type": "context_mixing", "max_order": 5, "table_bits": 19,
        "learning_rate": 0.02}``."""
        if not isinstance(data, Mapping) or data.get("type") != "context_mixing":
            raise ManifestError(expected_got("manifest extra.text.adaptive", '{"type": "context_mixing", ...}', data))
        unknown = set(data) - {"type", "max_order", "table_bits", "learning_rate"}
        if unknown:
            raise ManifestError(expected_got("manifest extra.text.adaptive keys",
                                             "type, max_order, table_bits, learning_rate", sorted(unknown)))
        settings = cls(int(data.get("max_order", cls.max_order)), int(data.get("table_bits", cls.table_bits)),
                       float(data.get("learning_rate", cls.learning_rate)))
        if not 0 <= settings.max_order <= 16 or not 8 <= settings.table_bits <= 26 or \
                not 0 <= settings.learning_rate < 1:
            raise ManifestError(expected_got("manifest extra.text.adaptive", "max_order 0-16, table_bits 8-26, "
                                             "learning_rate in [0, 1)", dict(data)))
        return settings

    def to_manifest(self) -> dict[str, Any]:
        return {"type": "context_mixing", "max_order": self.max_order, "table_bits": self.table_bits,
                "learning_rate": self.learning_rate}

    @property
    def memory_bytes(self) -> int:
        return self.max_order * (1 << self.table_bits) * 3


class AdaptiveMixer:
    """The adaptive counts and mixing weights of one text stream over a vocabulary of ``vocab_size`` tokens."""

    def __init__(self, vocab_size: int, settings: AdaptiveSettings = AdaptiveSettings()) -> None:
        self.vocab_size, self.settings = int(vocab_size), settings
        self._shift = 32 - settings.table_bits
        # per token s: (s + 1) * 2654435769 mod 2**32, xored into the context hash
        self._token_keys = (((np.arange(self.vocab_size, dtype=np.uint64) + 1) * 2654435769) & MASK32).astype(np.uint32)
        self.reset()

    def reset(self) -> None:
        size = 1 << self.settings.table_bits
        self.tables = np.zeros((self.settings.max_order, size), np.uint16)
        self.checks = np.zeros((self.settings.max_order, size), np.uint8)
        self.order0 = np.zeros(self.vocab_size, np.uint32)
        self.weights = np.array([1.0, 0.0])
        self.history: list[int] = []  # the last max_order tokens, oldest first

    # ------------------------------------------------------------------ prediction
    def _hashes(self, history: Sequence[int]) -> list[int]:
        """Hashes of the contexts of order 1.. available in ``history`` (most recent token last)."""
        hashes, value = [], 0
        for k in range(1, min(self.settings.max_order, len(history)) + 1):
            token = int(history[-k]) + 1
            value = (token * MULTIPLIER) & MASK32 if k == 1 else (((value ^ token) * MULTIPLIER) + k) & MASK32
            hashes.append(value)
        return hashes

    def _contexts(self, history: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For each order 1.. that ``history`` has: every token's count, slot and check in that order's context,
        as ``[orders, V]`` arrays (one numpy pass for all orders)."""
        hashes = self._hashes(history)
        if not hashes:
            empty = np.zeros((0, self.vocab_size), np.int64)
            return empty, empty, empty.astype(np.uint8)
        # uint32 products wrap around: the arithmetic mod 2**32 of the spec
        keys = (np.array(hashes, np.uint32)[:, None] ^ self._token_keys) * np.uint32(2246822507)
        checks = ((keys * np.uint32(3266489909)) >> np.uint32(24)).astype(np.uint8)
        slots = keys >> np.uint32(self._shift)
        rows = np.arange(len(hashes))[:, None]
        counts = np.where(self.checks[rows, slots] == checks, self.tables[rows, slots], 0)
        return counts, slots, checks

    def adaptive(self, history: Sequence[int] | None = None) -> np.ndarray:
        """The count model's prediction ``q`` [V] after ``history`` (default: the tokens read)."""
        return self._predict(self.history if history is None else history)[0]

    def _predict(self, history: Sequence[int]) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """``q``, and the contexts' counts, slots and checks in ``history`` (for counting after)."""
        contexts = self._contexts(history)
        counts = contexts[0]
        totals = counts.sum(axis=1).tolist()
        distinct = np.count_nonzero(counts, axis=1).tolist()
        p = np.full(self.vocab_size, 1.0 / self.vocab_size)
        total0 = int(self.order0.sum())
        if total0 == 0:
            return p, contexts
        d0 = int(np.count_nonzero(self.order0))
        p = (self.order0 + d0 * p) / (total0 + d0)
        for k, total in enumerate(totals):
            if total == 0:
                break
            p = (counts[k] + distinct[k] * p) / (total + distinct[k])
        return p, contexts

    def mix(self, model_log_probs: np.ndarray, history: Sequence[int] | None = None) -> np.ndarray:
        """Mixed log-probabilities [V] from the model's log-probabilities [V] (natural log)."""
        return self._mixed(self._inputs(model_log_probs, history))

    def _inputs(self, model_log_probs: np.ndarray, history: Sequence[int] | None) -> np.ndarray:
        return self._stack(model_log_probs, self.adaptive(history))

    @staticmethod
    def _stack(model_log_probs: np.ndarray, q: np.ndarray) -> np.ndarray:
        return np.stack([np.maximum(model_log_probs, LOG_FLOOR), np.maximum(np.log(q), LOG_FLOOR)])

    def _mixed(self, z: np.ndarray) -> np.ndarray:
        s = self.weights @ z
        s = s - s.max()
        return s - np.log(np.exp(s).sum())

    # ------------------------------------------------------------------ learning
    def read(self, model_log_probs: np.ndarray, token: int) -> float:
        """Read ``token`` given the model's log-probabilities for it [V]: returns the mixed log-probability the
        token had, then learns from it (weights, counts)."""
        q, contexts = self._predict(self.history)
        z = self._stack(model_log_probs, q)
        log_p = self._mixed(z)
        self.weights += self.settings.learning_rate * (z[:, token] - z @ np.exp(log_p))
        self._count(token, contexts)
        return float(log_p[token])

    def _count(self, token: int, contexts: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        if self.order0[token] >= COUNT_LIMIT:
            self.order0 //= 2
        self.order0[token] += 1
        counts, slots, checks = contexts
        for k in range(len(slots)):
            slot, check = int(slots[k, token]), checks[k, token]
            if self.checks[k, slot] != check:  # empty, or another context's: take it over
                self.checks[k, slot], self.tables[k, slot] = check, 0
            elif counts[k, token] >= COUNT_LIMIT:
                mine = slots[k][self.checks[k, slots[k]] == checks[k]]
                self.tables[k, mine] //= 2
            self.tables[k, slot] += 1
        self.history.append(int(token))
        if len(self.history) > self.settings.max_order:
            del self.history[0]

    # ------------------------------------------------------------------ suspend / resume
    def get_state(self) -> dict[str, np.ndarray]:
        return {"tables": self.tables.copy(), "checks": self.checks.copy(), "order0": self.order0.copy(),
                "weights": self.weights.copy(), "history": np.asarray(self.history, np.int64)}

    def set_state(self, state: Mapping[str, np.ndarray]) -> None:
        expected = {"tables": (self.tables.shape, np.uint16), "checks": (self.checks.shape, np.uint8),
                    "order0": ((self.vocab_size,), np.uint32),
                    "weights": ((2,), np.float64)}
        for name, (shape, dtype) in expected.items():
            value = np.asarray(state.get(name))
            if value.shape != shape or value.dtype != dtype:
                raise InputError(expected_got(f"adaptive state {name!r}", f"{np.dtype(dtype)}{list(shape)}",
                                              f"{value.dtype}{list(value.shape)}"))
        history = np.asarray(state.get("history"))
        if history.ndim != 1 or len(history) > self.settings.max_order or \
                (len(history) and (history.min() < 0 or history.max() >= self.vocab_size)):
            raise InputError(expected_got("adaptive state 'history'",
                                          f"at most {self.settings.max_order} token ids", history))
        if not np.isfinite(state["weights"]).all():
            raise InputError(expected_got("adaptive state 'weights'", "finite numbers", state["weights"]))
        self.tables, self.checks = np.array(state["tables"]), np.array(state["checks"])
        self.order0 = np.array(state["order0"])
        self.weights, self.history = np.array(state["weights"]), [int(t) for t in history]
