"""A weight-bearing layer of a model file, as mixed precision sees it: something the quantizer can leave float."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class WeightLayer:
    """One layer of one model file.

    ``name`` is readable (the torch module path the ONNX exporter put in the node name, e.g. ``stft/Conv``);
    ``handles`` are what the format's quantizer is told to skip (ONNX: the node name; TFLite: the op scopes of every
    op reading the weight buffer); ``weights`` are its float weight arrays, used only to name TFLite layers after
    the ONNX graph's.
    """

    name: str
    kind: str
    params: int
    handles: tuple[str, ...]
    weights: tuple[Any, ...] = field(default=(), compare=False, repr=False)

    def record(self) -> dict[str, Any]:
        """What the manifest records about a layer kept float."""
        return {"name": self.name, "kind": self.kind, "params": self.params}
