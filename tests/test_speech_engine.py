"""The speech-data engine: catalogue and held-out rule, synthesis of the held-out engines, room simulation, cache."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import numpy as np
import pytest

from lstm_edge.recipes.asr import synth as asr_synth
from lstm_edge.recipes.speech import augment, voices
from lstm_edge.recipes.speech.cache import SpeechCache, render_all
from lstm_edge.recipes.speech.synthesis import SAMPLE_RATE, Request, SynthError, synthesize

KOKORO_BASE = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")


def test_held_out_voices_are_test_only_by_rule() -> None:
    held_out = [v for v in voices.CATALOGUE if v.engine == "mbrola" or "slt" in v.name.split("_")]
    assert {v.id for v in held_out} >= {"mbrola:us1", "mbrola:us2", "mbrola:us3", "mbrola:en1", "flite:slt",
                                         "festival:cmu_us_slt_arctic_hts", "rhvoice:slt"}
    for voice in held_out:
        assert voice.split == "test" and voices.is_held_out(voice.id)
        voices.check_trainable(voice.id, "test")
        for split in ("train", "validation"):
            with pytest.raises(voices.HeldOutVoiceError, match="held-out"):
                voices.check_trainable(voice.id, split)
    for voice in voices.CATALOGUE:
        assert voice.licence and voice.gender in ("female", "male", "child")
        if voice not in held_out:
            assert voice.split != "test" and not voices.is_held_out(voice.id)


def test_recognizer_plans_keep_held_out_voices_in_test_and_only_there() -> None:
    config = asr_synth.SynthConfig(festival_share=0.3, parametric_share=0.3, piper_share=0.1,
                                   out_of_grammar_share=0.2, extra_train_voices=("pico:es-ES",))
    plans = {split: asr_synth.plan_split(split, 300, config, np.random.default_rng(5)) for split in voices.SPLITS}
    assert {r.voice_id for _, r in plans["test"]} == set(asr_synth.HELD_OUT_VOICES)
    for split in ("train", "validation"):
        assert not any(voices.is_held_out(r.voice_id) for _, r in plans[split])
    assert "out_of_grammar" not in {kind for kind, _ in plans["train"]}
    assert {kind for kind, _ in plans["test"]} == {"digits", "number", "command", "out_of_grammar"}
    # the test split depends on nothing but its size and seed
    plain = asr_synth.plan_split("test", 300, asr_synth.SynthConfig(out_of_grammar_share=0.2),
                                 np.random.default_rng(5))
    assert plain == plans["test"]


def test_kokoro_blends_keep_the_validation_voice_out_of_training() -> None:
    rng = np.random.default_rng(0)
    for split in ("train", "validation"):
        for _ in range(200):
            blend = voices.random_blend(rng, split, KOKORO_BASE)
            assert 2 <= len(blend) <= 3 and np.isclose(sum(w for _, w in blend), 1.0)
            assert voices.parse_blend(voices.blend_id(blend)) == blend
            weights = dict(blend)
            if split == "train":
                assert voices.KOKORO_VALIDATION_VOICE not in weights
            else:
                assert weights[voices.KOKORO_VALIDATION_VOICE] >= 0.5
    with pytest.raises(voices.HeldOutVoiceError):
        voices.random_blend(rng, "test", KOKORO_BASE)
    with pytest.raises(ValueError, match="hundredths"):
        voices.parse_blend("jf_alpha+jm_kumo.50")


def test_held_out_engines_speak() -> None:
    for request in (Request("mbrola", "us1", "seven three nine", 160, 50),
                    Request("festival", "cmu_us_slt_arctic_hts", "seven three nine", 1.0, 1.0),
                    Request("rhvoice", "slt", "seven three nine", 1.0, 1.0)):
        speech = synthesize(request)
        assert 0.6 * SAMPLE_RATE < speech.size < 3 * SAMPLE_RATE, (request, speech.size)
        assert np.abs(speech).max() > 0.05
    with pytest.raises(SynthError, match="expected engine"):
        synthesize(Request("nosuch", "x", "seven", 1.0, 1.0))


def test_room_bank_is_deterministic_and_reverberant() -> None:
    import pyroomacoustics as pra

    first, second = augment.room_bank(3, seed=4), augment.room_bank(3, seed=4)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], augment.room_bank(1, seed=5)[0])
    for rir in first:
        assert np.argmax(np.abs(rir)) < 32 and np.max(np.abs(rir)) == 1.0  # direct path first, delay removed
        rt60 = pra.experimental.measure_rt60(rir, fs=SAMPLE_RATE)
        assert 0.05 < rt60 < 1.2, rt60  # drawn from 0.1-0.7 s; Sabine's formula is approximate
    speech = synthesize(Request("espeak", "en-us", "four", 160, 50))
    wet = augment.apply_room(speech, first[0])
    assert wet.shape == speech.shape and np.isclose(np.abs(wet).max(), np.abs(speech).max(), rtol=1e-3)


def test_cache_resumes_and_rerenders_a_broken_file(tmp_path: Path) -> None:
    requests = [Request("espeak", "en-us", text, 160, 50) for text in ("one two", "three", "four five six")]
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        first = render_all(requests, pool, tmp_path)
        files = sorted(tmp_path.rglob("*.npy"))
        assert len(files) == 3 and not list(tmp_path.rglob("*.tmp.npy"))
        cache = SpeechCache(tmp_path)
        broken = cache.path(requests[1])
        assert broken is not None
        broken.write_bytes(b"not a numpy file")
        again = render_all(requests, pool, tmp_path)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)  # what a resumed run loads equals what the first run returned
    loaded = cache.load(requests[1])
    assert loaded is not None and np.array_equal(loaded, first[1])
