"""Quick checks of the KWS recipe: voice-disjoint synthetic splits, and the shipped model's contract."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from lstm_edge.recipes.kws import detection, evaluate, synth, train
from lstm_edge.recipes.kws.model import (
    build_model,
    count_parameters,
    load_shipped_model,
    shipped_model_dir,
)
from lstm_edge.runtime.frontend import LogMelConfig, LogMelFrontend
from lstm_edge.runtime.kws import clip_prediction

MIN_PARAMETERS, MAX_PARAMETERS = 100_000, 300_000
# The shipped model must stay clearly better than chance (1/12) on its own test-voice evaluation clips (held-out
# espeak-ng voices and the held-out flite voice, microphone augmentation, half of the keywords spoken inside phrases;
# 57.5% measured, README "Keyword spotting").
MIN_EVAL_CLIP_ACCURACY = 0.5


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out_dir = tmp_path_factory.mktemp("kws_tiny")
    config = synth.SynthConfig(train_per_class=3, eval_per_class=2, seed=5, workers=2, stream_negative_minutes=0.3,
                               stream_keywords_per_label=1, stream_segment_seconds=10.0, festival_share=0.4,
                               context_share=0.5, held_out_streams=True)
    synth.generate_dataset(out_dir, config)
    return out_dir


def test_labels_are_fixed() -> None:
    assert synth.LABELS == (
        "_silence_", "_unknown_", "yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go",
    )
    assert not set(synth.UNKNOWN_WORDS) & set(synth.KEYWORDS)


def _phonemes(word: str, voice: str) -> str:
    result = subprocess.run(["espeak-ng", "-q", "-x", "-v", voice, word], capture_output=True, text=True, check=True)
    return result.stdout.strip()


@pytest.mark.parametrize("voice", ["en-us", "en-gb-x-rp"])
def test_no_unknown_word_is_a_homophone_of_a_keyword(voice: str) -> None:
    keyword_phonemes = {_phonemes(word, voice): word for word in synth.KEYWORDS}
    clashes = {word: keyword_phonemes[p] for word in synth.UNKNOWN_WORDS
               if (p := _phonemes(word, voice)) in keyword_phonemes}
    assert clashes == {}
    # The check itself can fail: a known homophone pair is caught.
    assert _phonemes("know", voice) == _phonemes("no", voice)


def test_synth_splits_are_disjoint_by_voice(tiny_dataset: Path) -> None:
    index = json.loads((tiny_dataset / "index.json").read_text())
    assert index["labels"] == list(synth.LABELS)
    splits = index["splits"]
    assert set(splits) == {"train", "validation", "test"}
    for first, second in (("train", "validation"), ("train", "test"), ("validation", "test")):
        assert not set(splits[first]["voices_used"]) & set(splits[second]["voices_used"])
        assert not set(splits[first]["languages"]) & set(splits[second]["languages"])
        assert not set(splits[first]["variants"]) & set(splits[second]["variants"])
        assert not set(splits[first]["flite_voices"]) & set(splits[second]["flite_voices"])
    assert splits["test"]["flite_voices"] == ["slt"] and splits["validation"]["flite_voices"] == ["rms"]
    assert splits["train"]["festival_voices"] and not splits["validation"]["festival_voices"] + splits["test"][
        "festival_voices"]
    assert any(v.startswith("festival:") for v in splits["train"]["voices_used"])
    # Train: 2x single-word and 2x sentence negatives in _unknown_; validation and test balanced (half sentences).
    expected_counts = {"train": [3, 12] + [3] * 10, "validation": [2] * 12, "test": [2] * 12}
    for split, counts in expected_counts.items():
        data = synth.load_split(tiny_dataset, split, synth.LABELS)
        assert data["audio"].dtype == np.int16
        assert data["audio"].shape == (sum(counts), synth.CLIP_SAMPLES)
        assert np.bincount(data["labels"], minlength=12).tolist() == counts
        unknown = data["labels"] == 1
        assert set(data["kinds"][unknown].tolist()) == {"word", "sentence"}
        assert set(data["kinds"][data["labels"] >= 2].tolist()) == {"keyword", "context"}  # 1 alone, 2 in phrases
        for voice in data["voices"]:
            if str(voice).startswith("flite:"):
                assert str(voice)[6:] in splits[split]["flite_voices"]
            elif str(voice).startswith("festival:"):  # a training-only synthesiser
                assert split == "train" and str(voice)[9:] in synth.FESTIVAL_VOICES["train"]
            elif voice:
                language, variant = str(voice).split("+")
                assert language in splits[split]["languages"] and variant in splits[split]["variants"]
        is_silence = data["labels"] == 0
        assert np.all(data["speech_start"][is_silence] == -1)
        assert np.all(data["speech_end"][~is_silence] > data["speech_start"][~is_silence])
        alone = data["kinds"] == "keyword"
        assert data["words"][alone].tolist() == [synth.LABELS[i] for i in data["labels"][alone]]
        in_phrase = data["kinds"] == "context"
        for words, label, start, end, context_start, context_end in zip(
                data["words"][in_phrase], data["labels"][in_phrase], data["speech_start"][in_phrase],
                data["speech_end"][in_phrase], data["context_start"][in_phrase], data["context_end"][in_phrase]):
            assert synth.LABELS[label] in str(words).split() and len(str(words).split()) >= 2
            assert 0 <= context_start <= start < end <= context_end <= synth.CLIP_SAMPLES
        assert np.all(data["context_start"][~in_phrase] == -1)
        # Speech clips carry energy inside the recorded speech bounds.
        for clip, start, end in zip(data["audio"][~is_silence], data["speech_start"][~is_silence],
                                    data["speech_end"][~is_silence]):
            assert np.abs(clip[start:end].astype(np.float64)).max() > 100


def test_festival_voices_change_training_only() -> None:
    """Adding Festival voices to training leaves the held-out plans (voices, texts, prosody, effects) as they were,
    so numbers measured before and after stay comparable; every listed Festival voice speaks."""
    sentences = ["the quick brown fox", "a day in the life"]
    plans = {}
    for share in (0.0, 0.5):
        config = synth.SynthConfig(train_per_class=4, eval_per_class=4, festival_share=share)
        plans[share] = {split: synth.plan_split(split, config, sentences, np.random.default_rng(1))
                        for split in synth.SPLITS}
    for split in ("validation", "test"):
        assert plans[0.0][split] == plans[0.5][split]
    engines = {job.engine for _, _, job in plans[0.5]["train"] if job is not None}
    assert engines == {"espeak", "flite", "festival"} and plans[0.0]["train"] != plans[0.5]["train"]
    from lstm_edge.recipes.asr.synth import Request, synthesize

    for voice in synth.FESTIVAL_VOICES["train"]:
        speech = synthesize(Request("festival", voice, "stop", 1.0, 1.0))
        assert 0.15 * synth.SAMPLE_RATE < speech.size < 2 * synth.SAMPLE_RATE and np.abs(speech).max() > 0.05
    with pytest.raises(synth.SynthError, match="festival"):
        synthesize(Request("festival", "no_such_voice", "stop", 1.0, 1.0))
    # a clip whose Festival call fails keeps its text and label: a flite training voice speaks it
    fallback = synth.render(synth.Job("festival", "no_such_voice", "stop", 1.0, 1.0))
    np.testing.assert_array_equal(fallback, synthesize(Request("flite", synth.FLITE_VOICES["train"][0], "stop", 1.0,
                                                               1.0)))


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


def test_cosine_schedule_warms_up_anneals_and_can_be_shortened() -> None:
    config = train.TrainConfig(learning_rate=1e-2, min_learning_rate=1e-4, warmup_epochs=1.0, lr_schedule="cosine")
    schedule = train.CosineSchedule(config, total_steps=100, steps_per_epoch=10)
    assert schedule(0) == pytest.approx(0.1)
    assert schedule(9) == pytest.approx(1.0)
    assert schedule(10) == pytest.approx(1.0)
    assert schedule(55) == pytest.approx(0.01 + 0.99 * 0.5)
    assert schedule(100) == pytest.approx(0.01) and schedule(500) == pytest.approx(0.01)
    schedule.total_steps = 50
    assert schedule(50) == pytest.approx(0.01)
    assert 0.01 < schedule(30) < 1.0


def test_training_on_the_tiny_set_lowers_the_loss_and_streams(tiny_dataset: Path) -> None:
    torch.manual_seed(0)
    frontend = LogMelFrontend(LogMelConfig())
    splits = {name: train.cached_features(tiny_dataset, name, frontend) for name in ("train", "validation")}
    assert splits["train"]["features"].shape[1:] == (98, 40)
    model = build_model({"architecture": {"n_mels": 40, "input_size": 16, "hidden_size": 16, "num_layers": 1,
                                          "n_labels": 12}})
    config = train.TrainConfig(max_epochs=6, patience=100, batch_size=2, clips_per_sequence=2, learning_rate=1e-2,
                               lr_schedule="cosine", max_train_minutes=60.0)  # 6 epochs on a busy machine too
    best_state, history = train.train(model, splits["train"], splits["validation"], config, hop_length=160)
    assert len(history) == 6
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["learning_rate"] < history[0]["learning_rate"]
    assert set(best_state) == set(model.state_dict())
    # The validation metrics are real accuracies over the 24 validation clips.
    for entry in history:
        accuracy = entry["validation"]["clip_accuracy"]
        assert 0.0 <= accuracy <= 1.0 and float(accuracy * 24).is_integer()

    # The clip rule is chosen on validation: the best row of the grid, ties going to the rule nearest the default.
    model.load_state_dict(best_state)
    rule, rows = train.tune_clip_rule(model, splits["validation"])
    assert len(rows) == len(train.CLIP_RULE_GRID["window_frames"]) * len(train.CLIP_RULE_GRID["min_speech_probability"])
    best = max(row["validation_clip_accuracy"] for row in rows)
    tied = [row["rule"] for row in rows if row["validation_clip_accuracy"] == best]
    assert rule in tied

    def distance(r: dict) -> tuple:
        return (abs(r["window_frames"] - 25), abs(r["min_speech_probability"] - 0.5))

    assert distance(rule) == min(distance(r) for r in tied)
    assert train.evaluate(model, splits["validation"], 2, seed=0, clip_rule=rule)["clip_accuracy"] == best


def test_evaluate_runs_the_deployed_files_and_matches_torch(tiny_dataset: Path) -> None:
    report = evaluate.evaluate(tiny_dataset, shipped_model_dir() / "export", split="test")
    assert report["clips"] == 24 and report["voices"] >= 1
    assert set(report["results"]) == {"onnx/float", "onnx/int8", "litert/float", "litert/int8"}
    model, config = load_shipped_model()
    frontend = LogMelFrontend(LogMelConfig.from_dict(config["frontend"]))
    data = synth.load_split(tiny_dataset, "test")
    with torch.no_grad():
        logits = model(torch.from_numpy(np.stack([frontend.compute(clip) for clip in data["audio"]])))
    torch_accuracy = np.mean([clip_prediction(c, config["clip_rule"]) == y for c, y in zip(logits, data["labels"])])
    assert report["results"]["onnx/float"]["accuracy"] == pytest.approx(torch_accuracy)
    assert report["results"]["litert/float"]["accuracy"] == pytest.approx(torch_accuracy)
    for row in report["results"].values():
        assert float(row["accuracy"] * 24).is_integer()
        assert row["drop_vs_onnx_float_points"] == pytest.approx(
            100 * (report["results"]["onnx/float"]["accuracy"] - row["accuracy"]))


def test_held_out_streams_hold_their_keywords_and_only_their_voices(tiny_dataset: Path) -> None:
    index = json.loads((tiny_dataset / "index.json").read_text())
    assert set(index["streams"]) == {"validation", "test"}
    for split in ("validation", "test"):
        streams = synth.load_streams(tiny_dataset, split)
        info = index["splits"][split]
        for voice in streams["utterance_voices"]:
            voice = str(voice)
            if split == "test":  # the held-out voices only (MBROLA, CMU SLT)
                assert voice in synth.voices.HELD_OUT_TEST_VOICES
            elif voice.startswith("flite:"):
                assert voice[6:] in info["flite_voices"]
            else:
                language, variant = voice.split("+")
                assert language in info["languages"] and variant in info["variants"]
        kinds, offsets = streams["stream_kinds"], streams["offsets"]
        assert set(kinds.tolist()) == set(synth.STREAM_KINDS)
        assert np.sum(np.diff(offsets)[kinds == "negative"]) / synth.SAMPLE_RATE >= 0.3 * 60 * 0.8
        # each keyword once in a phrase and once said apart
        assert sorted(streams["event_label"].tolist()) == sorted(list(range(2, 12)) * 2)
        for number, label, start, end in zip(streams["event_stream"], streams["event_label"],
                                             streams["event_start"], streams["event_end"]):
            assert kinds[number] in ("phrase", "apart") and 2 <= label < 12
            audio = streams["audio"][offsets[number]:offsets[number + 1]]
            assert 0 <= start < end <= audio.size
            assert np.abs(audio[start:end].astype(np.float64)).max() > 100


def test_detection_chooses_the_threshold_on_validation_only(tiny_dataset: Path, tmp_path: Path) -> None:
    shutil.copytree(shipped_model_dir(), tmp_path / "model", ignore=shutil.ignore_patterns("export"))
    report = detection.tune_on_validation(tiny_dataset, tmp_path / "model", max_false_alarms_per_hour=1.0)
    assert report["split"] == "validation" and len(report["sweep"]) == len(detection.THRESHOLDS)
    within = [row for row in report["sweep"] if row["false_alarms_per_hour"] <= 1.0]
    assert report["chosen"] in within or (not within and report["chosen"]["threshold"] == max(detection.THRESHOLDS))
    written = json.loads((tmp_path / "model" / "config.json").read_text())["detector"]
    assert written["threshold"] == report["chosen"]["threshold"] == report["detector"]["threshold"]
    both = detection.tune_on_validation(tiny_dataset, tmp_path / "model", max_false_alarms_per_hour=1.0,
                                        smoothing_candidates=(8, 24))
    rows = both["smoothing_choice"]
    assert set(rows) == {"8", "24"}
    chosen = rows[str(both["detector"]["smoothing_frames"])]

    def rank(row: dict) -> tuple:
        return row["false_alarms_per_hour"] <= 1.0, row["recall"], -row["false_alarms_per_hour"]

    assert rank(chosen) == max(rank(row) for row in rows.values())
    assert chosen["threshold"] == both["detector"]["threshold"]
