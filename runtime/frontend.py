"""Streaming log-mel frontend in pure numpy (runs on the device).

Framing is "valid" (no centre padding): frame ``i`` covers samples ``[i * hop_length, i * hop_length + win_length)``.
Each frame is multiplied by a periodic Hann window of ``win_length`` samples, zero-padded to ``n_fft``, and its
power spectrum ``|rfft|^2`` is mapped onto ``n_mels`` triangular filters on the **HTK mel scale**
(``mel = 2595 * log10(1 + f / 700)``, triangles of unit peak, no area normalisation). The output is the natural
log of ``max(mel_power, log_floor)``. No pre-emphasis, no dithering. int16 input is scaled by 1/32768.

A manifest (schema v2) states all of this explicitly: ``LogMelConfig.to_dict()`` writes the fixed choices too
(``framing``, ``spectrum``, ``mel_norm``, ``log``, ``log_floor_rule``, ``int16_scale``, ``pre_emphasis``, ``dither``),
and ``docs/manifest.md`` gives the formulas. ``from_dict`` reads both that form and the v1 form (tunable keys only).

``LogMelFrontend`` is stateless and may be shared by many streams; each ``FrontendStream`` owns its leftover samples.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from lstm_edge.runtime.errors import InputError, LstmEdgeError, ManifestError

K = TypeVar("K")

__all__ = ["LogMelConfig", "LogMelFrontend", "FrontendStream", "FrontendConfigError", "InputError"]

_ACCEPTED_DTYPES = (np.dtype(np.int16), np.dtype(np.float32), np.dtype(np.float64))
_INT16_SCALE = np.float32(1.0 / 32768.0)


# The choices this frontend implements, written into every v2 manifest so a client need not guess them.
FIXED_CHOICES: dict[str, Any] = {
    "type": "log_mel",
    "int16_scale": 1.0 / 32768.0,  # int16 samples are multiplied by this; float input is taken as is
    "pre_emphasis": 0,  # none
    "dither": 0,  # none
    "framing": "valid",  # frame i = samples [i * hop_length, i * hop_length + win_length); no centre padding
    "spectrum": "power",  # |rfft(frame * window, n_fft)|^2, frames zero-padded at the end to n_fft
    "mel_norm": "none",  # triangles of unit peak, no area (Slaney) normalisation
    "log": "natural",
    "log_floor_rule": "max",  # log(max(mel_power, log_floor)), not log(mel_power + log_floor)
}
NORMALIZATION_KEY = "feature_normalization"  # declared by the manifest, applied by the graph or nowhere


class FrontendConfigError(ManifestError):
    """A frontend configuration has unknown/missing keys, wrong value types, or inconsistent values."""


@dataclass(frozen=True)
class LogMelConfig:
    """Settings of the log-mel frontend; ``to_dict()`` is what a manifest stores."""

    sample_rate: int = 16000
    n_fft: int = 512
    win_length: int = 400
    hop_length: int = 160
    n_mels: int = 40
    f_min: float = 20.0
    f_max: float = 7600.0
    log_floor: float = 1e-6
    window: str = "hann_periodic"
    mel_scale: str = "htk"

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            _check_field_type(field.name, field.type, value)
        # Accept ints for float fields (JSON writes 20.0 as 20 in some tools) but store floats.
        for name in ("f_min", "f_max", "log_floor"):
            object.__setattr__(self, name, float(getattr(self, name)))
        checks = [
            (self.sample_rate > 0, "sample_rate", "> 0", self.sample_rate),
            (self.n_fft > 0, "n_fft", "> 0", self.n_fft),
            (0 < self.win_length <= self.n_fft, "win_length", f"in (0, n_fft={self.n_fft}]", self.win_length),
            (self.hop_length > 0, "hop_length", "> 0", self.hop_length),
            (self.n_mels > 0, "n_mels", "> 0", self.n_mels),
            (self.f_min >= 0.0, "f_min", ">= 0", self.f_min),
            (
                self.f_min < self.f_max <= self.sample_rate / 2,
                "f_max",
                f"in (f_min={self.f_min}, sample_rate/2={self.sample_rate / 2}]",
                self.f_max,
            ),
            (self.log_floor > 0.0, "log_floor", "> 0", self.log_floor),
            (self.window == "hann_periodic", "window", "'hann_periodic'", repr(self.window)),
            (self.mel_scale == "htk", "mel_scale", "'htk'", repr(self.mel_scale)),
        ]
        for ok, name, expected, got in checks:
            if not ok:
                raise FrontendConfigError(f"LogMelConfig.{name}: expected {expected}, got {got}")

    @property
    def n_bins(self) -> int:
        """Number of rfft bins, ``n_fft // 2 + 1``."""
        return self.n_fft // 2 + 1

    def n_frames(self, n_samples: int) -> int:
        """Number of complete frames in a signal of ``n_samples`` samples."""
        if n_samples < self.win_length:
            return 0
        return (n_samples - self.win_length) // self.hop_length + 1

    def to_dict(self, feature_normalization: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The manifest's (schema v2) frontend section: every setting, the fixed choices, and how features are
        normalised (default ``{"where": "none"}``; ``{"where": "graph", "mean": [...], "std": [...]}`` when the
        model's graph normalises its input itself, so a client must not normalise again)."""
        out: dict[str, Any] = dict(FIXED_CHOICES)
        out.update(dataclasses.asdict(self))
        out[NORMALIZATION_KEY] = dict(feature_normalization) if feature_normalization is not None else {"where": "none"}
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LogMelConfig:
        """Build from a manifest's frontend section: the v2 form of ``to_dict()``, or the v1 form (the tunable keys
        only); raises ``FrontendConfigError`` on missing or unknown keys or a fixed choice this frontend lacks."""
        if not isinstance(d, Mapping):
            raise FrontendConfigError(f"LogMelConfig: expected a mapping, got {type(d).__name__}")
        tunable = {f.name for f in dataclasses.fields(cls)}
        got_keys = set(d.keys())
        expected_keys = tunable if got_keys <= tunable else tunable | set(FIXED_CHOICES) | {NORMALIZATION_KEY}
        if got_keys != expected_keys:
            missing = sorted(expected_keys - got_keys)
            unknown = sorted(str(k) for k in got_keys - expected_keys)
            raise FrontendConfigError(
                f"LogMelConfig keys: expected {sorted(expected_keys)}, got missing={missing} unknown={unknown}"
            )
        for key, value in FIXED_CHOICES.items():
            if key in d and not (d[key] == value and type(d[key]) is not bool):
                raise FrontendConfigError(f"LogMelConfig.{key}: expected {value!r}, got {d[key]!r}")
        return cls(**{key: d[key] for key in tunable})


def _check_field_type(name: str, type_name: Any, value: Any) -> None:
    """Raise ``FrontendConfigError`` unless ``value`` fits the declared field type (bool is never a number)."""
    type_name = type_name if isinstance(type_name, str) else getattr(type_name, "__name__", str(type_name))
    if type_name == "int":
        ok = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    elif type_name == "float":
        ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    elif type_name == "str":
        ok = isinstance(value, str)
    else:  # pragma: no cover - every field is one of the above
        ok = True
    if not ok:
        raise FrontendConfigError(f"LogMelConfig.{name}: expected {type_name}, got {type(value).__name__} ({value!r})")


def periodic_hann(win_length: int) -> np.ndarray:
    """Periodic Hann window (the DFT-even form), float64."""
    n = np.arange(win_length, dtype=np.float64)
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * n / win_length)


def hz_to_mel_htk(freq_hz: np.ndarray | float) -> np.ndarray:
    """HTK mel scale."""
    return 2595.0 * np.log10(1.0 + np.asarray(freq_hz, dtype=np.float64) / 700.0)


def mel_to_hz_htk(mel: np.ndarray) -> np.ndarray:
    """Inverse of ``hz_to_mel_htk``."""
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def htk_mel_filterbank(config: LogMelConfig) -> np.ndarray:
    """Triangular filters of unit peak, shape ``[n_bins, n_mels]`` (float64), HTK mel scale, no area normalisation."""
    bin_freqs = np.linspace(0.0, config.sample_rate / 2.0, config.n_bins)
    edge_mels = np.linspace(hz_to_mel_htk(config.f_min), hz_to_mel_htk(config.f_max), config.n_mels + 2)
    edge_freqs = mel_to_hz_htk(edge_mels)
    lower_edges = edge_freqs[:-2, None]
    centres = edge_freqs[1:-1, None]
    upper_edges = edge_freqs[2:, None]
    rising = (bin_freqs[None, :] - lower_edges) / (centres - lower_edges)
    falling = (upper_edges - bin_freqs[None, :]) / (upper_edges - centres)
    weights = np.maximum(0.0, np.minimum(rising, falling))  # [n_mels, n_bins]
    return np.ascontiguousarray(weights.T)


def _validate_pcm(pcm: Any) -> np.ndarray:
    """Check dtype/rank/finiteness and return mono float32 samples in [-1, 1) scale."""
    if not isinstance(pcm, np.ndarray):
        raise InputError(f"pcm: expected a numpy.ndarray, got {type(pcm).__name__}")
    if pcm.dtype not in _ACCEPTED_DTYPES:
        raise InputError(f"pcm dtype: expected one of int16, float32, float64, got {pcm.dtype}")
    if pcm.ndim != 1:
        raise InputError(f"pcm rank: expected 1-D mono samples, got shape {pcm.shape}")
    if pcm.dtype == np.int16:
        return pcm.astype(np.float32) * _INT16_SCALE
    samples = pcm.astype(np.float32, copy=False)
    if samples.size and not np.isfinite(samples).all():
        raise InputError("pcm values: expected finite samples, got NaN or inf")
    return samples


class LogMelFrontend:
    """Stateless log-mel feature extractor: precomputed window and mel matrix, shared by any number of streams."""

    def __init__(self, config: LogMelConfig | None = None) -> None:
        self.config = config if config is not None else LogMelConfig()
        if not isinstance(self.config, LogMelConfig):
            raise FrontendConfigError(f"config: expected LogMelConfig, got {type(self.config).__name__}")
        self.window = periodic_hann(self.config.win_length)
        self.mel_matrix = htk_mel_filterbank(self.config)  # [n_bins, n_mels], float64
        self._empty = np.zeros((0, self.config.n_mels), dtype=np.float32)

    @property
    def n_mels(self) -> int:
        """Feature size of each output frame."""
        return self.config.n_mels

    def _frames_to_logmel(self, samples: np.ndarray, n_frames: int) -> np.ndarray:
        """Log-mel of the first ``n_frames`` valid frames of contiguous float32 ``samples``."""
        if n_frames <= 0:
            return self._empty
        return self._logmel(self._frames(samples, n_frames))

    def _frames(self, samples: np.ndarray, n_frames: int) -> np.ndarray:
        """The first ``n_frames`` frames of ``samples`` as a strided view (no copy): row i starts at i * hop."""
        cfg, stride = self.config, samples.strides[0]
        return np.ndarray((n_frames, cfg.win_length), dtype=samples.dtype, buffer=samples,
                          strides=(cfg.hop_length * stride, stride))

    def _logmel(self, frames: np.ndarray) -> np.ndarray:
        """Log-mel of each row of ``frames`` [n, win_length]; every row is computed on its own."""
        cfg = self.config
        # float64 from here on: numpy's float64 rfft is both faster and more accurate than its float32 path.
        spectrum = np.fft.rfft(frames * self.window, n=cfg.n_fft, axis=1)
        power = np.square(np.abs(spectrum))
        mel_power = power @ self.mel_matrix
        np.maximum(mel_power, cfg.log_floor, out=mel_power)
        return np.log(mel_power, out=mel_power).astype(np.float32)

    def push_many(self, pushes: Mapping[K, tuple[FrontendStream, np.ndarray]]
                  ) -> tuple[dict[K, np.ndarray], dict[K, LstmEdgeError]]:
        """``{key: (stream, pcm)}``: each stream's ``push(pcm)``, with the frames of all of them in one transform
        (many streams of a hub: one rfft and one mel product instead of one per stream). Each frame is computed on
        its own, so the features are those of pushing the streams one by one. A chunk that is refused fails its key
        only (its stream unchanged). Returns the features and the errors, by key."""
        taken: dict[K, tuple[FrontendStream, np.ndarray | None, int]] = {}
        errors: dict[K, LstmEdgeError] = {}
        for key, (stream, pcm) in pushes.items():
            try:
                samples = stream._take(pcm)
            except LstmEdgeError as error:
                errors[key] = error
                continue
            taken[key] = (stream, samples, 0 if samples is None else self.config.n_frames(samples.shape[0]))
        rows = [self._frames(samples, n) for _, samples, n in taken.values() if samples is not None and n]
        features = self._logmel(np.concatenate(rows)) if rows else self._empty
        out: dict[K, np.ndarray] = {}
        at = 0
        for key, (stream, samples, n) in taken.items():
            out[key] = features[at:at + n]  # [0, n_mels] for a push that completed no frame
            at += n
            if samples is not None:
                stream._commit(samples, n)
        return out, errors

    def compute(self, pcm: np.ndarray) -> np.ndarray:
        """Log-mel features ``[n_frames, n_mels]`` float32 of a whole signal (valid framing)."""
        samples = np.ascontiguousarray(_validate_pcm(pcm))
        return self._frames_to_logmel(samples, self.config.n_frames(samples.shape[0]))

    def create_stream(self) -> FrontendStream:
        """A new stream that owns its leftover samples."""
        return FrontendStream(self)


class FrontendStream:
    """Incremental framing over pushed chunks of any length; output over any chunking equals ``compute()``."""

    def __init__(self, frontend: LogMelFrontend) -> None:
        self.frontend = frontend
        self._leftover = np.zeros(0, dtype=np.float32)
        self._skip = 0  # samples still to drop before the next frame (when hop_length > win_length)
        self.frames_emitted = 0

    @property
    def pending_samples(self) -> int:
        """Samples held back until they complete a frame."""
        return int(self._leftover.shape[0])

    def push(self, pcm: np.ndarray) -> np.ndarray:
        """Append a mono chunk (int16, float32 or float64, any length) and return the newly completed frames."""
        samples = self._take(pcm)
        if samples is None:
            return self.frontend._empty
        n_frames = self.frontend.config.n_frames(samples.shape[0])
        features = self.frontend._frames_to_logmel(samples, n_frames)
        self._commit(samples, n_frames)
        return features

    def _take(self, pcm: np.ndarray) -> np.ndarray | None:
        """The samples a push works on (the leftover, then the checked chunk), None when there are none; nothing
        in the stream changes but the samples still to skip."""
        chunk = _validate_pcm(pcm)
        if self._skip:
            dropped = min(self._skip, chunk.shape[0])
            chunk, self._skip = chunk[dropped:], self._skip - dropped
        if chunk.shape[0] == 0:
            return None
        return np.concatenate((self._leftover, chunk)) if self._leftover.shape[0] else np.ascontiguousarray(chunk)

    def _commit(self, samples: np.ndarray, n_frames: int) -> None:
        """After ``n_frames`` frames of ``samples`` were computed: keep only what a future frame still needs; copy so
        the caller's buffer is not retained. With a hop longer than the window, the next frame may start beyond
        these samples: skip the gap in what comes next."""
        consumed = n_frames * self.frontend.config.hop_length
        self._leftover = samples[consumed:].copy()
        self._skip = max(consumed - samples.shape[0], 0)
        self.frames_emitted += n_frames

    def reset(self) -> None:
        """Forget leftover samples, as a fresh stream."""
        self._leftover = np.zeros(0, dtype=np.float32)
        self._skip = 0
        self.frames_emitted = 0
