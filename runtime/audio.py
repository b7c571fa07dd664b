"""WAV reading in chunks, downmixing and streaming resampling (runs on the device).

    for chunk in iter_mono("long.wav", 16000, 1600):   # float32 mono chunks; memory flat in file length
        ...

The reader is the project's own (RIFF chunk walk): PCM 8/16/24/32-bit, 32/64-bit IEEE float, and
WAVE_FORMAT_EXTENSIBLE holding either. Resampling streams through python-soxr (``soxr.ResampleStream``).
"""

from __future__ import annotations

import struct
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from lstm_edge.runtime.errors import BackendUnavailableError, InputError, expected_got

MIN_SAMPLE_RATE = 1000
MAX_SAMPLE_RATE = 384000
MAX_CHANNELS = 64
DEFAULT_CHUNK_FRAMES = 16000

FORMAT_PCM = 0x0001
FORMAT_FLOAT = 0x0003
FORMAT_EXTENSIBLE = 0xFFFE
# The GUID tail shared by every KSDATAFORMAT_SUBTYPE_*; the first two bytes are the format code.
_GUID_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"


@dataclass(frozen=True)
class WavInfo:
    """What a WAV header says, checked: sample encoding, channels, rate and where the samples are."""

    channels: int
    sample_rate: int
    sample_bytes: int
    is_float: bool
    data_offset: int
    data_bytes: int

    @property
    def frames(self) -> int:
        return self.data_bytes // (self.sample_bytes * self.channels)


def _bad(path: Path, what: str) -> InputError:
    return InputError(f"{path}: not a readable WAV file ({what})")


def _parse_fmt(path: Path, body: bytes) -> tuple[int, int, int, bool]:
    if len(body) < 16:
        raise _bad(path, f"fmt chunk of {len(body)} bytes, expected at least 16")
    code, channels, rate, _, _, bits = struct.unpack("<HHIIHH", body[:16])
    if code == FORMAT_EXTENSIBLE:
        if len(body) < 40:
            raise _bad(path, f"WAVE_FORMAT_EXTENSIBLE fmt chunk of {len(body)} bytes, expected 40")
        guid = body[24:40]
        if guid[2:] != _GUID_TAIL:
            raise InputError(expected_got(f"{path}: WAVE_FORMAT_EXTENSIBLE sub-format", "PCM or IEEE float",
                                          f"GUID {guid.hex()}"))
        code = struct.unpack("<H", guid[:2])[0]
    if code not in (FORMAT_PCM, FORMAT_FLOAT):
        raise InputError(expected_got(f"{path}: WAV sample format", "PCM (1), IEEE float (3) or extensible",
                                      f"format code {code}"))
    is_float = code == FORMAT_FLOAT
    allowed = (32, 64) if is_float else (8, 16, 24, 32)
    if bits not in allowed:
        kind = "float" if is_float else "PCM"
        raise InputError(expected_got(f"{path}: bits per sample of {kind} WAV", f"one of {allowed}", bits))
    if not 1 <= channels <= MAX_CHANNELS:
        raise InputError(expected_got(f"{path}: WAV channels", f"1 to {MAX_CHANNELS}", channels))
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise InputError(expected_got(f"{path}: WAV sample rate", f"{MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz",
                                      f"{rate} Hz"))
    return channels, rate, bits // 8, is_float


def read_header(handle: BinaryIO, path: Path) -> WavInfo:
    """Walk the RIFF chunks up to ``data``; the handle is left at the first sample."""
    head = handle.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise _bad(path, f"expected a RIFF/WAVE header, got {head[:12]!r}")
    fmt: tuple[int, int, int, bool] | None = None
    size = path.stat().st_size
    while True:
        chunk = handle.read(8)
        if len(chunk) < 8:
            raise _bad(path, "no data chunk" if fmt else "no fmt chunk")
        chunk_id, chunk_size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
        if chunk_id == b"fmt ":
            if chunk_size > 1024:
                raise _bad(path, f"fmt chunk of {chunk_size} bytes, expected at most 1024")
            fmt = _parse_fmt(path, handle.read(chunk_size))
            handle.seek(chunk_size % 2, 1)
        elif chunk_id == b"data":
            if fmt is None:
                raise _bad(path, "data chunk before the fmt chunk")
            offset = handle.tell()
            data_bytes = min(chunk_size, size - offset)  # streamed writers leave 0 or 0xFFFFFFFF here
            if chunk_size in (0, 0xFFFFFFFF):
                data_bytes = size - offset
            channels, rate, width, is_float = fmt
            return WavInfo(channels, rate, width, is_float, offset, data_bytes)
        else:
            handle.seek(chunk_size + chunk_size % 2, 1)


def _decode(raw: bytes, info: WavInfo) -> np.ndarray:
    width = info.sample_bytes
    if info.is_float:
        data = np.frombuffer(raw, "<f4" if width == 4 else "<f8").astype(np.float32)
        data = np.nan_to_num(np.clip(data, -1.0, 1.0), nan=0.0)
    elif width == 1:
        data = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        data = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
    elif width == 3:
        bytes3 = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        value = bytes3[:, 0] | (bytes3[:, 1] << 8) | (bytes3[:, 2] << 16)
        value = np.where(value >= 1 << 23, value - (1 << 24), value)
        data = value.astype(np.float32) / float(1 << 23)
    else:
        data = np.frombuffer(raw, "<i4").astype(np.float32) / float(1 << 31)
    return data.reshape(-1, info.channels)


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if path.is_dir():
        raise InputError(expected_got(str(path), "an audio file", "a directory"))
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    return path


def wav_info(path: str | Path) -> WavInfo:
    """The checked header of a WAV file."""
    path = _existing(path)
    with open(path, "rb") as handle:
        return read_header(handle, path)


def iter_frames(path: str | Path, chunk_frames: int = DEFAULT_CHUNK_FRAMES) -> Iterator[np.ndarray]:
    """Samples as float32 in [-1, 1], chunks of shape [<= chunk_frames, channels], read as they are needed."""
    if chunk_frames < 1:
        raise InputError(expected_got("chunk_frames", "a positive number", chunk_frames))
    path = _existing(path)
    with open(path, "rb") as handle:
        info = read_header(handle, path)
        frame_bytes = info.sample_bytes * info.channels
        left = info.frames * frame_bytes
        while left > 0:
            raw = handle.read(min(left, chunk_frames * frame_bytes))
            raw = raw[: len(raw) - len(raw) % frame_bytes]
            if not raw:
                return
            left -= len(raw)
            yield _decode(raw, info)


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """The whole file as float32 [frames, channels] and its sample rate (short files; see ``iter_frames``)."""
    info = wav_info(path)
    chunks = list(iter_frames(path))
    data = np.concatenate(chunks) if chunks else np.zeros((0, info.channels), np.float32)
    return data, info.sample_rate


def write_wav(path: str | Path, pcm: np.ndarray, sample_rate: int) -> None:
    """Write mono int16 samples as a 16-bit PCM WAV file."""
    pcm = np.asarray(pcm)
    if pcm.dtype != np.int16 or pcm.ndim != 1:
        raise InputError(expected_got("samples to write", "mono int16 [N]", f"{pcm.dtype}{list(pcm.shape)}"))
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(int(sample_rate))
        out.writeframes(pcm.astype("<i2").tobytes())


def _resampler(source_rate: int, target_rate: int, channels: int = 1):
    try:
        import soxr
    except ImportError:
        raise BackendUnavailableError(f"resampling {source_rate} Hz to {target_rate} Hz needs python-soxr: "
                                      "pip install soxr (it comes with lstm-edge[onnx] and lstm-edge[litert])"
                                      ) from None
    return soxr.ResampleStream(source_rate, target_rate, channels, dtype="float32", quality="HQ")


def iter_mono(path: str | Path, sample_rate: int, chunk_samples: int = DEFAULT_CHUNK_FRAMES,
              notes: list[str] | None = None) -> Iterator[np.ndarray]:
    """A WAV file as mono float32 chunks at ``sample_rate`` (downmixed, resampled as it streams).

    Chunks hold at most ``chunk_samples`` samples (the last ones may be shorter); what was converted is appended
    to ``notes`` before the first chunk is yielded.
    """
    if chunk_samples < 1:
        raise InputError(expected_got("chunk_samples", "a positive number", chunk_samples))
    info = wav_info(path)
    resampler = None
    if info.channels > 1 and notes is not None:
        notes.append(f"{path}: downmixed {info.channels} channels to mono")
    if info.sample_rate != sample_rate:
        resampler = _resampler(info.sample_rate, sample_rate)
        if notes is not None:
            notes.append(f"{path}: resampled {info.sample_rate} Hz to {sample_rate} Hz")
    pending = np.zeros(0, np.float32)
    source_chunk = max(1, int(chunk_samples * info.sample_rate / sample_rate))
    for frames in iter_frames(path, source_chunk):
        mono = frames.mean(axis=1, dtype=np.float32) if info.channels > 1 else frames[:, 0]
        if resampler is not None:
            mono = resampler.resample_chunk(mono)
        pending = np.concatenate([pending, mono]) if pending.size else mono
        while pending.size >= chunk_samples:
            yield pending[:chunk_samples]
            pending = pending[chunk_samples:]
    if resampler is not None:
        tail = resampler.resample_chunk(np.zeros(0, np.float32), last=True)
        pending = np.concatenate([pending, tail])
    for start in range(0, pending.size, chunk_samples):
        yield pending[start:start + chunk_samples]


def iter_channels(path: str | Path, sample_rate: int, chunk_samples: int = DEFAULT_CHUNK_FRAMES,
                  notes: list[str] | None = None) -> Iterator[np.ndarray]:
    """A WAV file as float32 chunks ``[<= chunk_samples, channels]`` at ``sample_rate``, every channel kept (one
    stream per microphone); resampled as it streams, with a note appended to ``notes`` before the first chunk."""
    if chunk_samples < 1:
        raise InputError(expected_got("chunk_samples", "a positive number", chunk_samples))
    info = wav_info(path)
    resampler = None
    if info.sample_rate != sample_rate:
        resampler = _resampler(info.sample_rate, sample_rate, info.channels)
        if notes is not None:
            notes.append(f"{path}: resampled {info.sample_rate} Hz to {sample_rate} Hz")
    pending = np.zeros((0, info.channels), np.float32)
    source_chunk = max(1, int(chunk_samples * info.sample_rate / sample_rate))
    for frames in iter_frames(path, source_chunk):
        if resampler is not None:
            frames = resampler.resample_chunk(np.ascontiguousarray(frames)).reshape(-1, info.channels)
        pending = np.concatenate([pending, frames]) if len(pending) else frames
        while len(pending) >= chunk_samples:
            yield pending[:chunk_samples]
            pending = pending[chunk_samples:]
    if resampler is not None:
        tail = resampler.resample_chunk(np.zeros((0, info.channels), np.float32), last=True)
        pending = np.concatenate([pending, tail.reshape(-1, info.channels)])
    for start in range(0, len(pending), chunk_samples):
        yield pending[start:start + chunk_samples]


def load_mono(path: str | Path, sample_rate: int) -> tuple[np.ndarray, list[str]]:
    """A (short) WAV file as one mono float32 array at ``sample_rate``; also the notes on what was converted."""
    notes: list[str] = []
    chunks = list(iter_mono(path, sample_rate, notes=notes))
    return (np.concatenate(chunks) if chunks else np.zeros(0, np.float32)), notes


def resample(samples: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """Resample a whole mono signal (python-soxr, the same filter ``iter_mono`` streams through)."""
    for rate in (source_rate, target_rate):
        if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
            raise InputError(expected_got("sample rate", f"{MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz", f"{rate} Hz"))
    if source_rate == target_rate or samples.size == 0:
        return samples.astype(np.float32, copy=False)
    stream = _resampler(source_rate, target_rate)
    head = stream.resample_chunk(samples.astype(np.float32), last=True)
    return head.astype(np.float32, copy=False)

def iter_pcm_s16le(stream: BinaryIO, chunk_samples: int, channels: int = 1) -> Iterator[np.ndarray]:
    """Raw signed 16-bit little-endian PCM from a binary stream (a pipe: ``arecord -t raw -f S16_LE``) as float32
    chunks of ``chunk_samples`` samples, yielded as soon as each is complete; the last may be shorter. Mono:
    chunks ``[n]``; ``channels`` > 1 (interleaved, ``arecord -c N``): chunks ``[n, channels]``. A trailing partial
    sample (or partial frame of the channels) raises ``InputError`` after every whole one has been yielded."""
    if chunk_samples < 1:
        raise InputError(expected_got("chunk_samples", "a positive number", chunk_samples))
    if channels < 1:
        raise InputError(expected_got("channels", "a positive number", channels))
    frame_bytes = 2 * channels
    wanted = frame_bytes * chunk_samples
    pending = b""
    # read1: return what the pipe has now rather than wait until a whole buffer is filled
    read = stream.read1 if hasattr(stream, "read1") else stream.read

    def decode(raw: bytes) -> np.ndarray:
        samples = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
        return samples if channels == 1 else samples.reshape(-1, channels)

    while True:
        data = read(wanted - len(pending))
        if not data:
            break
        pending += data
        if len(pending) == wanted:
            yield decode(pending)
            pending = b""
    usable = len(pending) // frame_bytes * frame_bytes
    if usable:
        yield decode(pending[:usable])
    if len(pending) > usable:
        if channels == 1:
            raise InputError("raw PCM: expected 16-bit samples (an even number of bytes), got one trailing byte")
        raise InputError(expected_got("raw PCM", f"whole frames of {channels} interleaved 16-bit samples "
                                      f"({frame_bytes} bytes each)", f"{len(pending) - usable} trailing bytes"))


def iter_microphone(sample_rate: int, chunk_samples: int, device: str | int | None = None) -> Iterator[np.ndarray]:
    """The default (or given) input device as mono float32 chunks, through the optional ``sounddevice`` package
    (``pip install 'lstm-edge[mic]'``; it needs the PortAudio library). Runs until the consumer stops."""
    if chunk_samples < 1:
        raise InputError(expected_got("chunk_samples", "a positive number", chunk_samples))
    try:
        import sounddevice
    except ImportError as error:
        raise BackendUnavailableError(
            "microphone input needs the sounddevice package: pip install 'lstm-edge[mic]' "
            f"(and the PortAudio library, e.g. apt-get install libportaudio2); import failed: {error}") from error
    except OSError as error:
        raise BackendUnavailableError(f"sounddevice could not load PortAudio ({error}); install it, e.g. "
                                      "apt-get install libportaudio2") from error

    def blocks() -> Iterator[np.ndarray]:
        with sounddevice.InputStream(samplerate=sample_rate, channels=1, dtype="float32", blocksize=chunk_samples,
                                     device=device) as microphone:
            while True:
                block, _overflowed = microphone.read(chunk_samples)
                yield np.asarray(block, dtype=np.float32)[:, 0].copy()

    return blocks()  # the import above fails at the call, not at the first chunk
