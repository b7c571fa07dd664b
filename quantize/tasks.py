"""Task metrics for ``verify --eval``: how one clip's outputs become one predicted class, per task.

Generic parity takes any ``ClipPredictor``; this registry picks the one a model directory's manifest asks for.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from lstm_edge.runtime.manifest import Manifest

ClipPredictor = Callable[[np.ndarray], int]


def mean_argmax(logits: np.ndarray) -> int:
    """The class whose output, averaged over the clip's frames, is largest."""
    return int(np.argmax(logits.reshape(len(logits), -1).mean(axis=0)))


def _keyword_spotting(manifest: Manifest) -> ClipPredictor:
    from lstm_edge.runtime.kws import clip_prediction

    rule = dict(_clip_rule(manifest) or {})
    return lambda logits: clip_prediction(logits, rule)


def _clip_rule(manifest: Manifest) -> Mapping[str, Any] | None:
    """The keyword spotter's clip rule: the manifest's ``detector.clip_rule`` (v2), or ``extra.clip_rule`` (v1)."""
    rule = (manifest.detector or {}).get("clip_rule") or manifest.extra.get("clip_rule")
    return rule if isinstance(rule, Mapping) else None


# task name -> (does this manifest declare it?, predictor factory)
TASKS: dict[str, tuple[Callable[[Manifest], bool], Callable[[Manifest], ClipPredictor]]] = {
    "keyword-spotting": (lambda m: bool(_clip_rule(m)), _keyword_spotting),
}


def clip_predictor_for(manifest: Manifest) -> ClipPredictor:
    """The clip metric of the manifest's task; the mean-argmax rule when it declares none."""
    for declares, factory in TASKS.values():
        if declares(manifest):
            return factory(manifest)
    return mean_argmax
