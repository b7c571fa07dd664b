"""The adaptive part of TextModel (runtime/adaptive.py, docs/manifest.md "Text models"): its counts follow the
specified hashing, it learns the text it reads, it is part of the stream (reset, snapshot/restore) and bounded."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from lstm_edge.runtime.adaptive import AdaptiveMixer, AdaptiveSettings
from lstm_edge.runtime.errors import InputError, ManifestError
from lstm_edge.runtime.model import StreamingModel
from lstm_edge.runtime.text import TextModel

LM_DIR = Path(__file__).resolve().parents[1] / "models" / "text" / "lm" / "export"
PARAGRAPH = ("The frobnicator daemon reads /etc/frobnicate.conf at start-up; send it SIGHUP to make the "
             "frobnicator reread /etc/frobnicate.conf without a restart. ")


@pytest.fixture(scope="module")
def lm() -> StreamingModel:
    return StreamingModel.load(LM_DIR, backend="onnx")


def spec_slot(history: list[int], order: int, token: int, bits: int) -> tuple[int, int]:
    """Slot and check of ``token`` after ``history`` at ``order``, written from the spec's formulas alone."""
    value = 0
    for k in range(1, order + 1):
        t = history[-k] + 1
        value = (t * 2654435761) % 2**32 if k == 1 else ((value ^ t) * 2654435761 + k) % 2**32
    key = ((value ^ ((token + 1) * 2654435769 % 2**32)) * 2246822507) % 2**32
    return key >> (32 - bits), ((key * 3266489909) % 2**32) >> 24


def test_counts_land_where_the_spec_says():
    settings = AdaptiveSettings(max_order=3, table_bits=12, learning_rate=0.02)
    mixer = AdaptiveMixer(20, settings)
    tokens = [3, 7, 7, 1, 3, 7, 7, 2, 3, 7]
    for token in tokens:
        mixer.read(np.log(np.full(20, 1 / 20)), token)
    expected = [np.zeros(1 << 12, np.uint16) for _ in range(3)]
    for t, token in enumerate(tokens):
        for order in range(1, min(3, t) + 1):
            slot, check = spec_slot(tokens[:t], order, token, 12)
            assert mixer.checks[order - 1][slot] == check
            expected[order - 1][slot] += 1
    for order in range(3):
        np.testing.assert_array_equal(mixer.tables[order], expected[order])
    np.testing.assert_array_equal(mixer.order0[[3, 7, 1, 2]], [3, 5, 1, 1])
    q = mixer.adaptive()
    assert q.sum() == pytest.approx(1.0) and q.argmax() == 7  # "3 7" was followed by 7 both times
    assert mixer.history == tokens[-3:]


def test_it_learns_the_text_it_reads_and_beats_the_fixed_model(lm):
    text = PARAGRAPH * 6
    fixed, adaptive = TextModel(lm, adaptive=False), TextModel(lm, adaptive=True)
    assert adaptive.score(text) < 0.6 * fixed.score(text)
    adaptive.feed(PARAGRAPH * 2 + "The frobnicator daemon reads /etc/frob")
    fixed.feed(PARAGRAPH * 2 + "The frobnicator daemon reads /etc/frob")
    assert adaptive.suggest(1)[0].word == "frobnicate"
    assert adaptive.next_distribution().sum() == pytest.approx(1.0)
    assert adaptive.generate(12) == "nicate.conf "


def test_reset_snapshot_and_restore(lm):
    one, two = TextModel(lm, adaptive=True), TextModel(lm, adaptive=True)
    one.feed(PARAGRAPH)
    saved = one.snapshot()
    one.feed("The frobni")
    two.restore(saved)
    two.feed("The frobni")
    np.testing.assert_array_equal(one.next_distribution(), two.next_distribution())
    assert [s.word for s in one.suggest(3)] == [s.word for s in two.suggest(3)]
    one.reset()
    fresh = TextModel(lm, adaptive=True)
    np.testing.assert_array_equal(one.next_distribution(), fresh.next_distribution())
    bad = dict(saved, adaptive={**saved["adaptive"], "tables": saved["adaptive"]["tables"][:, :10]})
    with pytest.raises(InputError, match="adaptive state 'tables'"):
        two.restore(bad)
    with pytest.raises(InputError, match="the other kind"):
        TextModel(lm, adaptive=False).restore(saved)


def test_memory_is_bounded_and_stated():
    settings = AdaptiveSettings()
    mixer = AdaptiveMixer(97, settings)
    assert settings.memory_bytes == mixer.tables.nbytes + mixer.checks.nbytes <= 8 * 2**20


def test_the_manifest_switch(lm, tmp_path):
    folder = shutil.copytree(LM_DIR, tmp_path / "lm")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["extra"]["text"]["adaptive"] = {"type": "context_mixing", "max_order": 3, "table_bits": 16,
                                             "learning_rate": 0.01}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    text = TextModel(StreamingModel.load(folder, backend="onnx"))
    assert text.adaptive == AdaptiveSettings(3, 16, 0.01)
    assert TextModel(StreamingModel.load(folder, backend="onnx"), adaptive=False).adaptive is None
    manifest["extra"]["text"]["adaptive"]["max_order"] = 40
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ManifestError, match="max_order 0-16"):
        TextModel(StreamingModel.load(folder, backend="onnx"))
