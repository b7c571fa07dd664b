"""The hashed character n-gram topic classifier: its step form equals its training form, it exports through the
streaming contract (a step model with four states) to ONNX and TFLite, float and int8, and the shipped model answers
the same on every engine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lstm_edge.export import export
from lstm_edge.quantize import quantize
from lstm_edge.quantize.parity import parity_report
from lstm_edge.recipes.text.corpus import tokenizer
from lstm_edge.recipes.text.ngram import HashedNgramClassifier, NgramConfig, prefix_accuracies, train_ngram
from lstm_edge.runtime.errors import ExportError
from lstm_edge.runtime.model import StreamingModel
from lstm_edge.runtime.text import TextClassifier

SHIPPED = Path(__file__).resolve().parents[1] / "models" / "text" / "topics" / "export"
QUOTES = (["The compiler crashed on my new CPU.", "Love is blind; marriage is an eye-opener.",
           "Every VOTE counts, said the senator in 1999.", "The atom is mostly empty space.",
           "Roses are red, violets are blue...", "Work expands to fill the time available."] * 3)
LABELS = [0, 1, 2, 3, 4, 5] * 3


def _stepped(model: HashedNgramClassifier, text: str) -> np.ndarray:
    state = model.initial_state(1)
    rows = []
    with torch.no_grad():
        for token in tokenizer().encode(text):
            logits, state = model(torch.tensor([[int(token)]]), state)
            rows.append(logits[0].numpy())
    return np.stack(rows)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[HashedNgramClassifier, Path]:
    """A smoke training (3 epochs on 18 quotes, 2**10 rows), exported and quantized."""
    splits = {"train": (QUOTES, LABELS), "validation": (QUOTES[:6], LABELS[:6])}
    model, report = train_ngram(splits, NgramConfig(orders=3, bits=10, epochs=3, learning_rate=0.05), 6,
                                log=lambda _: None)
    assert report["best_validation_mean"] > 1 / 6  # it learned something from its own training quotes
    reference = tokenizer().encode("\n".join(QUOTES[:6]))[:, None]
    out = export(model.eval(), torch.from_numpy(reference[:1]), tmp_path_factory.mktemp("topics"),
                 formats=("onnx", "tflite"), labels=list("abcdef"), name="tiny-topics", output_semantics="logits",
                 extra={"text": {"task": "classifier", "start_text": ""}}, reference_input=reference,
                 tokenizer=tokenizer())
    quantize(out)
    return model, out


def test_the_step_form_equals_the_training_form():
    torch.manual_seed(0)
    model = HashedNgramClassifier(6, orders=4, bits=12, word=True, power=0.5)
    with torch.no_grad():
        model.table.weight.normal_(0, 1.0)
    text = "Don't PANIC: 42 towels, my friend. The end"
    ids = torch.from_numpy(tokenizer().encode(text).astype(np.int64))[None]
    with torch.no_grad():
        whole = model.sequence_logits(model.sequence_rows(ids))[0].numpy()
    np.testing.assert_allclose(_stepped(model, text), whole, rtol=1e-5, atol=1e-5)


def test_case_is_folded_and_words_are_features():
    torch.manual_seed(1)
    model = HashedNgramClassifier(3, orders=3, bits=11, word=True)
    with torch.no_grad():
        model.table.weight.normal_(0, 1.0)
    np.testing.assert_allclose(_stepped(model, "Hello World"), _stepped(model, "hELLO wORLD"), rtol=0, atol=0)
    no_words = HashedNgramClassifier(3, orders=3, bits=11, word=False)
    no_words.load_state_dict(model.state_dict())
    assert not np.allclose(_stepped(model, "cat dog"), _stepped(no_words, "cat dog"))


def test_settings_that_would_leave_exact_float_hashing_are_refused():
    with pytest.raises(ValueError, match="bits in 8..17"):
        HashedNgramClassifier(6, bits=20)


def test_every_file_reproduces_the_torch_model(tiny):
    model, out = tiny
    text = "Senators VOTE; atoms are empty. Love, work!"
    expected = _stepped(model, text)
    for backend in ("onnx", "litert"):
        got = TextClassifier.load(out, backend=backend, precision="float").feed(text)
        np.testing.assert_allclose(got, np.exp(expected) / np.exp(expected).sum(1, keepdims=True), atol=1e-5)
        int8 = TextClassifier.load(out, backend=backend, precision="int8").feed(text)
        assert (int8.argmax(1) == expected.argmax(1)).mean() >= 0.9, backend
    report = parity_report(out)
    assert report["failures"] == []


def test_the_int8_files_quantize_the_table(tiny):
    _, out = tiny
    manifest = StreamingModel.load(out, backend="onnx").manifest
    sizes = {(f.format, f.precision): f.bytes for f in manifest.files}
    for fmt in ("onnx", "tflite"):
        assert sizes[(fmt, "int8")] < 0.6 * sizes[(fmt, "float")], fmt


def test_a_bad_vocab_size_attribute_is_refused(tmp_path):
    model = HashedNgramClassifier(6, orders=2, bits=8)
    model.vocab_size = "97"
    with pytest.raises(ExportError, match="model.vocab_size: expected a positive int"):
        export(model, torch.tensor([[5]]), tmp_path / "out", formats=("onnx",))


def test_the_shipped_model_answers_the_same_on_every_engine():
    text = "The kernel panicked when the new driver loaded."
    answers = {(backend, precision): TextClassifier.load(SHIPPED, backend=backend, precision=precision).feed(text)
               for backend in ("onnx", "litert") for precision in ("float", "int8")}
    float_onnx = answers[("onnx", "float")]
    np.testing.assert_allclose(answers[("litert", "float")], float_onnx, atol=1e-5)
    for precision_key in (("onnx", "int8"), ("litert", "int8")):
        assert np.abs(answers[precision_key] - float_onnx).max() < 0.05, precision_key
    assert TextClassifier.load(SHIPPED, backend="onnx").labels[int(float_onnx[-1].argmax())] == "computers"


def test_prefix_accuracy_reads_the_answer_after_each_fraction():
    model = HashedNgramClassifier(2, orders=1, bits=8, word=False, power=0.0)
    with torch.no_grad():  # row of "a" votes label 0, row of "b" votes label 1
        model.table.weight.zero_()
        a, b = (int(tokenizer().encode(ch)[0]) for ch in "ab")
        model.table.weight[int((1 * 97 + a + 1) % 256)] = torch.tensor([1.0, 0.0])
        model.table.weight[int((1 * 97 + b + 1) % 256)] = torch.tensor([0.0, 5.0])
    ids = torch.from_numpy(tokenizer().encode("aaab").astype(np.int64))[None]
    rows = model.sequence_rows(ids)
    # "a" (25%) and "aa" (50%) -> label 0; "aaab" (100%): 3 votes for 0, 5 for 1 -> label 1
    accuracies = prefix_accuracies(model, rows, torch.tensor([4]), torch.tensor([0]))
    assert accuracies == {"25%": 1.0, "50%": 1.0, "100%": 0.0}
    accuracies = prefix_accuracies(model, rows, torch.tensor([4]), torch.tensor([1]))
    assert accuracies == {"25%": 0.0, "50%": 0.0, "100%": 1.0}
