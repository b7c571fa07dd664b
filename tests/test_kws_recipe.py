"""Quick checks of the KWS recipe: voice-disjoint synthetic splits, and the shipped model's contract."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lstm_edge.recipes.kws import synth
from lstm_edge.recipes.kws.model import (
    build_model,
    clip_prediction,
    count_parameters,
    load_shipped_model,
    shipped_model_dir,
)
from lstm_edge.runtime.frontend import LogMelConfig, LogMelFrontend

MIN_PARAMETERS, MAX_PARAMETERS = 100_000, 300_000
# The shipped model must stay clearly better than chance (1/12) on its own test-voice evaluation clips.
MIN_EVAL_CLIP_ACCURACY = 0.75


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out_dir = tmp_path_factory.mktemp("kws_tiny")
    config = synth.SynthConfig(train_per_class=3, eval_per_class=1, seed=5, workers=2)
    synth.generate_dataset(out_dir, config)
    return out_dir


def test_labels_are_fixed() -> None:
    assert synth.LABELS == (
        "_silence_", "_unknown_", "yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go",
    )
    assert not set(synth.UNKNOWN_WORDS) & set(synth.KEYWORDS)


def test_synth_splits_are_disjoint_by_voice(tiny_dataset: Path) -> None:
    index = json.loads((tiny_dataset / "index.json").read_text())
    assert index["labels"] == list(synth.LABELS)
    splits = index["splits"]
    assert set(splits) == {"train", "validation", "test"}
    for first, second in (("train", "validation"), ("train", "test"), ("validation", "test")):
        assert not set(splits[first]["voices_used"]) & set(splits[second]["voices_used"])
        assert not set(splits[first]["languages"]) & set(splits[second]["languages"])
        assert not set(splits[first]["variants"]) & set(splits[second]["variants"])
    expected_per_class = {"train": 3, "validation": 1, "test": 1}
    for split, per_class in expected_per_class.items():
        data = synth.load_split(tiny_dataset, split)
        assert data["audio"].dtype == np.int16
        assert data["audio"].shape == (12 * per_class, synth.CLIP_SAMPLES)
        assert np.bincount(data["labels"], minlength=12).tolist() == [per_class] * 12
        for voice in data["voices"]:
            if voice:
                language, variant = str(voice).split("+")
                assert language in splits[split]["languages"] and variant in splits[split]["variants"]
        is_silence = data["labels"] == 0
        assert np.all(data["speech_start"][is_silence] == -1)
        assert np.all(data["speech_end"][~is_silence] > data["speech_start"][~is_silence])
        keyword_words = data["words"][data["labels"] >= 2]
        keyword_labels = [synth.LABELS[i] for i in data["labels"][data["labels"] >= 2]]
        assert keyword_words.tolist() == keyword_labels
        # Speech clips carry energy inside the recorded speech bounds.
        for clip, start, end in zip(data["audio"][~is_silence], data["speech_start"][~is_silence],
                                    data["speech_end"][~is_silence]):
            assert np.abs(clip[start:end].astype(np.float64)).max() > 100


def test_shipped_model_rebuilds_from_config_and_weights() -> None:
    model, config = load_shipped_model()
    assert MIN_PARAMETERS <= count_parameters(model) <= MAX_PARAMETERS
    assert config["labels"] == list(synth.LABELS)
    frontend = LogMelFrontend(LogMelConfig.from_dict(config["frontend"]))
    rebuilt = build_model(config)
    state_dict = torch.load(shipped_model_dir() / "float.pt", map_location="cpu", weights_only=True)
    rebuilt.load_state_dict(state_dict)
    assert torch.any(rebuilt.normalize.std != 1.0), "normalization statistics must come from training data"

    with np.load(shipped_model_dir() / "eval_clips.npz") as eval_clips:
        audio, labels = eval_clips["audio"], eval_clips["labels"]
        assert eval_clips["label_names"].tolist() == list(synth.LABELS)
    assert audio.dtype == np.int16 and set(labels.tolist()) == set(range(12))
    features = torch.from_numpy(np.stack([frontend.compute(clip) for clip in audio]))
    with torch.no_grad():
        logits = model(features)
        assert logits.shape == (audio.shape[0], features.shape[1], 12)
        # Streaming with carried state equals the whole-sequence run.
        h, c = model.initial_state(1)
        chunks = []
        for start in range(0, features.shape[1], 10):
            chunk_logits, h, c = model.forward_with_state(features[:1, start : start + 10], h, c)
            chunks.append(chunk_logits)
        torch.testing.assert_close(torch.cat(chunks, dim=1), logits[:1], rtol=0, atol=1e-5)
    predictions = np.array([clip_prediction(clip_logits, config["clip_rule"]) for clip_logits in logits])
    assert np.mean(predictions == labels) >= MIN_EVAL_CLIP_ACCURACY


def test_clip_prediction_rule() -> None:
    silent = np.zeros((98, 12))
    silent[:, 0] = 5.0
    assert clip_prediction(silent) == 0
    keyword = silent.copy()
    keyword[60:90, 0] = 0.0
    keyword[60:90, 4] = 6.0
    assert clip_prediction(keyword) == 4
    short_blip = silent.copy()
    short_blip[60:63, 0] = 0.0
    short_blip[60:63, 7] = 6.0
    assert clip_prediction(short_blip) == 0
    with pytest.raises(ValueError, match="expected"):
        clip_prediction(np.zeros((0, 12)))
