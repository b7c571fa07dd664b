"""The speech-recognition recipe end to end at toy size: synthesis, a few training steps, export, recognition."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lstm_edge.recipes.asr import export_model, synth, train
from lstm_edge.recipes.asr.grammar import LEXICON, TOKENS, word_graph
from lstm_edge.runtime.asr import SpeechRecognizer
from lstm_edge.runtime.model import StreamingModel


def test_grammar_graph_covers_its_sentences() -> None:
    from lstm_edge.recipes.asr.grammar import sample_sentence

    graph = word_graph()
    rng = np.random.default_rng(3)
    for _ in range(300):
        words = sample_sentence(rng)[1].split()
        assert words[0] in graph["start"] and words[-1] in graph["final"]
        assert all(b in graph["next"][a] for a, b in zip(words, words[1:]))
        assert set(words) <= set(LEXICON)


def test_voice_split_is_disjoint() -> None:
    espeak = {s: set(v) for s, v in synth.ESPEAK_LANGUAGES.items()}
    flite = {s: set(v) for s, v in synth.FLITE_VOICES.items()}
    variants = {s: set(v) for s, v in synth.split_variants().items()}
    for table in (espeak, flite, variants):
        assert not table["train"] & table["test"] and not table["train"] & table["validation"]
        assert not table["validation"] & table["test"]


def test_smoke_synth_train_export_recognize(tmp_path: Path) -> None:
    data = tmp_path / "data"
    synth.main(["--out", str(data), "--train", "8", "--eval", "3", "--workers", "1"])
    index = json.loads((data / "index.json").read_text())
    assert {v.split(":")[0] for v in index["splits"]["train"]["voices"]} <= {"espeak", "flite"}
    checkpoint = tmp_path / "checkpoint"
    assert train.main(["--data", str(data), "--out", str(checkpoint), "--max-steps", "2", "--hidden-size", "32"]) == 0
    history = json.loads((checkpoint / "history.json").read_text())
    assert history and np.isfinite(history[-1]["loss"])
    out = export_model.export_recognizer(checkpoint, data, tmp_path / "model", formats=("onnx",))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["extra"]["asr"]["tokens"] == list(TOKENS)
    assert {f["precision"] for f in manifest["files"]} == {"float", "int8"}
    recognizer = SpeechRecognizer(StreamingModel.load(out, backend="onnx", precision="int8"))
    audio = synth.utterances(synth.load_split(data, "test"))[0]
    results = recognizer.transcribe(audio, partial=True)
    assert all(r.text == "" or set(r.text) <= set(TOKENS) for r in results)
    for result in results:  # an untrained model may output anything, but only lexicon words in finals
        if result.final:
            assert set(result.text.split()) <= set(LEXICON)
