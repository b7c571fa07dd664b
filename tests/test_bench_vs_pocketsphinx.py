"""The PocketSphinx peer benchmark: JSGF grammars built from the recognizer's grammar and checked with PocketSphinx's
own JSGF compiler, a pronunciation for every grammar word, and a side-by-side run on a few synthesised utterances."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from pocketsphinx import Decoder, FsgModel, get_model_path

from lstm_edge.recipes.asr import jsgf as grammars
from lstm_edge.recipes.asr.grammar import LEXICON, sample_sentence, word_automaton
from lstm_edge.recipes.asr.synth import Request, synthesize

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks" / "bench_vs_pocketsphinx.py"
CMUDICT = Path(get_model_path("en-us/cmudict-en-us.dict"))
CLEAR_DIGITS = "six three nine five"


def load_bench() -> ModuleType:
    if "bench_vs_pocketsphinx" in sys.modules:
        return sys.modules["bench_vs_pocketsphinx"]
    spec = importlib.util.spec_from_file_location("bench_vs_pocketsphinx", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def decoder() -> Decoder:
    return Decoder(lm=None, loglevel="FATAL")


def compiled(decoder: Decoder, text: str, tmp_path: Path) -> tuple[FsgModel, grammars.Fsg]:
    """PocketSphinx's FSG of a JSGF grammar, and the same read back from its text form."""
    fsg = decoder.parse_jsgf(text)
    path = tmp_path / "grammar.fsg"
    fsg.writefile(str(path))
    return fsg, grammars.read_fsg(path.read_text())


def test_whole_grammar_jsgf_accepts_exactly_the_grammars_sentences(decoder, tmp_path):
    _, whole = compiled(decoder, grammars.jsgf(), tmp_path)
    automaton = grammars.automaton_fsg(word_automaton())
    assert grammars.language_difference(whole, automaton) is None
    # the comparison finds a difference where there is one: commands and digit strings without the numbers
    _, partial = compiled(decoder, grammars.jsgf(["digits", "command"]), tmp_path)
    missing = grammars.language_difference(partial, automaton)
    assert missing is not None and len(missing) <= 2 and automaton_accepts(word_automaton(), missing)


def automaton_accepts(automaton: dict, words: list[str]) -> bool:
    moves = {(a, w): b for a, w, b in automaton["arcs"]}
    state = automaton["start"]
    for word in words:
        if (state, word) not in moves:
            return False
        state = moves[(state, word)]
    return state in automaton["final"]


def test_each_kinds_jsgf_accepts_its_sampled_sentences_and_no_other_kinds(decoder, tmp_path):
    fsgs = {kind: compiled(decoder, grammars.jsgf([kind]), tmp_path)[0] for kind in grammars.KINDS}
    whole = compiled(decoder, grammars.jsgf(), tmp_path)[0]
    rng = np.random.default_rng(1)
    for kind in grammars.KINDS:
        for _ in range(150):
            drawn, sentence = sample_sentence(rng, kind)
            assert drawn == kind
            assert whole.accept(sentence), sentence
            accepted = [k for k, fsg in fsgs.items() if fsg.accept(sentence)]
            assert accepted == [kind], (sentence, accepted)
    for outside in ("one two", "call one two", "one two three four five six seven eight nine", "set a timer for zero "
                    "minutes", "one hundred one", "twenty ten", "turn on the lights please"):
        assert not whole.accept(outside), outside


def test_every_grammar_word_has_a_pronunciation(tmp_path):
    words = grammars.words_of(grammars.jsgf())
    assert words == sorted(LEXICON)
    entries = grammars.pronunciations(words, CMUDICT)
    assert entries["unmute"] == [grammars.EXTRA_PRONUNCIATIONS["unmute"]]  # not in CMUdict
    assert entries["mute"] == ["M Y UW T"] and len(entries["a"]) == 2  # CMUdict's, alternates included
    with pytest.raises(KeyError, match="unmute"):
        grammars.pronunciations(words, CMUDICT, extra={})
    path = tmp_path / "grammar.dict"
    path.write_text(grammars.dictionary_text(entries))
    loaded = Decoder(lm=None, dict=str(path), loglevel="FATAL")
    assert {w: loaded.lookup_word(w) for w in words} == {w: p[0] for w, p in entries.items()}


def test_voice_family():
    family = load_bench().voice_family
    assert [family(v) for v in ("espeak:en-gb-x-rp+m3", "flite:slt", "mbrola:us1", "espeak:mb-us1")] == [
        "espeak", "flite", "mbrola", "mbrola"]


def synthesised_split(folder: Path) -> Path:
    """A test split in the ASR recipe's format: a clear espeak digit string, a number and two commands."""
    spoken = (("espeak", "en-us", "digits", CLEAR_DIGITS), ("espeak", "en-gb-x-rp+m2", "number", "forty two"),
              ("flite", "slt", "command", "turn on the kitchen lights"),
              ("espeak", "en-us-nyc+f3", "command", "set the volume to twenty"),
              ("espeak", "en-us", "out_of_grammar", "the weather is lovely today"))
    rng = np.random.default_rng(0)
    pieces, starts, ends = [], [], []
    for engine, voice, _, text in spoken:
        speech = synthesize(Request(engine, voice, text, 175 if engine == "espeak" else 1.0,
                                    50 if engine == "espeak" else 1.0))
        lead = np.zeros(4800, dtype=np.float32)
        audio = np.concatenate([lead, speech * (0.5 / np.max(np.abs(speech))), np.zeros(4800, dtype=np.float32)])
        audio += rng.normal(size=audio.size).astype(np.float32) * 1e-3
        pieces.append(np.round(audio * 32767).astype(np.int16))
        starts.append(lead.size)
        ends.append(lead.size + speech.size)
    np.savez(folder / "test.npz", audio=np.concatenate(pieces),
             offsets=np.concatenate([[0], np.cumsum([p.size for p in pieces])]).astype(np.int64),
             texts=np.array([s[3] for s in spoken]), kinds=np.array([s[2] for s in spoken]),
             voices=np.array([f"{s[0]}:{s[1]}" for s in spoken]), speech_start=np.array(starts, dtype=np.int64),
             speech_end=np.array(ends, dtype=np.int64))
    return folder


def test_benchmark_runs_both_systems_on_synthesised_speech(tmp_path, capsys):
    bench = load_bench()
    data = synthesised_split(tmp_path)
    out = tmp_path / "result.json"
    # PocketSphinx's default options (SPHINX_SETTINGS' wider beams are slow), whole utterances
    settings = json.dumps({"options": {}, "whole_utterance": True})
    assert bench.main(["--data", str(data), "--out", str(out), "--sphinx-settings", settings]) == 0
    report = json.loads(out.read_text())
    assert report["split"] == "test" and report["utterances"] == 5
    assert report["pocketsphinx"]["version"].startswith("5.")
    assert report["pocketsphinx"]["whole_grammar_same_language_as_manifest"] is True
    assert report["pocketsphinx"]["settings"] == {"options": {}, "whole_utterance": True}
    assert report["pocketsphinx"]["added_pronunciations"] == {"unmute": ["AH N M Y UW T"]}
    systems = report["systems"]
    assert set(systems) == {"lstm-edge float", "lstm-edge int8", "pocketsphinx per-kind grammar",
                            "pocketsphinx whole grammar"}
    for system in systems.values():
        assert 0.0 <= system["wer_all"] <= 2.0
        assert set(system["wer_by_kind"]) == {"digits", "number", "command"}
        assert set(system["wer_by_family"]) == {"espeak", "flite"}
        assert system["words"]["all/all"] == 4 + 2 + 5 + 5
        assert 0.0 < system["rtf"] < 5.0
        assert system["out_of_grammar_with_text"]["all"]["of"] == 1  # left out of the WER
        assert system["out_of_grammar_with_text"]["espeak"]["utterances"] in (0, 1)
    digits = next(row for row in report["utterance_hypotheses"] if row["kind"] == "digits")
    assert digits["hypotheses"]["pocketsphinx per-kind grammar"] == CLEAR_DIGITS
    assert digits["hypotheses"]["pocketsphinx whole grammar"] == CLEAR_DIGITS
    assert digits["hypotheses"]["lstm-edge float"] == CLEAR_DIGITS
    # the WER fields are the hypotheses scored
    for name, system in systems.items():
        errors = sum(edit(row["reference"].split(), row["hypotheses"][name].split())
                     for row in report["utterance_hypotheses"] if row["kind"] != "out_of_grammar")
        assert system["wer_all"] == round(errors / 16, 4)
    table = capsys.readouterr().out
    assert "| digits | espeak | 4 |" in table and "| RTF (1 thread) |" in table
    assert "| out of grammar: % with text | all | 1 utt. |" in table


def edit(reference: list[str], hypothesis: list[str]) -> int:
    """Word edit distance, written here independently of the project's."""
    table = np.arange(len(hypothesis) + 1)
    for i, word in enumerate(reference, 1):
        row = np.empty_like(table)
        row[0] = i
        for j, other in enumerate(hypothesis, 1):
            row[j] = min(table[j] + 1, row[j - 1] + 1, table[j - 1] + (word != other))
        table = row
    return int(table[-1])


def test_tuning_picks_the_lowest_validation_wer(tmp_path):
    bench = load_bench()
    arrays = bench.load_split(synthesised_split(tmp_path), "test")
    grid = (bench.SphinxSettings({"wip": 1e-30}), bench.SphinxSettings(whole_utterance=True))
    dictionary, _ = bench.sphinx_dictionary(tmp_path)
    best, tries = bench.tune(arrays, dictionary, grid)
    assert [t["whole_utterance"] for t in tries] == [False, True]
    assert tries[0]["wer_all"] > tries[1]["wer_all"]  # a word insertion penalty of 1e-30 deletes words
    assert best == grid[1]
