"""Detection metrics of the keyword recipe (recall, false alarms per hour, the validation threshold) and its
negatives: sentences without keywords, near misses of custom phrases, the held-out streams."""

from __future__ import annotations

import numpy as np
import pytest

from lstm_edge.recipes.kws import detection, synth
from lstm_edge.runtime.frontend import LogMelConfig

LABELS = ["_silence_", "_unknown_", "yes", "no"]
HOP_S = 0.01


def _streams() -> dict[str, np.ndarray]:
    """Two 60 s streams: a negative one and a positive one with a "yes" at 10 s and a "no" at 30 s."""
    length = 60 * synth.SAMPLE_RATE
    return {"offsets": np.array([0, length, 2 * length]), "stream_kinds": np.array(["negative", "positive"]),
            "event_stream": np.array([1, 1]), "event_label": np.array([2, 3]),
            "event_start": np.array([10, 30]) * synth.SAMPLE_RATE,
            "event_end": np.array([10.5, 30.5]) * synth.SAMPLE_RATE, "utterance_voices": np.array(["flite:slt"])}


def _peak(posteriors: np.ndarray, at_s: float, label: int, height: float) -> None:
    frames = slice(int(at_s / HOP_S), int(at_s / HOP_S) + 30)
    posteriors[frames] = (1 - height) / 3
    posteriors[frames, label] = height


def test_recall_and_false_alarms_per_hour_over_thresholds() -> None:
    frames = int(60 / HOP_S)
    negative = np.tile([0.9, 0.1, 0.0, 0.0], (frames, 1))
    positive = negative.copy()
    _peak(negative, 20.0, 2, 0.75)  # a false alarm above 0.7 only
    _peak(positive, 10.3, 2, 0.99)  # the "yes" found at any threshold
    _peak(positive, 30.2, 2, 0.95)  # the "no" heard as "yes": a miss and a false alarm in the keyword stream
    _peak(positive, 45.0, 3, 0.5)  # a "no" where there is none
    rows = detection.sweep(_streams(), [negative, positive], LABELS, LogMelConfig().to_dict(),
                           detection.DetectorConfig(), thresholds=(0.4, 0.7, 0.8, 0.96))
    by_threshold = {row["threshold"]: row for row in rows}
    assert [row["recall"] for row in rows] == [0.5, 0.5, 0.5, 0.5]
    assert by_threshold[0.7]["false_alarms_per_hour"] == pytest.approx(60.0)  # 1 in one minute
    assert by_threshold[0.8]["false_alarms_per_hour"] == 0.0
    assert by_threshold[0.4]["false_alarms_in_keyword_streams_per_hour"] == pytest.approx(120.0)
    assert by_threshold[0.8]["false_alarms_in_keyword_streams_per_hour"] == pytest.approx(60.0)
    assert by_threshold[0.96]["false_alarms_in_keyword_streams_per_hour"] == 0.0
    assert by_threshold[0.4]["per_keyword_recall"] == {"yes": 1.0, "no": 0.0}
    assert by_threshold[0.4]["recall_by_kind"] == {"positive": 0.5}
    assert by_threshold[0.4]["events_by_kind"] == {"positive": 2}
    assert by_threshold[0.7]["false_alarms_by_label"] == {"yes": 2}
    # The lowest threshold within the budget wins (highest recall, then fewest alarms).
    assert detection.choose_threshold(rows, 1.0)["threshold"] == 0.8
    assert detection.choose_threshold(rows, 100.0)["threshold"] == 0.8  # equal recall: fewer alarms first
    rows[0]["recall"] = 0.75
    assert detection.choose_threshold(rows, 100.0)["threshold"] == 0.4
    assert detection.choose_threshold(rows[:2], 1.0)["threshold"] == 0.7  # none within: the strictest


def test_sentences_hold_no_keyword_nor_homophone() -> None:
    sentences = synth.sentences_by_split(synth.KEYWORDS)
    banned = set(synth.KEYWORDS) | {"know", "write", "rite", "wright"}
    for split, texts in sentences.items():
        assert len(texts) > 500, split
        for text in texts:
            assert not banned & set(text.split()), text
            assert 4 <= len(text.split()) <= 16
    custom = synth.sentences_by_split(("lights on",))
    assert all(" lights on " not in f" {t} " for t in custom["train"])
    assert any("on" in t.split() for t in custom["train"])  # single words of a phrase stay in the negatives


def test_custom_keywords_get_near_misses_but_never_themselves() -> None:
    words = synth.negative_words(("hey pi", "lights on"))
    assert {"hey", "pi", "lights", "on", "pi hey", "lights off"} <= set(words)
    assert "hey pi" not in words and "lights on" not in words
    assert synth.labels_for(("hey pi", "lights on")) == ("_silence_", "_unknown_", "hey pi", "lights on")
    with pytest.raises(ValueError, match="lowercase words"):
        synth.SynthConfig(keywords=("Hey  Pi",))


def test_sox_chain_band_limits_and_keeps_the_rate() -> None:
    rng = np.random.default_rng(0)
    tone = np.sin(2 * np.pi * np.arange(16000) * 6000 / 16000).astype(np.float32) * 0.5
    filtered = synth.apply_sox(tone, ("lowpass", "3000"))
    assert filtered.size == tone.size and np.abs(filtered[2000:]).max() < 0.1
    config = synth.SynthConfig()
    chains = [synth.sample_effects(config, rng) for _ in range(200)]
    assert any("reverb" in c for c in chains) and any("highpass" in c for c in chains) and () in chains
    for chain in chains[:20]:
        out = synth.apply_sox(tone, chain)
        assert 0.8 * tone.size < out.size < 1.5 * tone.size and np.all(np.isfinite(out))


@pytest.mark.parametrize("threshold", [0.3, 0.6, 0.9, 0.97])
def test_detections_run_only_where_one_can_open_equal_a_whole_stream_run(threshold: float) -> None:
    """The windowed detector run of the sweep gives the detections of one pass over the whole stream."""
    rng = np.random.default_rng(int(threshold * 100))
    frames = 30000  # 5 minutes
    logits = rng.normal(0.0, 1.0, (frames, 12))
    logits[:, 0] += 3.0
    for at in rng.integers(0, frames - 100, 120):  # keyword-like bursts, some close together
        logits[at:at + int(rng.integers(5, 80)), int(rng.integers(2, 12))] += rng.uniform(2.0, 9.0)
    posteriors = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    spotter = detection.KeywordSpotter(None, detection.DetectorConfig(threshold=threshold),
                                       labels=synth.LABELS, frontend=LogMelConfig().to_dict())
    stream = spotter.create_stream()
    whole = stream.push_posteriors(posteriors) + stream.flush()
    windowed = detection.stream_detections(spotter, posteriors)
    assert len(whole) > 3
    assert [(d.label, round(d.start, 6), round(d.end, 6), round(d.score, 9)) for d in windowed] == \
        [(d.label, round(d.start, 6), round(d.end, 6), round(d.score, 9)) for d in whole]
