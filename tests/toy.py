"""A small task with memory, for tests that need a trained model: report the class of the last event seen."""

from __future__ import annotations

import numpy as np
import torch

CLASSES = 12
FEATURES = 40


def make_sequences(count: int, frames: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Noise frames with an event (a class prototype) every 6-14 frames; target: class of the last event."""
    rng = np.random.default_rng(seed)
    prototypes = np.random.default_rng(1234).standard_normal((CLASSES, FEATURES)).astype(np.float32) * 1.5
    x = rng.standard_normal((count, frames, FEATURES)).astype(np.float32) * 0.4
    y = np.zeros((count, frames), dtype=np.int64)
    for row in range(count):
        label, t = 0, 0
        next_event = int(rng.integers(1, 8))
        for t in range(frames):
            if t == next_event:
                label = int(rng.integers(CLASSES))
                x[row, t] += prototypes[label]
                next_event = t + int(rng.integers(6, 15))
            y[row, t] = label
    return x, y


def train(model: torch.nn.Module, steps: int = 60, seed: int = 0) -> torch.nn.Module:
    """A few hundred Adam steps on the task; returns the model in eval mode."""
    torch.manual_seed(seed)
    torch.set_num_threads(2)
    x, y = make_sequences(256, 40, seed)
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        batch = torch.randint(0, len(x), (16,), generator=generator)
        logits = model(x[batch])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, CLASSES), y[batch].reshape(-1))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return model.eval()


def reference_stream(frames: int = 1200, seed: int = 99) -> np.ndarray:
    return make_sequences(1, frames, seed)[0][0]
