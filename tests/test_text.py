"""Text models: tokenizer contract, TextModel streaming/suggest/generate/score against torch, CLI, bad input,
the bits-per-character parity gate, and a tiny training + export smoke run."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from lstm_edge.cli import main as cli_main
from lstm_edge.quantize.parity import parity_report
from lstm_edge.recipes.text import corpus
from lstm_edge.recipes.text.model import load_model
from lstm_edge.runtime.errors import ExportError, InputError, ManifestError
from lstm_edge.runtime.manifest import Manifest
from lstm_edge.runtime.model import StreamingModel
from lstm_edge.runtime.text import TextClassifier, TextModel, is_word_char
from lstm_edge.runtime.tokenizer import Tokenizer

MODELS = Path(__file__).resolve().parents[1] / "models" / "text"
LM_DIR = MODELS / "lm"
CLASSIFIER_DIR = MODELS / "classifier"
SAMPLE = ("A celebrity is a person who is known for his well-knownness.\n\n"
          "The first rule of intelligent tinkering is to save all the parts.\n-- Paul Erlich\n\n")


@pytest.fixture(scope="module")
def lm() -> StreamingModel:
    return StreamingModel.load(LM_DIR / "export", backend="onnx", precision="float")


@pytest.fixture(scope="module")
def torch_lm() -> torch.nn.Module:
    return load_model(LM_DIR)[0]


def torch_logits(model: torch.nn.Module, text: str) -> np.ndarray:
    """Next-character logits of the torch model after each character of start_text + text."""
    ids = corpus.tokenizer().encode(corpus.DOCUMENT_SEPARATOR + text)
    with torch.no_grad():
        return model(torch.from_numpy(ids)[None])[0].numpy()


# ------------------------------------------------------------------ tokenizer and manifest
def test_char_tokenizer_round_trip_and_unknown_characters() -> None:
    tok = corpus.tokenizer()
    ids = tok.encode(SAMPLE)
    assert ids.dtype == np.int64 and len(ids) == len(SAMPLE)
    assert tok.decode(ids) == SAMPLE
    odd = tok.encode("caf\u00e9 \u2603\t!")
    assert odd.tolist()[3] == tok.unknown_id and odd.tolist()[5] == tok.unknown_id
    assert odd.tolist()[6] == tok.unknown_id  # a tab is not in the vocabulary either
    assert tok.decode(odd) == "caf\ufffd \ufffd\ufffd!"


def test_bytes_tokenizer_round_trip() -> None:
    tok = Tokenizer.from_dict({"type": "bytes"})
    text = "na\u00efve \u2603"
    ids = tok.encode(text)
    assert ids.max() < 256 and len(ids) == len(text.encode("utf-8"))
    assert tok.decode(ids) == text


@pytest.mark.parametrize("bad", [{"type": "words"}, {"type": "chars", "vocab": ["a", "a"], "unknown_id": 0},
                                 {"type": "chars", "vocab": ["a", "b"], "unknown_id": 2},
                                 {"type": "chars", "vocab": ["ab"], "unknown_id": 0}, ["bytes"]])
def test_bad_tokenizer_entries_are_refused(bad) -> None:
    with pytest.raises(ManifestError):
        Tokenizer.from_dict(bad)


def test_manifest_carries_the_tokenizer() -> None:
    manifest = Manifest.load(LM_DIR / "export")
    assert manifest.tokenizer == corpus.tokenizer().to_dict()
    assert Manifest.from_dict(manifest.to_dict()).tokenizer == manifest.tokenizer
    data = manifest.to_dict()
    data["tokenizer"] = {"type": "chars", "vocab": ["a"], "unknown_id": 5}
    with pytest.raises(ManifestError, match="unknown_id"):
        Manifest.from_dict(data)


def test_corpus_split_is_by_source_file() -> None:
    splits = corpus.split_by_file()
    sets = [set(splits.files[name]) for name in ("train", "validation", "test")]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    assert all(splits.documents[name] for name in ("train", "validation", "test"))
    assert corpus.clean_document("\tSo \u201csmart\u201d  \u2014 caf\u00e9\t\n") == 'So "smart" -- cafe'
    assert corpus.clean_document("  ||||  ////  \n ----  ") == ""


# ------------------------------------------------------------------ streaming
def test_feed_in_pieces_equals_feed_at_once(lm: StreamingModel) -> None:
    whole, pieces = TextModel(lm), TextModel(lm)
    whole.feed(SAMPLE)
    for start in range(0, len(SAMPLE), 7):
        pieces.feed(SAMPLE[start:start + 7])
    np.testing.assert_allclose(pieces.next_distribution(), whole.next_distribution(), atol=1e-6)
    assert pieces.current_word == whole.current_word == ""
    pieces.feed("knowl")
    assert pieces.current_word == "knowl"


def test_streams_sharing_one_model_do_not_interfere(lm: StreamingModel) -> None:
    a, b, alone = TextModel(lm), TextModel(lm), TextModel(lm)
    for start in range(0, 60, 5):
        a.feed(SAMPLE[start:start + 5])
        b.feed("zzz ")
    alone.feed(SAMPLE[:60])
    np.testing.assert_allclose(a.next_distribution(), alone.next_distribution(), atol=1e-6)
    a.reset()
    np.testing.assert_allclose(a.next_distribution(), TextModel(lm).next_distribution(), atol=1e-7)


def test_next_distribution_matches_torch(lm: StreamingModel, torch_lm) -> None:
    text = TextModel(lm)
    text.feed(SAMPLE)
    expected = torch.softmax(torch.from_numpy(torch_logits(torch_lm, SAMPLE)[-1]).double(), -1).numpy()
    np.testing.assert_allclose(text.next_distribution(), expected, atol=1e-5)
    assert text.next_distribution().sum() == pytest.approx(1.0)


def test_greedy_generation_equals_torch_for_200_characters(lm: StreamingModel, torch_lm) -> None:
    prompt = "The meaning of life is"
    text = TextModel(lm)
    text.feed(prompt)
    got = text.generate(200)
    ids = list(corpus.tokenizer().encode(corpus.DOCUMENT_SEPARATOR + prompt))
    with torch.no_grad():
        logits, state = torch_lm.forward_with_state(torch.tensor([ids]), None)
        out = []
        for _ in range(200):
            token = int(logits[0, -1].argmax())
            out.append(corpus.VOCAB[token])
            logits, state = torch_lm.forward_with_state(torch.tensor([[token]]), state)
    assert len(got) == 200
    assert got == "".join(out)


def test_sampling_is_seeded(lm: StreamingModel) -> None:
    first, second, other = TextModel(lm), TextModel(lm), TextModel(lm)
    assert first.generate(40, temperature=0.8, seed=5) == second.generate(40, temperature=0.8, seed=5)
    assert other.generate(40, temperature=0.8, seed=6) != TextModel(lm).generate(40, temperature=0.8, seed=5)


# ------------------------------------------------------------------ suggest
def test_suggestions_are_sorted_words_with_consistent_probabilities(lm: StreamingModel) -> None:
    text = TextModel(lm)
    text.feed("It is a truth universally acknowledged that a man in possession of a good for")
    suggestions = text.suggest(5)
    assert len(suggestions) == 5
    probabilities = [s.probability for s in suggestions]
    assert probabilities == sorted(probabilities, reverse=True)
    assert 0 < sum(probabilities) <= 1.0
    for s in suggestions:
        assert s.word.startswith("for") and all(is_word_char(c) for c in s.word)
    # The top suggestion's probability is P(its remaining characters) x P(a word boundary next), computed directly.
    word = suggestions[0].word
    direct = TextModel(lm)
    direct.feed("It is a truth universally acknowledged that a man in possession of a good for")
    prob = 1.0
    tok = direct.tokenizer
    for char in word[3:]:
        prob *= direct.next_distribution()[tok.encode(char)[0]]
        direct.feed(char)
    dist = direct.next_distribution()
    boundary = sum(dist[i] for i in range(tok.vocab_size) if not is_word_char(tok.token_text(i)) and i != 0)
    assert suggestions[0].probability == pytest.approx(prob * boundary, rel=1e-4)


def test_suggest_keeps_the_stream_state(lm: StreamingModel) -> None:
    text = TextModel(lm)
    text.feed("Time flies like an arr")
    before = text.next_distribution()
    text.suggest(3)
    np.testing.assert_array_equal(text.next_distribution(), before)
    with pytest.raises(InputError, match="k"):
        text.suggest(0)


def test_suggest_after_a_space_predicts_the_next_word(lm: StreamingModel) -> None:
    text = TextModel(lm)
    text.feed("Thank you very ")
    suggestions = text.suggest(3)
    assert suggestions and all(s.word and all(is_word_char(c) for c in s.word) for s in suggestions)


# ------------------------------------------------------------------ score
def test_score_matches_a_direct_computation(lm: StreamingModel, torch_lm) -> None:
    logits = torch.from_numpy(torch_logits(torch_lm, SAMPLE)).double()
    targets = torch.from_numpy(corpus.tokenizer().encode(SAMPLE))
    logp = torch.log_softmax(logits[len(corpus.DOCUMENT_SEPARATOR) - 1:-1], -1)
    expected = float(-logp[torch.arange(len(SAMPLE)), targets].mean() / math.log(2))
    text = TextModel(lm)
    text.feed("unrelated text")  # score starts from the start state whatever was fed
    assert text.score(SAMPLE) == pytest.approx(expected, abs=1e-4)


def test_score_file_streams_in_pieces(lm: StreamingModel, tmp_path: Path) -> None:
    path = tmp_path / "long.txt"
    long_text = SAMPLE * 600  # ~100 KB: more than one read and many model calls
    path.write_text(long_text, encoding="utf-8")
    result = TextModel(lm).score_file(path)
    assert result["chars"] == len(long_text) and result["unknown_chars"] == 0
    bits, chars, _ = TextModel(lm).score_pieces([long_text[:50_000], long_text[50_000:]])
    assert result["bits_per_char"] == pytest.approx(bits / chars, rel=1e-6)


def test_bad_text_input(lm: StreamingModel, tmp_path: Path) -> None:
    text = TextModel(lm)
    with pytest.raises(InputError, match="empty"):
        text.score("")
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        text.score_file(empty)
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"hello \xff world")
    with pytest.raises(InputError, match="byte offset 6"):
        text.score_file(bad)
    assert text.score_file(bad, errors="replace")["unknown_chars"] == 1
    assert text.generate(0) == ""
    with pytest.raises(InputError, match="temperature"):
        text.generate(5, temperature=-0.5)
    with pytest.raises(InputError, match="n "):
        text.generate(-1)
    with pytest.raises(InputError, match="str"):
        text.feed(b"bytes")  # type: ignore[arg-type]
    before = text.next_distribution()
    text.feed("")
    np.testing.assert_array_equal(text.next_distribution(), before)
    text.feed("\u2603 caf\u00e9")  # unknown characters map to the unknown id
    assert np.isfinite(text.next_distribution()).all()


# ------------------------------------------------------------------ CLI
def test_cli_commands(capsys, tmp_path: Path) -> None:
    model_dir = str(LM_DIR / "export")
    assert cli_main(["generate", model_dir, "--prompt", "Hello", "-n", "30", "--backend", "onnx", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["continuation"]) == 30 and out["prompt"] == "Hello"
    assert cli_main(["generate", model_dir, "--prompt", "Hello", "-n", "0"]) == 0
    assert capsys.readouterr().out.strip() == "Hello"
    path = tmp_path / "t.txt"
    path.write_text(SAMPLE, encoding="utf-8")
    assert cli_main(["score", model_dir, str(path), "--json", "--backend", "onnx"]) == 0
    score = json.loads(capsys.readouterr().out)
    assert score["chars"] == len(SAMPLE)
    assert score["bits_per_char"] == pytest.approx(TextModel.load(model_dir, backend="onnx").score(SAMPLE), rel=1e-6)
    assert cli_main(["suggest", model_dir, "the quick bro", "-k", "3", "--json"]) == 0
    suggest = json.loads(capsys.readouterr().out)
    assert suggest["word"] == "bro" and len(suggest["suggestions"]) == 3
    assert all(s["word"].startswith("bro") for s in suggest["suggestions"])
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xc3\x28")
    assert cli_main(["score", model_dir, str(bad)]) == 1
    assert "UTF-8" in capsys.readouterr().err
    assert cli_main(["generate", model_dir, "-n", "5", "--temperature", "-1"]) == 1
    assert "temperature" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(["generate", model_dir, "-n", "-3"])


def test_cli_classify(capsys) -> None:
    model_dir = str(CLASSIFIER_DIR / "export")
    text = "The computer crashed again and the programmer lost all his files."
    assert cli_main(["classify", model_dir, text, "--json", "--backend", "onnx"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["label"] in out["probabilities"]
    assert sum(out["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert len(out["label_after_each_char"]) == len(text)
    assert cli_main(["classify", model_dir, ""]) == 1
    assert "empty" in capsys.readouterr().err


def test_classifier_streams_like_torch() -> None:
    model = StreamingModel.load(CLASSIFIER_DIR / "export", backend="onnx")
    torch_model, config = load_model(CLASSIFIER_DIR)
    text = "Politicians are the same all over. They promise to build a bridge even where there is no river."
    classifier = TextClassifier(model)
    rows = np.concatenate([classifier.feed(text[i:i + 9]) for i in range(0, len(text), 9)])
    with torch.no_grad():
        expected = torch.softmax(torch_model(torch.from_numpy(corpus.tokenizer().encode(text))[None])[0], -1)
    np.testing.assert_allclose(rows, expected.numpy(), atol=1e-5)
    assert classifier.label() == config["labels"][int(expected[-1].argmax())]


# ------------------------------------------------------------------ parity gate
def test_verify_reports_bits_per_char_and_int8_is_within_tolerance(tmp_path: Path) -> None:
    model_dir = tmp_path / "lm"
    shutil.copytree(LM_DIR / "export", model_dir)
    report = parity_report(model_dir)
    rows = {(r["format"], r["precision"]): r for r in report["results"]}
    assert set(rows) == {(fmt, precision) for fmt in ("onnx", "tflite", "c") for precision in ("float", "int8")}
    for fmt in ("onnx", "tflite", "c"):
        assert rows[(fmt, "int8")]["bits_per_char"] - rows[(fmt, "float")]["bits_per_char"] <= 0.03
        assert rows[(fmt, "int8")]["size_ratio"] <= 0.35
    assert report["failures"] == []
    manifest = json.loads((model_dir / "manifest.json").read_text())
    manifest["tolerances"]["int8_bits_per_char_increase"] = -1.0  # an impossible gate must fail
    (model_dir / "manifest.json").write_text(json.dumps(manifest))
    failures = parity_report(model_dir)["failures"]
    assert any("bits/char" in f and "onnx/int8" in f for f in failures)


# ------------------------------------------------------------------ training + export smoke run
def test_tiny_training_and_export(tmp_path: Path) -> None:
    from lstm_edge.export import export
    from lstm_edge.recipes.text.train_lm import LmTrainConfig, train_language_model

    docs = corpus.read_documents(corpus.FORTUNES_DIR / "fortunes")
    config = LmTrainConfig(hidden_size=32, embed_size=16, batch_size=8, window=32, max_minutes=0.1,
                           eval_every_steps=50, warmup_steps=10)
    report = train_language_model(docs[:150], "\n\n".join(docs[150:200]), config, tmp_path / "w", log=lambda _: None)
    assert report["best_val_bpc"] < math.log2(len(corpus.VOCAB)) - 1.0  # learnt something over uniform
    model, _ = load_model(tmp_path / "w")
    example = torch.from_numpy(corpus.tokenizer().encode("hello world")[None])
    with pytest.raises(ExportError, match="tokenizer"):
        export(model, example, tmp_path / "bad", tokenizer={"type": "bytes"})
    out = export(model, example, tmp_path / "e", tokenizer=corpus.tokenizer(),
                 extra={"text": {"task": "language_model", "start_text": "\n\n"}})
    text = TextModel.load(out, backend="onnx")
    assert abs(text.score(SAMPLE) - report["best_val_bpc"]) < 1.5


def test_text_runtime_needs_neither_torch_nor_onnx() -> None:
    import subprocess
    import sys

    code = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'onnx'):
            raise ImportError('blocked for this test: ' + name)
sys.meta_path.insert(0, Block())
from lstm_edge.runtime.text import TextModel, TextClassifier
text = TextModel.load({str(LM_DIR / 'export')!r}, backend="onnx", precision="int8")
text.feed("The best way to predict the fut")
print(text.suggest(1)[0].word)
TextClassifier.load({str(CLASSIFIER_DIR / 'export')!r}, backend="litert").feed("hello")
assert not any(m.split('.')[0] in ('torch', 'onnx') for m in sys.modules)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == "future"


def test_cli_long_prompts_and_standard_input(tmp_path: Path) -> None:
    import subprocess
    import sys

    model_dir = str(LM_DIR / "export")
    prompt = SAMPLE * 40  # a prompt longer than one 64 KB read is fed in pieces, like a file
    path = tmp_path / "prompt.txt"
    path.write_text(prompt, encoding="utf-8")
    base = [sys.executable, "-m", "lstm_edge"]

    def run(*args: str, stdin: bytes | None = None) -> str:
        result = subprocess.run([*base, *args, "--backend", "onnx"], input=stdin, capture_output=True, timeout=300)
        assert result.returncode == 0, result.stderr
        return result.stdout.decode()

    expected = TextModel.load(model_dir, backend="onnx")
    expected.feed(prompt)
    continuation = expected.generate(25)
    from_file = json.loads(run("generate", model_dir, "--prompt-file", str(path), "-n", "25", "--json"))
    assert from_file["continuation"] == continuation and from_file["prompt_file"] == str(path)
    assert run("generate", model_dir, "--prompt-file", "-", "-n", "25", stdin=prompt.encode()) == continuation + "\n"
    scored = json.loads(run("score", model_dir, "-", "--json", stdin=prompt.encode()))
    assert scored["chars"] == len(prompt) and scored["chars_per_second"] > 0
    assert scored["bits_per_char"] == pytest.approx(json.loads(run("score", model_dir, str(path), "--json"))
                                                    ["bits_per_char"], rel=1e-9)
    both = subprocess.run([*base, "generate", model_dir, "--prompt", "x", "--prompt-file", str(path)],
                          capture_output=True, text=True, timeout=300)
    assert both.returncode == 1 and "expected --prompt or --prompt-file, got both" in both.stderr


def test_cli_generate_prints_characters_as_they_are_chosen() -> None:
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-m", "lstm_edge", "generate", str(LM_DIR / "export"), "--prompt",
                                "Hello", "-n", "100000", "--backend", "onnx"], stdout=subprocess.PIPE)
    try:
        assert process.stdout is not None
        first = process.stdout.read(len("Hello") + 1)  # the prompt and the first generated character
        assert first.startswith(b"Hello") and len(first) == 6
        assert process.poll() is None  # 100,000 characters take far longer than the first one
    finally:
        process.kill()
        process.wait()


def test_empty_prompts_start_from_the_start_state_and_empty_scores_are_errors(capsys) -> None:
    model_dir = str(LM_DIR / "export")
    assert cli_main(["suggest", model_dir, "", "-k", "2", "--json"]) == 0
    first_words = json.loads(capsys.readouterr().out)
    assert first_words["word"] == "" and len(first_words["suggestions"]) == 2
    fresh = TextModel.load(model_dir)
    assert [s.word for s in fresh.suggest(2)] == [s["word"] for s in first_words["suggestions"]]
    assert cli_main(["generate", model_dir, "--prompt", "", "-n", "12", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["continuation"] == TextModel.load(model_dir).generate(12)
