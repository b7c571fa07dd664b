"""The record every writer takes: what goes in and out of the exported graph, by name."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class GraphIO:
    """Names and example values of the graph ``(x, *state_in) -> (y, *state_out)``.

    ``chunk_lengths`` are the TFLite signature lengths of a sequence model (largest first); None for a step model,
    whose graph has the example's fixed shape (one ``step`` signature, no dynamic time axis in ONNX).
    """

    example_x: torch.Tensor
    example_states: tuple[torch.Tensor, ...]
    input_name: str
    output_name: str
    state_inputs: tuple[str, ...]
    state_outputs: tuple[str, ...]
    chunk_lengths: tuple[int, ...] | None

    @property
    def is_step(self) -> bool:
        return self.chunk_lengths is None

    @property
    def input_names(self) -> list[str]:
        return [self.input_name, *self.state_inputs]

    @property
    def output_names(self) -> list[str]:
        return [self.output_name, *self.state_outputs]
