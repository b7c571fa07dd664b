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
    parametric = {s: set(v) for s, v in synth.PARAMETRIC_VOICES.items()}
    for table in (espeak, flite, variants, parametric):
        assert not table["train"] & table["test"] and not table["train"] & table["validation"]
        assert not table["validation"] & table["test"]
    # the same recorded speaker through another synthesiser would leak a test voice into training
    speakers = {voice.split(":")[1] for voices in parametric.values() for voice in voices}
    assert not speakers & flite["test"] and not speakers & flite["validation"]


def test_festival_voices_change_training_only() -> None:
    plans = {share: {split: synth.plan_split(split, 30, synth.SynthConfig(festival_share=share),
                                             np.random.default_rng(2)) for split in synth.SPLITS}
             for share in (0.0, 0.5)}
    for split in ("validation", "test"):
        assert plans[0.0][split] == plans[0.5][split]
    assert {request.engine for _, request in plans[0.5]["train"]} == {"espeak", "flite", "festival"}
    assert "festival" not in {request.engine for _, request in plans[0.0]["train"]}


def test_parametric_voices_change_training_and_validation_only() -> None:
    plans = {share: {split: synth.plan_split(split, 40, synth.SynthConfig(parametric_share=share),
                                             np.random.default_rng(2)) for split in synth.SPLITS}
             for share in (0.0, 0.5)}
    assert plans[0.0]["test"] == plans[0.5]["test"]
    engines = {split: {request.engine for _, request in plans[0.5][split]} for split in synth.SPLITS}
    assert {"pico", "rhvoice"} <= engines["train"] and "pico" in engines["validation"]
    assert not {"pico", "rhvoice"} & {r.engine for _, r in plans[0.0]["train"]}
    assert {r.voice_id for _, r in plans[0.5]["test"]} <= set(synth.HELD_OUT_VOICES)  # RHVoice's slt only


def test_extra_training_voices_join_training_only_and_never_a_held_out_speaker() -> None:
    import pytest

    extra = synth.SynthConfig(parametric_share=0.5, extra_train_voices=("pico:es-ES", "pico:it-IT"))
    plans = {config: {split: synth.plan_split(split, 60, config, np.random.default_rng(4)) for split in synth.SPLITS}
             for config in (synth.SynthConfig(parametric_share=0.5), extra)}
    for split in ("validation", "test"):
        assert plans[synth.SynthConfig(parametric_share=0.5)][split] == plans[extra][split]
    parametric = {f"{r.engine}:{r.voice}" for _, r in plans[extra]["train"] if r.engine in ("pico", "rhvoice")}
    assert {"pico:es-ES", "pico:it-IT"} <= parametric <= {*synth.PARAMETRIC_VOICES["train"], "pico:es-ES", "pico:it-IT"}
    for bad, why in (("pico:en-GB", "validation and test"), ("rhvoice:slt", "validation and test"),
                     ("espeak:en-us", "engine one of"), ("pico", "engine one of")):
        with pytest.raises(ValueError, match=why):
            synth.parametric_voices("train", synth.SynthConfig(extra_train_voices=(bad,)))
    with pytest.raises(SystemExit):
        synth.main(["--out", "unused", "--extra-train-voices", "rhvoice:slt"])


def test_parametric_engines_speak_at_the_requested_rate() -> None:
    for engine, voice in (("pico", "en-US"), ("rhvoice", "clb")):
        normal = synth.synthesize(synth.Request(engine, voice, "call four two seven", 1.0, 1.0))
        slower = synth.synthesize(synth.Request(engine, voice, "call four two seven", 1.25, 1.2))
        assert 0.8 < normal.size / synth.SAMPLE_RATE < 3.0, (engine, normal.size)
        assert 1.1 < slower.size / normal.size < 1.45, (engine, slower.size / normal.size)
        assert np.max(np.abs(normal)) > 0.05


def test_smoke_synth_train_export_recognize(tmp_path: Path) -> None:
    data = tmp_path / "data"
    synth.main(["--out", str(data), "--train", "8", "--eval", "3", "--workers", "1", "--no-cache"])
    index = json.loads((data / "index.json").read_text())
    assert {v.split(":")[0] for v in index["splits"]["train"]["voices"]} <= {"espeak", "flite"}
    checkpoint = tmp_path / "checkpoint"
    assert train.main(["--data", str(data), "--out", str(checkpoint), "--max-steps", "2", "--hidden-size", "32",
                       "--schedule", "cosine"]) == 0
    history = json.loads((checkpoint / "history.json").read_text())
    assert history and np.isfinite(history[-1]["loss"])
    # two of two steps taken: the cosine schedule's last step ran at half the budget, still in its warm-up
    assert np.isclose(history[-1]["lr"], train.cosine_rate(train.TrainConfig(), 0.5, 1))
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


def test_cosine_schedule_warms_up_then_decays_to_its_floor_when_the_budget_ends() -> None:
    config = train.TrainConfig(learning_rate=2e-3, final_rate=0.02, warmup_steps=100, schedule="cosine")
    assert np.isclose(train.cosine_rate(config, 0.0, 0), 2e-4)  # a tenth of the rate at the first step
    assert np.isclose(train.cosine_rate(config, 0.0, 100), 2e-3)
    late = [train.cosine_rate(config, p, 1000) for p in np.linspace(0.0, 1.0, 21)]
    assert all(a > b for a, b in zip(late, late[1:]))
    assert np.isclose(late[10], 2e-3 * (0.02 + 0.98 * 0.5)) and np.isclose(late[-1], 4e-5)
    assert train.cosine_rate(config, 1.7, 1000) == late[-1]  # past the budget (the last epoch's tail): the floor


def test_warp_scales_duration_and_frequency() -> None:
    rate = synth.SAMPLE_RATE
    t = np.arange(rate) / rate
    tone = np.sin(2 * np.pi * 500.0 * t).astype(np.float32)
    faster = synth.warp(tone, 1.25)
    assert abs(faster.size - rate / 1.25) <= 2
    spectrum = np.abs(np.fft.rfft(faster))
    peak_hz = np.argmax(spectrum) * rate / faster.size
    assert abs(peak_hz - 625.0) < 5.0


def test_band_limit_removes_energy_above_the_cutoff() -> None:
    config = synth.SynthConfig(lowpass_probability=1.0, lowpass_hz=(3400.0, 3400.0), highpass_probability=0.0)
    noise = np.random.default_rng(0).normal(size=synth.SAMPLE_RATE).astype(np.float32)
    filtered = synth.band_limit(noise, config, np.random.default_rng(1))
    spectrum = np.abs(np.fft.rfft(filtered)) ** 2
    freqs = np.fft.rfftfreq(filtered.size, 1 / synth.SAMPLE_RATE)
    assert spectrum[freqs > 6000].mean() < 1e-3 * spectrum[freqs < 2000].mean()


def test_spec_augment_masks_only_inside_each_utterance() -> None:
    import torch

    config = train.TrainConfig(freq_masks=2, freq_mask_width=6, time_masks=2, time_mask_width=10)
    x = torch.randn(3, 200, 80)
    lengths = torch.tensor([200, 120, 50])
    fill = torch.full((80,), 7.0)
    masked = train.spec_augment(x, lengths, fill, 40, config, np.random.default_rng(0))
    changed = masked != x
    assert bool(changed.any()) and torch.all(masked[changed] == 7.0)
    # a masked band is masked in both stacked halves of a frame
    band_rows = changed[0].all(dim=0)
    assert torch.equal(band_rows[:40], band_rows[40:])
    assert torch.equal(x, x.clone())  # the input batch is left as it was


def test_demo_audio_places_each_utterance_where_its_speech_is(tmp_path: Path) -> None:
    from lstm_edge.recipes.asr import demo_audio

    data = tmp_path / "data"
    synth.main(["--out", str(data), "--train", "1", "--eval", "12", "--workers", "1", "--seed", "2", "--no-cache"])
    arrays = synth.load_split(data, "test")
    indices = demo_audio.pick(arrays)
    assert indices and len(set(indices)) == len(indices)
    assert all(synth.voices.is_held_out(str(arrays["voices"][i])) for i in indices)
    recording, events = demo_audio.build(arrays, indices)
    assert [e["text"] for e in events] == [str(arrays["texts"][i]) for i in indices]
    pieces = synth.utterances(arrays)
    for i, event in zip(indices, events):
        guess = int(round(event["start_s"] * synth.SAMPLE_RATE)) - int(arrays["speech_start"][i])
        # times are rounded to 1 ms (16 samples)
        assert any(np.array_equal(recording[s:s + pieces[i].size], pieces[i]) for s in range(guess - 16, guess + 17))


def test_lead_ins_put_quiet_noise_of_one_level_in_front_of_about_half() -> None:
    from lstm_edge.runtime.frontend import LogMelConfig, LogMelFrontend

    bank = train.lead_in_bank(LogMelFrontend(LogMelConfig()), stack=2, seconds=1.0)
    assert len(bank) == len(train.LEAD_IN_LEVELS) and all(b.shape[1] == 80 and b.shape[0] >= 50 for b in bank)
    means = [float(b.mean()) for b in bank]
    assert means == sorted(means) and means[-1] - means[0] > 5.0  # louder noise, more log power
    leads = train.lead_ins(400, bank, 25, np.random.default_rng(0))
    lengths = [lead.shape[0] for lead in leads]
    assert 150 < sum(n == 0 for n in lengths) < 250 and max(lengths) <= 25 and min(n for n in lengths if n) >= 5
    # each lead-in is a contiguous piece of one level of the bank
    lead = next(lead for lead in leads if lead.shape[0])
    assert any(any(np.array_equal(lead, b[i:i + lead.shape[0]]) for i in range(b.shape[0] - lead.shape[0] + 1))
               for b in bank)
    # the batch puts it in front: the utterance's own frames follow it unchanged, and the lengths count it
    features = [np.ones((7, 80), dtype=np.float32), np.ones((9, 80), dtype=np.float32)]
    x, lengths_t, _, _ = train._batch(features, ["one", "two"], np.array([0, 1]), [lead, leads[0][:0]])
    assert lengths_t.tolist() == [lead.shape[0] + 7, 9]
    assert np.array_equal(x[0, : lead.shape[0]].numpy(), lead) and bool((x[0, lead.shape[0]:lengths_t[0]] == 1).all())


def test_band_gain_adds_one_bounded_smooth_curve_per_utterance() -> None:
    import torch

    x = torch.zeros(4, 30, 80)
    out = train.band_gain(x, 40, 6.0, np.random.default_rng(1))
    curves = out[:, 0, :]
    # the same offset at every time step and in both stacked halves; at most 6 dB of power in natural-log units
    assert torch.equal(out, curves[:, None, :].expand_as(out))
    assert torch.equal(curves[:, :40], curves[:, 40:])
    assert float(curves.abs().max()) <= 6.0 * np.log(10.0) / 10.0 + 1e-6
    assert float(curves.abs().max()) > 0.1
    # one curve per utterance, smooth: neighbouring bands differ far less than the curve's range
    assert not torch.allclose(curves[0], curves[1])
    steps = (curves[:, 1:40] - curves[:, :39]).abs().max(dim=1).values
    spans = curves[:, :40].max(dim=1).values - curves[:, :40].min(dim=1).values
    assert bool(torch.all(steps < 0.35 * spans))
    assert torch.equal(x, torch.zeros(4, 30, 80))  # the input batch is left as it was


def test_mel_warp_moves_formants_by_the_drawn_factor() -> None:
    import torch

    from lstm_edge.runtime.frontend import LogMelConfig, LogMelFrontend

    config = LogMelConfig()
    frontend = LogMelFrontend(config)
    # a tone at 1 kHz and the same tone at 1.15 kHz: the warp that maps the first onto the second is alpha = 1.15
    t = np.arange(16000) / 16000.0
    low, high = (frontend.compute((0.3 * np.sin(2 * np.pi * f * t)).astype(np.float32)) for f in (1000.0, 1150.0))
    x = torch.from_numpy(np.concatenate([low, low], axis=1)[None]).repeat(64, 1, 1)
    out = train.mel_warp(x, config, 0.3, np.random.default_rng(0))
    # no warp leaves the features as they were
    assert torch.allclose(train.mel_warp(x, config, 0.0, np.random.default_rng(0)), x, atol=1e-4)
    # the same map in both stacked halves and at every time step
    assert torch.equal(out[:, :, :40], out[:, :, 40:])
    peaks = out[:, 10, :40].argmax(dim=1)
    assert len(set(peaks.tolist())) > 1  # one factor per utterance
    # some utterance drew a factor near 1.15: its peak lands in the band of the higher tone, not the lower one
    assert int(high[10].argmax()) != int(low[10].argmax())
    assert int(high[10].argmax()) in peaks.tolist()
    # formants only move up and down within the range: never further than a factor 1.3 would take them
    top = frontend.compute((0.3 * np.sin(2 * np.pi * 1300.0 * t)).astype(np.float32))[10].argmax()
    bottom = frontend.compute((0.3 * np.sin(2 * np.pi * 1000.0 / 1.3 * t)).astype(np.float32))[10].argmax()
    assert bool(((peaks >= int(bottom)) & (peaks <= int(top))).all())


def test_word_automaton_is_the_grammar_exactly() -> None:
    from lstm_edge.recipes.asr.grammar import sample_sentence, word_automaton
    from lstm_edge.runtime.ctc import Vocabulary

    automaton = word_automaton()
    vocabulary = Vocabulary(TOKENS, LEXICON, automaton)  # loads: deterministic, words in the lexicon
    successors = Vocabulary(TOKENS, LEXICON, word_graph())

    def accepts(v: Vocabulary, sentence: str) -> bool:
        context, last = v.context(sentence)
        return v.can_end(context, last)

    rng = np.random.default_rng(11)
    assert all(accepts(vocabulary, sample_sentence(rng)[1]) for _ in range(2000))
    # word sequences the pairwise graph lets through but no template makes
    outside = ["start a timer for sixty five seven", "one two", "call one two", "twenty zero", "mute mute",
               "set a timer for zero seconds", "one two three four five six seven eight nine", "hundred"]
    assert [accepts(vocabulary, s) for s in outside] == [False] * len(outside)
    assert accepts(successors, "start a timer for sixty five seven") and accepts(successors, "call one two")
    assert automaton["states"] < 100  # minimised


def test_export_settings_take_either_grammar_form() -> None:
    import pytest

    from lstm_edge.runtime.asr import RecognizerSettings
    from lstm_edge.runtime.ctc import Vocabulary

    config = {"tokens": list(TOKENS), "architecture": {"stack": 2}}
    for form, key in (("successors", "next"), ("automaton", "arcs")):
        settings = RecognizerSettings.from_manifest({"asr": export_model.asr_settings(config, grammar=form)})
        assert settings.grammar is not None and key in settings.grammar
        Vocabulary(settings.tokens, settings.lexicon, settings.grammar)
    with pytest.raises(ValueError, match="grammar"):
        export_model.asr_settings(config, grammar="bigram")


def test_evaluate_breaks_the_word_error_rate_down_by_voice(tmp_path: Path) -> None:
    from lstm_edge.recipes.asr import evaluate

    data = tmp_path / "data"
    synth.main(["--out", str(data), "--train", "1", "--eval", "8", "--workers", "1", "--seed", "4", "--no-cache"])
    arrays = synth.load_split(data, "test")
    model_dir = Path(__file__).resolve().parent.parent / "models" / "asr" / "export"
    result = evaluate.evaluate_precision(model_dir, arrays, "onnx", "float")
    voices = [str(v) for v in arrays["voices"]]
    words = {v: sum(len(str(t).split()) for t, w in zip(arrays["texts"], voices) if w == v) for v in set(voices)}
    assert set(result["wer_by_voice"]) == set(voices)
    assert set(result["wer_by_synthesiser_and_kind"]) == {f"{v.split(':')[0]}/{k}" for v, k in
                                                           zip(voices, arrays["kinds"])}
    # the word-weighted mean of the per-voice rates is the overall rate (each rounded to 4 places)
    mean = sum(result["wer_by_voice"][v] * n for v, n in words.items()) / sum(words.values())
    assert abs(mean - result["wer_all"]) < 1e-3


def test_a_resumed_training_run_equals_an_uninterrupted_one(tmp_path: Path) -> None:
    import torch

    data = tmp_path / "data"
    synth.main(["--out", str(data), "--train", "6", "--eval", "2", "--workers", "1", "--no-cache",
                "--splits", "train,validation"])
    common = ["--data", str(data), "--hidden-size", "16", "--threads", "1"]
    assert train.main([*common, "--out", str(tmp_path / "straight"), "--max-steps", "2"]) == 0
    assert train.main([*common, "--out", str(tmp_path / "stopped"), "--max-steps", "1"]) == 0
    assert train.main([*common, "--out", str(tmp_path / "stopped"), "--max-steps", "2", "--resume"]) == 0
    straight = torch.load(tmp_path / "straight" / train.RESUME_FILE, weights_only=True)
    resumed = torch.load(tmp_path / "stopped" / train.RESUME_FILE, weights_only=True)
    assert straight["steps"] == resumed["steps"] == 2 and len(resumed["history"]) == 2
    for name, tensor in straight["model"].items():
        assert torch.equal(tensor, resumed["model"][name]), name
    history = json.loads((tmp_path / "stopped" / "history.json").read_text())
    assert [h["loss"] for h in history] == [h["loss"] for h in straight["history"]]
    import pytest

    with pytest.raises(SystemExit):
        train.main([*common, "--out", str(tmp_path / "never"), "--resume"])
