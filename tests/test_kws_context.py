"""Keywords in context: phrases around a keyword, the located keyword end, context clips and their targets, and the
checks on user phrases that run before any work."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from lstm_edge.recipes.kws import context, synth, train
from lstm_edge.recipes.speech.synthesis import Request, synthesize


def test_phrases_put_the_keyword_where_asked() -> None:
    rng = np.random.default_rng(0)
    sentence = "the quick brown fox jumps over a lazy dog"
    start = context.sentence_phrase("yes", sentence, "start", rng)
    end = context.sentence_phrase("yes", sentence, "end", rng)
    middle = context.sentence_phrase("yes", sentence, "middle", rng)
    assert start.before == "" and start.after and start.text.startswith("yes ")
    assert end.after == "" and end.before and end.text.endswith(" yes")
    assert middle.before and middle.after and " yes " in middle.text
    assert middle.through == f"{middle.before} yes"
    carried = context.template_phrase("go", "say {k} now")
    assert (carried.before, carried.after, carried.text) == ("say", "now", "say go now")
    assert all(template.count("{k}") == 1 for split in synth.SPLITS for template in context.TEMPLATES[split])


def test_templates_never_speak_another_keyword_and_splits_have_their_own() -> None:
    excluded = synth.excluded_words(synth.KEYWORDS)
    rng = np.random.default_rng(1)
    for split in synth.SPLITS:
        for _ in range(200):
            phrase = context.sample_phrase("stop", split, [], rng, excluded)
            assert not set((phrase.before + " " + phrase.after).split()) & excluded
    train_templates = set(context.TEMPLATES["train"])
    assert not train_templates & set(context.TEMPLATES["validation"])
    assert not train_templates & set(context.TEMPLATES["test"])
    assert not set(context.TEMPLATES["validation"]) & set(context.TEMPLATES["test"])


@pytest.mark.parametrize(("engine", "voice", "rate", "pitch"), [("espeak", "en-us", 160.0, 50.0),
                                                                 ("flite", "kal", 1.0, 1.0)])
def test_alignment_finds_where_a_prefix_ends(engine: str, voice: str, rate: float, pitch: float) -> None:
    """Two words spoken apart and joined with a pause: the first one's end is known exactly."""
    first = synthesize(Request(engine, voice, "say yes", rate, pitch))
    second = synthesize(Request(engine, voice, "window", rate, pitch))
    noise = np.random.default_rng(2).normal(0, 1e-3, 4800).astype(np.float32)
    joined = np.concatenate([first, noise, second])
    assert abs(context.aligned_end(first, joined) - first.size) <= 320  # two frames
    assert context.aligned_end(joined, joined) >= joined.size - 320


def test_a_spoken_phrase_locates_its_keyword_inside_the_speech() -> None:
    phrase = context.template_phrase("stop", "we need {k} here")
    speech, start, end = context.render_phrase(Request("espeak", "en-us", "", 160.0, 50.0), phrase)
    alone = synthesize(Request("espeak", "en-us", "stop", 160.0, 50.0))
    assert 0 < start < end < speech.size - 1600  # "here" follows
    assert 0.4 * alone.size < end - start < 1.6 * alone.size
    with pytest.raises(synth.SynthError, match="at least 800 samples"):
        context.locate(speech, speech, speech[:100])


def test_a_context_window_holds_the_keyword_and_time_after_it() -> None:
    rng = np.random.default_rng(3)
    for _ in range(200):
        start = int(rng.integers(0, 30000))
        end = start + int(rng.integers(2000, 9000))
        offset = synth.context_window((start, end), rng)
        assert offset <= start and end + 0.1 * synth.SAMPLE_RATE <= offset + synth.CLIP_SAMPLES
        assert offset >= -0.3 * synth.SAMPLE_RATE
    long_keyword = synth.context_window((1000, 1000 + 18000), rng)  # 1.1 s: its end kept
    assert long_keyword + synth.CLIP_SAMPLES == 1000 + 18000 + synth.SAMPLE_RATE // 10


def test_context_clip_targets_unknown_around_the_keyword_and_the_label_at_its_end() -> None:
    config = train.TrainConfig(lead_frames=10, hold_frames=25)
    hop = 160
    labels = np.array([5])  # "down"
    targets = train.stream_targets(labels, np.array([40 * hop]), np.array([70 * hop]), 100, config, hop,
                                   np.array([10 * hop]), np.array([98 * hop]))
    assert np.all(targets[:10] == train.SILENCE_INDEX)
    assert np.all(targets[10:40] == train.UNKNOWN_INDEX)  # words before the keyword
    assert np.all(targets[40:60] == train.IGNORE_TARGET)  # the keyword before lead_frames from its end
    assert np.all(targets[60:95] == 5)  # from lead_frames before the end to hold_frames after it
    assert np.all(targets[95:98] == train.UNKNOWN_INDEX) and np.all(targets[98:] == train.SILENCE_INDEX)


def test_user_phrases_are_checked_before_any_work() -> None:
    assert synth.normalize_keywords(["Hey  Pi", "lights on"]) == ("hey pi", "lights on")
    for phrases, message in (([], "at least one"), (["yes", "  "], "keyword 2"), (["héllo"], "letters a-z"),
                             (["one two three four five"], "at most 4 words"), (["x" * 40], "32 characters"),
                             (["Open Sesame", "open  sesame"], "duplicate of keyword 1")):
        with pytest.raises(synth.KeywordError, match=message):
            synth.normalize_keywords(phrases)


@pytest.mark.parametrize(("phrases", "message"), [(["hey pi", "HEY PI"], "duplicate"), (["ok", ""], "empty"),
                                                  (["привет"], "letters a-z")])
def test_kws_train_refuses_bad_phrases_in_one_line(phrases: list[str], message: str, tmp_path) -> None:
    result = subprocess.run([sys.executable, "-m", "lstm_edge.cli", "kws-train", "--keywords", *phrases, "-o",
                             str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and result.stdout == ""
    assert not (tmp_path / "out").exists()


def test_int8_off_its_gate_leaves_the_float_model_shipped(tmp_path) -> None:
    import shutil

    from lstm_edge.commands.kws_train import keep_passing_precisions
    from lstm_edge.recipes.kws.model import shipped_model_dir
    from lstm_edge.runtime.errors import ModelFileError
    from lstm_edge.runtime.manifest import Manifest
    from lstm_edge.runtime.model import StreamingModel

    out = tmp_path / "model"
    shutil.copytree(shipped_model_dir() / "export", out)
    before = Manifest.load(out)
    assert {f.precision for f in before.files} == {"float", "int8"}
    mixed = ["onnx/float: max abs diff vs torch 1 > 0.001", "onnx/int8: argmax agreement with torch 97.94% < 98.00%"]
    assert keep_passing_precisions(out, mixed) == (mixed, [])  # a float fault is not hidden
    assert Manifest.load(out).files == before.files
    failures, notes = keep_passing_precisions(out, mixed[1:])
    assert failures == [] and "float files only" in notes[0] and "97.94%" in notes[0]
    after = Manifest.load(out)
    assert after.files and {f.precision for f in after.files} == {"float"}
    for entry in before.files:
        assert (out / entry.path).exists() == (entry.precision == "float")
        if entry.batch_file is not None:  # the shipped TFLite files' batch companions go with their file
            assert (out / entry.batch_file.path).exists() == (entry.precision == "float")
    with pytest.raises(ModelFileError, match="int8"):
        StreamingModel.load(out, backend="onnx", precision="int8")
    stream = StreamingModel.load(out, backend="onnx", precision="float").create_stream()
    assert stream.push(np.zeros((10, 40), dtype=np.float32)).shape == (10, 12)
