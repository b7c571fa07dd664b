"""Behavioural checks run at export: a sequence model must give the same outputs chunk by chunk as on the whole
sequence. When it does not, the layer responsible is found with forward hooks and named."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lstm_edge.export.wrap import SequenceStreamer, random_like
from lstm_edge.runtime.errors import ExportError
from lstm_edge.runtime.manifest import DEFAULT_TOLERANCES, float_limit

PROBE_FRAMES = 37  # an unusual length, so the time axis of each layer's output can be told from the others
PROBE_CHUNKS = (1, 6, 13, 17)


def probe_input(example: torch.Tensor, frames: int, seed: int = 0) -> torch.Tensor:
    """A random input like ``example`` with ``frames`` time steps (token ids stay in the example's range)."""
    return random_like(example, frames, seed)


def _first_tensor(output: Any) -> torch.Tensor | None:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    return None


Recorded = dict[str, list[tuple[torch.Tensor | None, torch.Tensor]]]


def _record(streamer: SequenceStreamer, run) -> tuple[list[tuple[str, nn.Module]], Recorded]:
    """Run ``run()`` with a hook on every submodule; return call order and each module's (input, output) per call."""
    order: list[tuple[str, nn.Module]] = []
    outputs: Recorded = {}
    handles = []
    for path, module in streamer.model.named_modules():
        if not path or path.endswith(".inner") or ".unprojected" in path or ".inner." in path:
            continue

        def hook(module, args, output, path=path):
            tensor = _first_tensor(output)
            if tensor is not None:
                if path not in outputs:
                    order.append((path, module))
                first = _first_tensor(args)
                outputs.setdefault(path, []).append((None if first is None else first.detach(), tensor.detach()))
        handles.append(module.register_forward_hook(hook))
    try:
        run()
    finally:
        for handle in handles:
            handle.remove()
    return order, outputs


def _run_chunks(streamer: SequenceStreamer, x: torch.Tensor, chunks: tuple[int, ...]):
    state = tuple(slot.initial for slot in streamer.slots)
    pieces = []
    start = 0
    for length in chunks:
        y, *state = streamer(x[:, start:start + length], *state)
        pieces.append(y)
        start += length
    return torch.cat(pieces, dim=1), state


def check_time_locality(streamer: SequenceStreamer, example: torch.Tensor,
                        tolerance: float = DEFAULT_TOLERANCES["float_max_abs_diff"]) -> float:
    """Refuse a model whose chunked outputs differ from its whole-sequence outputs. Returns the max diff seen."""
    x = probe_input(example, PROBE_FRAMES)
    with torch.no_grad():
        whole, *whole_state = streamer(x, *(slot.initial for slot in streamer.slots))
        if whole.ndim < 2 or whole.shape[0] != 1 or whole.shape[1] != PROBE_FRAMES:
            raise ExportError(f"a sequence model must return [1, T, ...] for input [1, T, ...]: for T={PROBE_FRAMES} "
                              f"expected output shape (1, {PROBE_FRAMES}, ...), got {tuple(whole.shape)}")
        chunked, chunked_state = _run_chunks(streamer, x, PROBE_CHUNKS)
    diff = float((whole - chunked).abs().max())
    state_diff = max((float((a - b).abs().max()) for a, b in zip(whole_state, chunked_state)), default=0.0)
    limit = float_limit({"float_max_abs_diff": tolerance}, float(whole.abs().max()))
    if diff <= limit and state_diff <= limit:
        return max(diff, state_diff)
    culprit = _locate(streamer, x, tolerance)
    raise ExportError(
        f"the model cannot stream: run in chunks {PROBE_CHUNKS} with state carried, its output differs from one "
        f"pass over the whole {PROBE_FRAMES}-frame sequence by {diff:.3g} (expected <= {limit:.3g}). "
        f"{culprit} A streaming model carries information across time only through its nn.LSTM/nn.GRU state "
        "and the context of causal nn.Conv1d/nn.Conv2d layers; any other layer with its own context must be "
        "written as a step model with that context as explicit state.")


def _locate(streamer: SequenceStreamer, x: torch.Tensor, tolerance: float) -> str:
    with torch.no_grad():
        order, whole = _record(streamer, lambda: streamer(x, *(slot.initial for slot in streamer.slots)))
        _, pieces = _record(streamer, lambda: _run_chunks(streamer, x, PROBE_CHUNKS))
    for path, module in order:
        if len(whole[path]) != 1 or len(pieces.get(path, [])) != len(PROBE_CHUNKS):
            continue
        full_in, full_out = whole[path][0]
        inputs = [part[0] for part in pieces[path]]
        outputs = [part[1] for part in pieces[path]]
        known = [i for i in inputs if i is not None]
        if full_in is None or len(known) != len(inputs) or not _same(full_in, known, tolerance):
            continue  # only a layer whose input still agrees can be blamed for a difference in its output
        if not _same(full_out, outputs, tolerance):
            if any(part.shape == full_out.shape for part in outputs):  # pooled over time: same shape per chunk
                return f"Layer '{path}' ({_describe(module)}) reduces over the time axis."
            return (f"Layer '{path}' ({_describe(module)}) mixes time steps: its output for a chunk depends on "
                    "frames outside the chunk.")
    return ("No single submodule is responsible: an operation in forward() itself mixes time steps (e.g. a mean, "
            "cumsum or pooling over time).")


def _same(full: torch.Tensor, parts: list[torch.Tensor], tolerance: float) -> bool:
    """Whether the chunked tensors, joined along the (unique) time axis, equal the whole-sequence tensor."""
    axes = [axis for axis in range(full.ndim)
            if full.shape[axis] == PROBE_FRAMES
            and all(part.ndim == full.ndim and part.shape[axis] == n for part, n in zip(parts, PROBE_CHUNKS))]
    if len(axes) != 1:
        return False
    joined = torch.cat(parts, dim=axes[0])
    return float((joined - full).abs().max()) <= float_limit({"float_max_abs_diff": tolerance}, float(full.abs().max()))


def _describe(module: nn.Module) -> str:
    text = repr(module).splitlines()[0]
    return text if len(text) < 120 else text[:117] + "..."


MANY_TO_ONE_FRAMES = 17


def check_against_model(streamer: SequenceStreamer, example: torch.Tensor, tolerance: float = 1e-5) -> None:
    """The streaming rewrite (state-carrying convolutions, many-to-one answers) must equal the model itself.

    Per-frame models: the rewrite on the whole sequence equals the model on it. Many-to-one models: row t of the
    rewrite's output equals the model's answer on the first t+1 frames.
    """
    initial = [slot.initial for slot in streamer.slots]
    if streamer.many_to_one:
        x = probe_input(example, MANY_TO_ONE_FRAMES, seed=5)
        with torch.no_grad():
            rows = streamer(x, *initial)[0][0]
        for t in range(MANY_TO_ONE_FRAMES):
            answer = streamer._call_plain(x[:, :t + 1], "plain")
            diff = float((rows[t] - answer[0]).abs().max())
            if not diff <= tolerance * (1.0 + float(answer.abs().max())):
                raise ExportError(
                    f"many-to-one model: its answer after {t + 1} frames is not the head applied to the top layer's "
                    f"h_t of '{streamer.summary_layer}' (differs by {diff:.3g}). A many-to-one model streams when it "
                    "returns head(h_n[-1]) or head(out[:, -1]) of its last recurrent layer; a head that reads c_n, "
                    "a lower layer's h_n or a pooled sequence cannot be answered frame by frame.")
        return
    x = probe_input(example, PROBE_FRAMES, seed=5)
    with torch.no_grad():
        streamed = streamer(x, *initial)[0]
        plain = streamer._call_plain(x, "plain")
    if streamed.shape == plain.shape:
        diff = float((streamed - plain).abs().max())
        if diff <= tolerance * (1.0 + float(plain.abs().max())):
            return
    else:
        diff = float("nan")
    layers = [p for p in streamer.conv_paths if streamer.model.get_submodule(p).carries_state]
    raise ExportError(
        f"streaming the causal convolutions {layers} changes the model's output (shape {tuple(plain.shape)} -> "
        f"{tuple(streamed.shape)}, max diff {diff:.3g}): a layer with padding=(k-1)*d must have its last (k-1)*d "
        "output frames dropped (y[..., :-(k-1)*d]) and nothing else, and a layer after F.pad must get exactly "
        "(k-1)*d zero frames on the left.")
