"""The broader training text of the language model: markup reduced to its words, split by source file, licences
recorded, the held-out Debian manuals never among the sources."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from lstm_edge.recipes.text import sources
from lstm_edge.recipes.text.corpus import CorpusError


def test_pod_keeps_the_words_of_commands_and_formatting_codes():
    raw = "=head1 NAME\n\nperlfoo - B<bold> and C<code> with L<perlsyn|perlsyn/Loops>\n\n=begin html\n<p>x</p>\n" \
          "=end html\n\n=cut\n"
    text = sources._pod(raw)
    assert "NAME" in text and "bold and code with perlsyn" in text
    assert "<p>" not in text and "=head1" not in text and "=cut" not in text


def test_rest_drops_directives_and_keeps_role_text():
    raw = "Title\n=====\n\n.. note::\n   :noindex:\n\nCall :func:`os.path.join <join>` or ``len`` and " \
          "`Python <https://x>`_.\n"
    text = sources._rest(raw)
    assert "=====" not in text and ".. note" not in text and ":noindex:" not in text
    assert "Call os.path.join or len and Python." in text


def test_asciidoc_drops_rulers_and_anchors_and_keeps_link_text():
    raw = "git-log(1)\n==========\n\n[[sec]]\nSee linkgit:git-commit[1] and <<refs,the refs>>.\n----\ncode\n----\n"
    text = sources._asciidoc(raw)
    assert "==" not in text and "[[sec]]" not in text and "----" not in text
    assert "See git-commit(1) and the refs." in text


def test_info_nodes_lose_headers_and_tag_tables(tmp_path):
    path = tmp_path / "manual.info.gz"
    path.write_bytes(gzip.compress(b"\x1f\nFile: manual.info,  Node: Top\n\nHello reader.\n* Menu:\n\x1f\n"
                                   b"Tag Table:\nNode: Top\x7f12\n\x1f\nEnd Tag Table\n"))
    nodes = sources._info_nodes(path)
    assert [text.strip() for _, text in nodes if text.strip()] == ["Hello reader."]


def test_a_missing_package_is_named(tmp_path):
    missing = sources.Source("x", "some-doc", "GPL-2", tmp_path / "nowhere", "*.txt", sources._whole(str))
    with pytest.raises(CorpusError, match="apt-get install -y some-doc"):
        list(sources.source_documents(missing))


def test_the_split_is_by_file_and_capped(tmp_path, monkeypatch):
    for i in range(40):
        (tmp_path / f"doc{i:02d}.txt").write_text(f"Document number {i} is plain prose about topic {i}.\n" * 20)
    source = sources.Source("toy", "toy-doc", "public domain", tmp_path, "*.txt", sources._whole(str))
    monkeypatch.setattr(sources, "SOURCES", (source,))
    monkeypatch.setattr(sources, "MAX_TRAIN_CHARS", 25 * 1000)
    splits = sources.broad_splits(fraction=0.1)
    train, validation = splits["train"]["toy"], splits["validation"]["toy"]
    assert validation and train
    assert not set(train) & set(validation)  # a file is in one split only
    assert 25_000 <= sum(map(len, train)) < 25_000 + 1100  # the cap stops after the file that crosses it
    assert sum(map(len, validation)) >= 0.1 * sum(len(p.read_text().strip()) for p in tmp_path.iterdir()) - 1100
    assert splits == sources.broad_splits(fraction=0.1)  # seeded


def test_licences_are_recorded_and_the_held_out_manuals_are_not_sources():
    recorded = sources.licences()
    assert {entry["source"] for entry in recorded} == {s.name for s in sources.SOURCES}
    assert all(entry["licence"] for entry in recorded)
    held_out = ("debian-reference", "debian-faq", "debian-handbook")
    for source in sources.SOURCES:
        assert source.package not in held_out and not any(h in str(source.root) for h in held_out)
        assert not str(source.root).startswith("/usr/share/doc/debian")


def test_continuing_from_a_model_of_another_shape_is_refused(tmp_path):
    from lstm_edge.recipes.text.model import build_model, save_model
    from lstm_edge.recipes.text.train_lm import LmTrainConfig, train_language_model

    small = {"vocab_size": 97, "n_out": 97, "embed_size": 8, "hidden_size": 16, "num_layers": 1, "dropout": 0.0,
             "task": "language_model"}
    save_model(build_model(small), small, tmp_path / "small")
    config = LmTrainConfig(embed_size=8, hidden_size=24, max_minutes=0.01)
    with pytest.raises(ValueError, match="a model of another shape"):
        train_language_model(["hello world"] * 50, "hello", config, tmp_path / "out", init=tmp_path / "small")


def test_continuing_from_a_trained_model_starts_where_it_stopped(tmp_path):
    from lstm_edge.recipes.text.corpus import tokenizer
    from lstm_edge.recipes.text.model import build_model, load_model, save_model
    from lstm_edge.recipes.text.train_lm import LmTrainConfig, bits_per_char_torch, train_language_model

    shape = {"vocab_size": 97, "n_out": 97, "embed_size": 8, "hidden_size": 16, "num_layers": 1, "dropout": 0.0,
             "task": "language_model"}
    text = "the cat sat on the mat. " * 40
    config = LmTrainConfig(embed_size=8, hidden_size=16, dropout=0.0, batch_size=4, window=16, max_minutes=0.05,
                           eval_every_steps=10, eval_streams=2)
    train_language_model([text] * 4, text, config, tmp_path / "first", log=lambda _: None)
    first, _ = load_model(tmp_path / "first")
    start_bpc = bits_per_char_torch(first, tokenizer().encode(text), 2)
    untrained = build_model(shape)
    assert bits_per_char_torch(untrained, tokenizer().encode(text), 2) > start_bpc
    save_model(first, shape, tmp_path / "init")
    report = train_language_model([text] * 4, text, config, tmp_path / "second", log=lambda _: None,
                                  init=tmp_path / "init")
    assert report["history"][0]["val_bpc"] < bits_per_char_torch(untrained, tokenizer().encode(text), 2)
    assert Path(tmp_path / "second" / "float.pt").is_file()
