"""A Silero-VAD-style step model (built here from its published structure, random or briefly trained weights) and
speech / non-speech streams made with espeak-ng, for the int8 tests and benchmarks.

Per step: 512 new samples at 16 kHz plus 64 of context -> reflect pad -> STFT as a fixed strided Conv1d (Hann
window times DFT basis) -> magnitude -> four Conv1d+ReLU encoder blocks (two of stride 2) -> LSTMCell -> ReLU ->
1x1 Conv1d -> sigmoid: the probability of speech in the step. State: stacked (h, c) and the context samples.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

SAMPLE_RATE = 16000


class SileroLike(nn.Module):
    state_names = ("hc", "context")
    samples, context_samples, n_fft, hop = 512, 64, 256, 128

    def __init__(self, channels: tuple[int, int, int, int] = (128, 64, 64, 128), hidden: int = 128) -> None:
        super().__init__()
        bins = self.n_fft // 2 + 1
        self.stft = nn.Conv1d(1, 2 * bins, self.n_fft, stride=self.hop, bias=False)
        self.stft.weight.requires_grad_(False)
        with torch.no_grad():
            self.stft.weight.copy_(stft_basis(self.n_fft))
        c0, c1, c2, c3 = channels
        self.encoder = nn.Sequential(
            nn.Conv1d(bins, c0, 3, padding=1), nn.ReLU(),
            nn.Conv1d(c0, c1, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv1d(c1, c2, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv1d(c2, c3, 3, padding=1), nn.ReLU())
        self.cell = nn.LSTMCell(c3, hidden)
        self.head = nn.Conv1d(hidden, 1, 1)
        self.hidden = hidden

    def initial_state(self, batch_size: int = 1):
        return (torch.zeros(2, batch_size, self.hidden), torch.zeros(batch_size, self.context_samples))

    def features(self, window: torch.Tensor) -> torch.Tensor:
        """[B, context + samples] -> [B, channels]: one encoder frame per step."""
        padded = nn.functional.pad(window.unsqueeze(1), (0, self.context_samples), mode="reflect")
        real, imag = self.stft(padded).chunk(2, dim=1)
        magnitude = torch.sqrt(real ** 2 + imag ** 2 + 1e-12)
        return self.encoder(magnitude).squeeze(-1)

    def decide(self, h: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.head(torch.relu(h).unsqueeze(-1))).squeeze(-1)

    def forward(self, x, state):  # x [1, 512] samples
        hc, context = state
        window = torch.cat([context, x], dim=1)
        h, c = self.cell(self.features(window), (hc[0], hc[1]))
        return self.decide(h), (torch.stack([h, c]), window[:, -self.context_samples:])

    def sequence(self, audio: torch.Tensor) -> torch.Tensor:
        """[B, steps * 512] -> [B, steps] probabilities, the step model unrolled (for training)."""
        batch, steps = audio.shape[0], audio.shape[1] // self.samples
        padded = torch.cat([torch.zeros(batch, self.context_samples), audio], dim=1)
        windows = padded.unfold(1, self.samples + self.context_samples, self.samples)[:, :steps]
        feature = self.features(windows.reshape(batch * steps, -1)).reshape(batch, steps, -1)
        h = c = torch.zeros(batch, self.hidden)
        out = []
        for t in range(steps):
            h, c = self.cell(feature[:, t], (h, c))
            out.append(self.decide(h))
        return torch.cat(out, dim=1)


def stft_basis(n_fft: int) -> torch.Tensor:
    """[2 * bins, 1, n_fft]: periodic Hann window times cos (real part) and -sin (imaginary part) rows."""
    n = torch.arange(n_fft, dtype=torch.float64)
    window = 0.5 - 0.5 * torch.cos(2 * math.pi * n / n_fft)
    k = torch.arange(n_fft // 2 + 1, dtype=torch.float64).unsqueeze(1)
    angle = 2 * math.pi * k * n / n_fft
    return torch.cat([window * torch.cos(angle), -window * torch.sin(angle)]).unsqueeze(1).float()


SENTENCES = ("turn the lights off in the kitchen", "what time is it now", "call my sister tomorrow morning",
             "the weather looks fine today", "play some music please", "set an alarm for seven",
             "open the window a little", "how far is the station from here")
VOICES = ("en-us", "en-gb", "en-us+f3", "en-gb-x-rp+m2", "en-us+m3", "en-gb+f2")


def speech_clip(text: str, voice: str, rate: int = 160) -> np.ndarray:
    from lstm_edge.recipes.speech.synthesis import Request, synthesize

    speech = synthesize(Request("espeak", voice, text, rate=rate, pitch=50))
    return (speech / max(float(np.abs(speech).max()), 1e-6)).astype(np.float32)


def streams(count: int, seed: int, sentences: tuple[str, ...] = SENTENCES, voices: tuple[str, ...] = VOICES,
            dc_offset: float = 0.0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``count`` audio streams (float32 16 kHz, a multiple of 512 samples) with per-step speech labels: silence with
    a little noise, speech at -40 to -20 dBFS (a talker away from the microphone), noise bursts (white or brown),
    more speech, silence. ``dc_offset`` adds a constant of up to that size (drawn per stream), as a microphone's ADC
    without a high-pass filter does: the STFT's lowest bins then dwarf the speech bins."""
    rng = np.random.default_rng(seed)
    out = []
    step = SileroLike.samples
    for index in range(count):
        parts: list[tuple[np.ndarray, bool]] = []
        for turn in range(2):
            parts.append((rng.normal(size=int(rng.uniform(0.3, 0.8) * SAMPLE_RATE)) * 10 ** rng.uniform(-4, -2.5),
                          False))
            text = sentences[(2 * index + turn) % len(sentences)]
            voice = voices[int(rng.integers(len(voices)))]
            parts.append((speech_clip(text, voice, int(rng.integers(140, 190))) * 10 ** rng.uniform(-2, -1),
                          True))
            noise = rng.normal(size=int(rng.uniform(0.3, 0.7) * SAMPLE_RATE))
            if turn:  # brown noise, its slow drift removed
                noise = np.cumsum(noise)
                noise -= np.convolve(noise, np.ones(256) / 256, mode="same")
            parts.append((noise / np.abs(noise).max() * 10 ** rng.uniform(-2, -1), False))
        clean = np.concatenate([audio for audio, _ in parts]).astype(np.float32)
        speech = np.concatenate([np.full(len(audio), is_speech) for audio, is_speech in parts])
        steps = len(clean) // step
        clean, speech = clean[:steps * step], speech[:steps * step]
        # a step is speech when most of it is inside a sentence and it is not one of the sentence's pauses
        loud = np.sqrt((clean.reshape(steps, step) ** 2).mean(axis=1)) > 0.01 * np.abs(clean).max()
        labels = (speech.reshape(steps, step).mean(axis=1) > 0.5) & loud
        audio = clean + rng.normal(size=clean.size).astype(np.float32) * 3e-4 + np.float32(
            rng.uniform(0.5, 1) * dc_offset)
        out.append((audio.astype(np.float32), labels))
    return out


def train(model: SileroLike, data: list[tuple[np.ndarray, np.ndarray]], steps: int = 150, seed: int = 0,
          window: int = 40) -> SileroLike:
    """A brief training on random windows of ``data`` (binary cross-entropy per step)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    step = SileroLike.samples
    for _ in range(steps):
        batch_audio, batch_labels = [], []
        for _ in range(8):
            audio, labels = data[int(rng.integers(len(data)))]
            start = int(rng.integers(0, max(len(labels) - window, 1)))
            batch_audio.append(audio[start * step:(start + window) * step])
            batch_labels.append(labels[start:start + window])
        probabilities = model.sequence(torch.from_numpy(np.stack(batch_audio)))
        target = torch.from_numpy(np.stack(batch_labels).astype(np.float32))
        loss = nn.functional.binary_cross_entropy(probabilities.clamp(1e-6, 1 - 1e-6), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def steps_of(audio: np.ndarray) -> np.ndarray:
    """A stream's audio as the step model's inputs: [steps, 512]."""
    return audio[:len(audio) // SileroLike.samples * SileroLike.samples].reshape(-1, SileroLike.samples)


DC_OFFSET = 0.3


def trained_export(out_dir, seed: int = 0, dc_offset: float = DC_OFFSET) -> tuple[object, list[np.ndarray],
                                                                                list[np.ndarray]]:
    """Train a SileroLike briefly on espeak-ng streams with a DC offset, export it (ONNX and TFLite, output
    ``probabilities``, a held-out speech stream as reference input) to ``out_dir``; returns (model, held-out
    calibration streams as step inputs, their labels)."""
    from lstm_edge.export import export

    torch.set_num_threads(1)
    data = streams(12, seed, dc_offset=dc_offset)
    torch.manual_seed(seed)
    model = train(SileroLike(), data[:8], steps=150, seed=seed)
    held_out = [steps_of(audio) for audio, _ in data[8:]]
    export(model, torch.from_numpy(held_out[0][:1]), out_dir, formats=("onnx", "tflite"), reference_input=held_out[0],
           output_semantics="probabilities", name="silero-like")
    return model, held_out[1:], [labels for _, labels in data[9:]]
