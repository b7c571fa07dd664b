"""One synthesiser call per engine: float32 16 kHz mono speech, leading and trailing silence trimmed.

Engines: ``espeak`` (espeak-ng formants; voice ``language+variant``), ``mbrola`` (MBROLA diphones through espeak-ng;
held out), ``flite``, ``festival`` (``text2wave``), ``pico`` (``pico2wave``), ``rhvoice`` (``RHVoice-test``),
``kokoro`` (a voice blend id, see ``neural.py``) and ``piper``. ``Request.rate`` is espeak-ng/MBROLA words per
minute, or every other engine's duration stretch (> 1 slower); ``Request.pitch`` is espeak-ng/MBROLA pitch 0-99, or
flite/Pico/RHVoice's f0 scale (Festival, Kokoro and Piper ignore it; the training warp varies their pitch).
"""

from __future__ import annotations

import struct
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

SAMPLE_RATE = 16000
ENGINES: tuple[str, ...] = ("espeak", "mbrola", "flite", "festival", "pico", "rhvoice", "kokoro", "piper")
PARAMETRIC_ENGINES: tuple[str, ...] = ("pico", "rhvoice")
NEURAL_ENGINES: tuple[str, ...] = ("kokoro", "piper")
_FLITE_MALE = ("kal", "kal16", "awb", "rms")


class SynthError(RuntimeError):
    """A synthesiser or sox failed, or produced unusable audio."""


@dataclass(frozen=True)
class Request:
    """One synthesiser call."""

    engine: str
    voice: str
    text: str
    rate: float
    pitch: float

    @property
    def voice_id(self) -> str:
        return f"{self.engine}:{self.voice}"


def read_wav_bytes(data: bytes) -> np.ndarray:
    """16 kHz samples of a 16-bit mono WAV with a 44-byte header (espeak-ng's streamed header has no valid sizes)."""
    rate = struct.unpack("<I", data[24:28])[0]
    samples = np.frombuffer(data[44:44 + (len(data) - 44) // 2 * 2], dtype=np.int16).astype(np.float32) / 32768.0
    return resample(samples, rate)


def resample(samples: np.ndarray, rate: int) -> np.ndarray:
    """float32 samples at ``rate`` resampled to 16 kHz (polyphase)."""
    if rate == SAMPLE_RATE:
        return samples.astype(np.float32, copy=False)
    divisor = int(np.gcd(SAMPLE_RATE, rate))
    return resample_poly(samples, SAMPLE_RATE // divisor, rate // divisor).astype(np.float32)


def trim_silence(pcm: np.ndarray, threshold_ratio: float = 0.02, margin: int = 160) -> np.ndarray:
    """Cut leading/trailing samples whose 10 ms envelope stays below ``threshold_ratio`` of the peak."""
    if pcm.size == 0:
        return pcm
    envelope = np.convolve(np.abs(pcm), np.ones(160) / 160.0, mode="same")
    active = np.flatnonzero(envelope > threshold_ratio * envelope.max())
    if active.size == 0:
        return pcm[:0]
    start = max(0, int(active[0]) - margin)
    end = min(pcm.size, int(active[-1]) + margin)
    return pcm[start:end]


def _run(command: list[str], stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(command, input=stdin, capture_output=True, check=False)
    except FileNotFoundError as error:
        raise SynthError(f"{command[0]}: expected the synthesiser on PATH, got none (bash tests/run.sh installs "
                         f"every engine on Debian)") from error


def _to_file(command: list[str], out: str, stdin: bytes | None = None) -> tuple[subprocess.CompletedProcess[bytes],
                                                                                 bytes]:
    result = _run(command, stdin)
    return result, Path(out).read_bytes()


def _festival(request: Request, out: str) -> tuple[subprocess.CompletedProcess[bytes], bytes]:
    # Some diphone voices crash on some words at some duration stretches: then once more at the voice's own
    # durations (a repeatable fallback, so a generated set stays deterministic)
    for stretch in dict.fromkeys((round(request.rate, 3), 1.0)):
        command = ["text2wave", "-eval", f"(voice_{request.voice})",
                   "-eval", f"(Parameter.set 'Duration_Stretch {stretch})", "-o", out]
        result, data = _to_file(command, out, request.text.encode())
        if result.returncode == 0:
            break
    return result, data


def _command_engine(request: Request) -> np.ndarray:
    """espeak-ng, MBROLA, flite, Festival, Pico or RHVoice: a subprocess writing a WAV."""
    with tempfile.NamedTemporaryFile(suffix=".wav") as out:
        if request.engine in ("espeak", "mbrola"):
            voice = request.voice if request.engine == "espeak" else f"mb-{request.voice}"
            result = _run(["espeak-ng", "-v", voice, "-s", str(int(request.rate)), "-p", str(int(request.pitch)),
                           "--stdout", request.text])
            data = result.stdout
        elif request.engine == "festival":
            result, data = _festival(request, out.name)
        elif request.engine == "flite":
            f0 = 110.0 if request.voice in _FLITE_MALE else 170.0
            result, data = _to_file(["flite", "-voice", request.voice, "-t", request.text, "-o", out.name,
                                     "--setf", f"duration_stretch={request.rate:.3f}",
                                     "--setf", f"int_f0_target_mean={f0 * request.pitch:.1f}"], out.name)
        elif request.engine == "pico":
            speed, pitch = round(100.0 / request.rate), round(100.0 * request.pitch)
            markup = f"<speed level='{speed}'><pitch level='{pitch}'>{request.text}</pitch></speed>"
            result, data = _to_file(["pico2wave", "-l", request.voice, "-w", out.name, markup], out.name)
        else:
            speed, pitch = round(100.0 / request.rate), round(100.0 * request.pitch)
            markup = f'<speak><prosody rate="{speed}%" pitch="{pitch - 100:+d}%">{request.text}</prosody></speak>'
            result, data = _to_file(["RHVoice-test", "-s", "-p", request.voice, "-o", out.name], out.name,
                                    markup.encode())
    if result.returncode != 0 or len(data) < 44 or data[:4] != b"RIFF":
        raise SynthError(f"{request}: expected a WAV, got rc={result.returncode}, stderr={result.stderr[:200]!r}")
    return read_wav_bytes(data)


def synthesize(request: Request) -> np.ndarray:
    """Speak one sentence; float32 16 kHz samples, silence trimmed."""
    if request.engine not in ENGINES:
        raise SynthError(f"{request}: expected engine one of {', '.join(ENGINES)}, got {request.engine!r}")
    if request.engine == "kokoro":
        from lstm_edge.recipes.speech.neural import kokoro_synthesize
        from lstm_edge.recipes.speech.voices import parse_blend

        speech = kokoro_synthesize(request.text, parse_blend(request.voice), speed=1.0 / request.rate)
    elif request.engine == "piper":
        from lstm_edge.recipes.speech.neural import piper_synthesize

        speech = piper_synthesize(request.text, request.voice, length_scale=request.rate)
    else:
        speech = _command_engine(request)
    return trim_silence(speech)


def held_out_request(text: str, voice_ids: Sequence[str], rng: np.random.Generator, espeak_wpm: tuple[int, int],
                     espeak_pitch: tuple[int, int], stretch: tuple[float, float],
                     f0_scale: tuple[float, float]) -> Request:
    """A request in one of ``voice_ids`` ("engine:name", drawn equally often) with random prosody: MBROLA voices
    (through espeak-ng) get words per minute and pitch drawn from ``[low, high)``, the others a duration stretch
    and an f0 scale."""
    engine, voice = str(rng.choice(list(voice_ids))).split(":")
    if engine == "mbrola":
        return Request(engine, voice, text, float(rng.integers(*espeak_wpm)), float(rng.integers(*espeak_pitch)))
    return Request(engine, voice, text, float(rng.uniform(*stretch)), float(rng.uniform(*f0_scale)))


def synthesize_with_fallback(request: Request) -> np.ndarray:
    """``synthesize``; when a Festival voice crashes on a sentence, flite's kal (a training voice) speaks it, so the
    utterance keeps its text and a generated set stays deterministic."""
    try:
        return synthesize(request)
    except SynthError:
        if request.engine != "festival":
            raise
        return synthesize(Request("flite", "kal", request.text, 1.0, 1.0))
