"""CTC decoders and endpoint rules on synthetic log-probabilities (no model)."""

from __future__ import annotations

import numpy as np
import pytest

from lstm_edge.runtime.asr import EndpointRule, fired_rule, stack_frames
from lstm_edge.runtime.ctc import (
    BeamSettings,
    BeamState,
    GreedyState,
    RejectionRule,
    Vocabulary,
    beam_step,
    best_path_text,
    best_text,
    disagreement,
    edit_distance,
    greedy_decode,
    greedy_step,
    prefix_beam_search,
    words_of,
)
from lstm_edge.runtime.errors import InputError, ManifestError

TOKENS = ("<blank>", " ", "a", "c", "e", "f", "i", "l", "n", "o", "r", "t", "u", "v", "w")


def spell(frames: list[str | None], peak: float = -0.05, floor: float = -9.0) -> np.ndarray:
    """Log-probs with one dominant token per frame (None = blank)."""
    rows = np.full((len(frames), len(TOKENS)), floor)
    for i, ch in enumerate(frames):
        rows[i, 0 if ch is None else TOKENS.index(ch)] = peak
    return rows


def spell_text(text: str) -> list[str | None]:
    out: list[str | None] = []
    for ch in text:
        out += [ch, ch, None]
    return out


def test_greedy_collapses_repeats_and_drops_blanks() -> None:
    log_probs = spell(["t", "t", None, "w", "o", "o", None, "o"])
    hypothesis = greedy_decode(log_probs)
    assert "".join(TOKENS[t] for t in hypothesis.tokens) == "twoo"
    assert hypothesis.frames == (0, 3, 4, 7)


def test_greedy_streaming_equals_whole() -> None:
    log_probs = spell(spell_text("one two four"))
    whole = greedy_decode(log_probs)
    state = GreedyState()
    for start in range(0, len(log_probs), 4):  # a chunk boundary falls inside repeated frames
        state = greedy_step(state, log_probs[start:start + 4])
    assert state.hypothesis.tokens == whole.tokens and state.hypothesis.frames == whole.frames


def test_beam_search_keeps_to_the_lexicon() -> None:
    # Greedy reads "fiur" (not a word); the second-best token per frame spells "four".
    frames = spell(spell_text("fiur"))
    for i, ch in enumerate(spell_text("four")):
        if ch == "o":
            frames[i, TOKENS.index("o")] = -1.2
    assert "".join(TOKENS[t] for t in greedy_decode(frames).tokens) == "fiur"
    vocabulary = Vocabulary(TOKENS, ["four", "five", "two", "one"])
    assert prefix_beam_search(frames, vocabulary) == "four"


def test_beam_search_respects_the_grammar() -> None:
    # Acoustically "two one"; the grammar only allows "one" after "call", so "two" must not start an utterance.
    log_probs = spell(spell_text("two one"))
    lexicon = ["call", "two", "one", "four"]
    free = Vocabulary(TOKENS, lexicon)
    grammar = {"start": ["call"], "next": {"call": ["two", "one", "four"], "two": ["one"]}, "final": ["one"]}
    constrained = Vocabulary(TOKENS, lexicon, grammar)
    assert prefix_beam_search(log_probs, free) == "two one"
    assert prefix_beam_search(log_probs, constrained) != "two one"
    assert prefix_beam_search(spell(spell_text("call two one")), constrained) == "call two one"


def test_word_automaton_accepts_exactly_its_sentences() -> None:
    # "call" then exactly two digits among {one, two}: the successor form would also take "call one two one" (every
    # word pair is allowed) and "call two" (two may end); the automaton counts.
    lexicon = ["call", "one", "two", "four"]
    automaton = {"states": 4, "start": 0, "final": [3],
                 "arcs": [[0, "call", 1], [1, "one", 2], [1, "two", 2], [2, "one", 3], [2, "two", 3]]}
    vocabulary = Vocabulary(TOKENS, lexicon, automaton)
    assert prefix_beam_search(spell(spell_text("call two one")), vocabulary) == "call two one"
    # a third digit is not in the grammar: the best complete sentence drops it
    assert prefix_beam_search(spell(spell_text("call two one two")), vocabulary) != "call two one two"
    # one digit is too few: nothing complete was said
    assert prefix_beam_search(spell(spell_text("call two")), vocabulary) == ""
    state = beam_step(BeamState(), spell(spell_text("call tw")), vocabulary, BeamSettings())
    assert best_text(state, vocabulary)[0] == "call tw"  # a partial may stop inside the grammar
    # streamed in chunks, the same as over the whole array
    log_probs = spell(spell_text("call one two"))
    state = BeamState()
    for start in range(0, len(log_probs), 4):
        state = beam_step(state, log_probs[start:start + 4], vocabulary, BeamSettings())
    assert best_text(state, vocabulary, final=True)[0] == "call one two"


def test_the_best_complete_sentence_survives_pruning() -> None:
    # "call one" is a sentence; "call one two four" too. The audio trails off inside "two": with one beam, the open
    # prefix "call one tw" wins every frame and the complete "call one" would be pruned, leaving no result.
    automaton = {"states": 5, "start": 0, "final": [2, 4],
                 "arcs": [[0, "call", 1], [1, "one", 2], [2, "two", 3], [3, "four", 4]]}
    vocabulary = Vocabulary(TOKENS, ["call", "one", "two", "four"], automaton)
    log_probs = spell(spell_text("call one tw"))
    kept = prefix_beam_search(log_probs, vocabulary, BeamSettings(beam_size=1))
    dropped = prefix_beam_search(log_probs, vocabulary, BeamSettings(beam_size=1, keep_complete=False))
    assert (kept, dropped) == ("call one", "")


def test_an_unfinished_sentence_gives_its_words_beyond_the_margin() -> None:
    # The audio says "call one tw" and stops; "call one" is complete but "call one two" (open: it needs "four")
    # explains the audio far better. Without a margin the result must be a complete sentence; with one, the most
    # probable prefix's whole words are the result once it beats every complete sentence by more than the margin.
    automaton = {"states": 5, "start": 0, "final": [2, 4],
                 "arcs": [[0, "call", 1], [1, "one", 2], [2, "two", 3], [3, "four", 4]]}
    vocabulary = Vocabulary(TOKENS, ["call", "one", "two", "four"], automaton)
    log_probs = spell(spell_text("call one two "))
    assert prefix_beam_search(log_probs, vocabulary) == "call one"
    assert prefix_beam_search(log_probs, vocabulary, BeamSettings(incomplete_margin=5.0)) == "call one two"
    assert prefix_beam_search(log_probs, vocabulary, BeamSettings(incomplete_margin=1e6)) == "call one"
    # only "call one two four" complete: the audio "call one tw" has no complete sentence; with a margin its whole
    # words are the result, and the word being spelled is not a word yet
    strict = Vocabulary(TOKENS, ["call", "one", "two", "four"], dict(automaton, final=[4]))
    state = beam_step(BeamState(), spell(spell_text("call one tw")), strict, BeamSettings())
    assert best_text(state, strict, final=True)[0] == ""
    text, frames = best_text(state, strict, final=True, incomplete_margin=5.0)
    assert text == "call one" and len(frames) == len(text)
    with pytest.raises(ManifestError, match="incomplete_margin"):
        BeamSettings.from_dict({"incomplete_margin": -1})


@pytest.mark.parametrize(("grammar", "message"), [
    ({"states": 2, "start": 0, "final": [1], "arcs": [[0, "one", 1], [0, "one", 0]]}, "deterministic"),
    ({"states": 2, "start": 0, "final": [5], "arcs": [[0, "one", 1]]}, "grammar.final"),
    ({"states": 2, "start": 0, "final": [1], "arcs": [[0, "one", 2]]}, "arc target"),
    ({"states": 2, "start": 0, "final": [1], "arcs": [[0, "nine", 1]]}, "grammar words"),
    ({"states": 0, "start": 0, "final": [], "arcs": []}, "grammar.states"),
    ({"states": 2, "start": 0, "final": [1], "arcs": [[0, 1]]}, "grammar arc"),
    ({"start": ["one"], "final": ["one"]}, "grammar keys"),
    ({"start": "one", "next": {}, "final": ["one"]}, "grammar.start"),
    ({"start": ["one"], "next": ["two"], "final": ["one"]}, "grammar.next"),
    ({"start": ["one"], "next": {"one": "two"}, "final": ["one"]}, "grammar.next"),
    ([["one"]], "grammar"),
])
def test_bad_grammar_is_a_manifest_error(grammar: object, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        Vocabulary(TOKENS, ["one", "two"], grammar)


def test_beam_search_streams_like_whole() -> None:
    vocabulary = Vocabulary(TOKENS, ["two", "one", "four", "nine"])
    log_probs = spell(spell_text("nine four one"))
    state = BeamState()
    for start in range(0, len(log_probs), 5):
        state = beam_step(state, log_probs[start:start + 5], vocabulary, BeamSettings())
    assert best_text(state, vocabulary, final=True)[0] == prefix_beam_search(log_probs, vocabulary) == "nine four one"


def test_incomplete_word_is_not_a_final_result() -> None:
    vocabulary = Vocabulary(TOKENS, ["four", "one"])
    state = beam_step(BeamState(), spell(spell_text("fou")), vocabulary, BeamSettings())
    assert best_text(state, vocabulary)[0] == "fou"  # a partial may end inside a word
    assert best_text(state, vocabulary, final=True)[0] == ""


def test_word_timestamps() -> None:
    vocabulary = Vocabulary(TOKENS, ["two", "one"])
    frames = [None] * 10 + spell_text("two") + [None] * 5 + spell_text("one")
    state = beam_step(BeamState(), spell(frames), vocabulary, BeamSettings())
    text, token_frames = best_text(state, vocabulary, final=True)
    words = words_of(text, token_frames, frame_seconds=0.02, offset_seconds=1.0)
    assert [w.word for w in words] == ["two", "one"]
    assert words[0].start == pytest.approx(1.0 + 10 * 0.02)
    assert words[0].end == pytest.approx(1.0 + (10 + 6 + 1) * 0.02)  # last char "o" first seen at frame 16
    assert words[1].start > words[0].end


def test_endpoint_rules() -> None:
    rules = (EndpointRule("silence", False, 2.0), EndpointRule("after_speech", True, 0.5),
             EndpointRule("max_length", False, 0.0, 15.0))
    assert fired_rule(rules, 3.0, 0.6, has_speech=False) is None
    assert fired_rule(rules, 3.0, 0.6, has_speech=True).name == "after_speech"
    assert fired_rule(rules, 3.0, 0.4, has_speech=True) is None
    assert fired_rule(rules, 2.5, 2.1, has_speech=False).name == "silence"
    assert fired_rule(rules, 15.0, 0.0, has_speech=True).name == "max_length"


def test_bad_inputs_raise_project_errors() -> None:
    with pytest.raises(InputError, match="float array"):
        greedy_decode(np.zeros(5))
    with pytest.raises(ManifestError, match="lexicon word"):
        Vocabulary(TOKENS, ["bad!"])
    with pytest.raises(ManifestError, match="grammar words"):
        Vocabulary(TOKENS, ["one"], {"start": ["two"], "next": {}, "final": ["one"]})
    with pytest.raises(ManifestError, match="beam_size"):
        BeamSettings.from_dict({"beam_size": 0})
    with pytest.raises(InputError, match="vocabulary size"):
        beam_step(BeamState(), np.zeros((2, 4)), Vocabulary(TOKENS, ["one"]), BeamSettings())
    with pytest.raises(ManifestError, match="endpoint rule"):
        EndpointRule.from_dict({"name": "x"})


def test_stack_frames_pairs_consecutive_frames() -> None:
    features = np.arange(10, dtype=np.float32).reshape(5, 2)
    stacked = stack_frames(features, 2)
    assert stacked.shape == (2, 4)
    np.testing.assert_array_equal(stacked[1], [4, 5, 6, 7])


def test_nothing_said_beats_an_improbable_word() -> None:
    """Blank everywhere but one frame where "four" is a weak second guess: the final result is empty, while the
    same word spoken clearly is found."""
    vocabulary = Vocabulary(TOKENS, ("four", "one"))
    rows = spell([None] * 30)
    for i, ch in enumerate("four"):
        rows[10 + i, TOKENS.index(ch)] = -4.0  # probability ~2% against blank's ~95%
    assert best_text(beam_step(BeamState(), rows, vocabulary, BeamSettings()), vocabulary, final=True)[0] == ""
    spoken = spell([None] * 5 + spell_text("four") + [None] * 5)
    assert prefix_beam_search(spoken, vocabulary) == "four"


def test_best_path_text_joins_words_with_single_spaces() -> None:
    frames = [" ", None, "t", "w", "o", " ", " ", None, " ", "o", "n", "e", None, " "]
    assert best_path_text(greedy_decode(spell(frames)), TOKENS) == "two one"
    assert best_path_text(greedy_decode(spell([None, " ", None])), TOKENS) == ""


def test_disagreement_is_the_character_edit_distance_over_the_longer_text() -> None:
    assert edit_distance("kitten", "sitting") == 3 and edit_distance("", "abc") == 3 and edit_distance("ab", "ab") == 0
    assert disagreement("call one", "call one") == 0.0
    assert disagreement("two", "tw") == pytest.approx(1 / 3)
    assert disagreement("one", "fituen fiur") == pytest.approx(edit_distance("one", "fituen fiur") / 11)
    assert disagreement("four", "") == 1.0 and disagreement("", "") == 0.0


def test_rejection_rule_from_the_manifest() -> None:
    rule = RejectionRule.from_dict({"method": "best_path_disagreement", "max_disagreement": 0.5})
    assert rule == RejectionRule(0.5) and rule.to_dict() == {"method": "best_path_disagreement",
                                                              "max_disagreement": 0.5}
    assert rule.rejects(0.51) and not rule.rejects(0.5) and not RejectionRule(1.0).rejects(1.0)
    assert RejectionRule.from_dict(None) is None
    assert BeamSettings.from_dict({"beam_size": 4}).rejection is None  # absent: off
    assert BeamSettings.from_dict({"rejection": rule.to_dict()}).rejection == rule
    for bad, message in (({"max_disagreement": 0.5}, "decoder.rejection"),
                         ({"method": "best_path_gap", "max_disagreement": 0.5}, "rejection.method"),
                         ({"method": "best_path_disagreement", "max_disagreement": 1.5}, "max_disagreement"),
                         ({"method": "best_path_disagreement", "max_disagreement": True}, "max_disagreement"),
                         ({"method": "best_path_disagreement", "max_disagreement": "0.5"}, "max_disagreement"),
                         (0.5, "decoder.rejection")):
        with pytest.raises(ManifestError, match=message):
            BeamSettings.from_dict({"rejection": bad})
