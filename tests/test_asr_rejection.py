"""Rejection of out-of-grammar speech on the shipped recognizer (speech synthesised in the test by voices of the test
split), its spec (docs/manifest.md: tests/spec_client.py reproduces it), its evaluation and threshold choice, and
the shipped directory's C weight files (the ``native`` backend)."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import torch
from scipy.io import wavfile
from test_asr import MODEL_DIR, RATE, spoken

from lstm_edge.export.c_export import add_c_files
from lstm_edge.recipes.asr import choose_rejection, evaluate, export_model
from lstm_edge.recipes.asr.model import CtcLSTM
from lstm_edge.runtime.asr import RecognizerSettings, Result, SpeechRecognizer, stack_frames
from lstm_edge.runtime.ctc import RejectionRule, best_path_text, disagreement, greedy_decode
from lstm_edge.runtime.errors import ManifestError
from lstm_edge.runtime.manifest import SCHEMA_FILE, Manifest, schema_validator
from lstm_edge.runtime.model import StreamingModel

ROOT = Path(__file__).resolve().parent.parent
CLIENT = Path(__file__).with_name("spec_client.py")
LAUNCH = ("import runpy, sys; sys.modules['lstm_edge'] = None; sys.argv = sys.argv[1:]; "
          "runpy.run_path(sys.argv[0], run_name='__main__')")
RULE = RejectionRule(0.4)
# (text, voice): disagreement measured with the shipped model, lead 0.4 s, trail 1.2 s (0.3 s: the same)
GRAMMAR = (("call four two seven", "en-us-nyc+f3"), ("turn on the kitchen lights", "en-us-nyc+f3"))  # 0.0, 0.115
OUTSIDE = (("hello how are you today", "en-us-nyc+f3"),  # 0.478: rejected at 0.4
           ("the weather is lovely this morning", "en-gb-x-rp+m2"))  # 0.357: still taken for digits


def recognizer_with(rule: RejectionRule | None, backend: str = "onnx") -> SpeechRecognizer:
    model = StreamingModel.load(MODEL_DIR, backend=backend, precision="float")
    settings = RecognizerSettings.from_manifest(model.manifest.extra)
    return SpeechRecognizer(model, replace(settings, decoder=replace(settings.decoder, rejection=rule)))


@pytest.fixture(scope="module")
def measured() -> SpeechRecognizer:
    """Every final result with its disagreement, none rejected."""
    return recognizer_with(RejectionRule(1.0))


def finals(results: list[Result]) -> list[tuple]:
    return [(r.text, r.start, r.end, r.words, r.endpoint) for r in results if r.final]


def test_the_shipped_manifest_carries_a_rejection_rule() -> None:
    settings = RecognizerSettings.from_manifest(Manifest.load(MODEL_DIR).extra)
    assert settings.decoder.rejection == RejectionRule(export_model.DEFAULT_REJECTION["max_disagreement"])


def test_out_of_grammar_speech_gives_no_result_and_clears_its_partial(measured: SpeechRecognizer) -> None:
    text, voice = OUTSIDE[0]
    audio = spoken(text, voice)
    [heard] = measured.transcribe(audio)
    assert heard.text and heard.disagreement is not None and heard.disagreement > RULE.max_disagreement
    rejecting = recognizer_with(RULE)
    assert rejecting.transcribe(audio) == []
    results = rejecting.transcribe(audio, partial=True)
    assert any(r.text for r in results) and results[-1] == Result("", final=False)
    assert not any(r.final for r in results)
    for text, voice in GRAMMAR:  # grammar speech is kept
        assert [r.text for r in rejecting.transcribe(spoken(text, voice))] == [text]


def test_rejection_only_drops_final_results(measured: SpeechRecognizer) -> None:
    """In one stream, with the rule off, measuring or rejecting: the same utterances, the same words and times; a
    rule keeps exactly the final results at or below its limit (what evaluate.py and choose_rejection.py rely on)."""
    audio = np.concatenate([spoken(t, v) for t, v in (GRAMMAR[0], OUTSIDE[0], OUTSIDE[1], GRAMMAR[1])])
    all_results = measured.transcribe(audio, chunk_seconds=0.37)
    off = recognizer_with(None).transcribe(audio, chunk_seconds=0.37)
    assert finals(off) == finals(all_results) and len(off) == 4
    assert all(r.disagreement is None for r in off) and all(r.disagreement is not None for r in all_results)
    for limit in (0.0, 0.2, 0.5):
        kept = [r for r in all_results if r.disagreement is not None and r.disagreement <= limit]
        assert finals(recognizer_with(RejectionRule(limit)).transcribe(audio, chunk_seconds=0.37)) == finals(kept)
    assert [r.text for r in recognizer_with(RejectionRule(0.2)).transcribe(audio)] == [t for t, _ in GRAMMAR]


def test_cli_prints_nothing_for_out_of_grammar_speech(tmp_path: Path) -> None:
    """``transcribe`` applies the manifest's rule (here a copy of the shipped model with the rule at RULE)."""
    model_dir = tmp_path / "asr"
    shutil.copytree(MODEL_DIR, model_dir)
    manifest = json.loads((model_dir / "manifest.json").read_text())
    manifest["extra"]["asr"]["decoder"]["rejection"]["max_disagreement"] = RULE.max_disagreement
    (model_dir / "manifest.json").write_text(json.dumps(manifest))
    path = tmp_path / "hello.wav"
    wavfile.write(path, RATE, spoken(*OUTSIDE[0]))
    done = subprocess.run([sys.executable, "-m", "lstm_edge", "transcribe", str(model_dir), str(path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and "0 utterance(s)" in done.stderr


def test_spec_client_reproduces_the_rejection(measured: SpeechRecognizer, tmp_path: Path) -> None:
    """The client, from docs/manifest.md alone: on the runtime's own output frames, the same disagreement to the
    last bit; on audio (one utterance ended by the end of the input), its own features and model run give the
    runtime's disagreement and decision."""
    rule = RecognizerSettings.from_manifest(Manifest.load(MODEL_DIR).extra).decoder.rejection
    assert rule is not None
    utterances: dict[str, np.ndarray] = {}
    expected: dict[str, float] = {}
    model = StreamingModel.load(MODEL_DIR, backend="onnx", precision="float")
    tokens = measured.settings.tokens
    for i, (text, voice) in enumerate(GRAMMAR + OUTSIDE):
        pcm = spoken(text, voice, trail=0.3)
        [result] = measured.transcribe(pcm)
        assert result.endpoint == "end_of_input" and result.disagreement is not None
        utterances[f"pcm_{i}"], utterances[f"text_{i}"] = pcm, np.array(result.text)
        expected[str(i)] = result.disagreement
        features = stack_frames(measured.frontend.compute(pcm), measured.settings.frame_stack)
        log_probs = model.create_stream().push(features).astype(np.float64)
        j = str(len(GRAMMAR + OUTSIDE) + i)  # the same frames, another text: the grammar's first sentence
        utterances[f"log_probs_{j}"], utterances[f"text_{j}"] = log_probs, np.array(GRAMMAR[0][0])
        expected[j] = disagreement(GRAMMAR[0][0], best_path_text(greedy_decode(log_probs), tokens))
    np.savez(tmp_path / "utterances.npz", **utterances)
    done = subprocess.run([sys.executable, "-c", LAUNCH, str(CLIENT), str(MODEL_DIR), str(tmp_path / "out.npz"),
                           "--asr", str(tmp_path / "utterances.npz")], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    with np.load(tmp_path / "out.npz") as client:
        got = {i: float(client[f"asr/disagreement_{i}"]) for i in expected}
        rejected = {i: bool(client[f"asr/rejected_{i}"]) for i in expected}
        assert {"onnx/float", "onnx/int8", "tflite/float", "tflite/int8"} <= set(client.files)
    assert got == expected
    assert rejected == {i: rule.rejects(d) for i, d in expected.items()}
    assert set(rejected.values()) == {True, False}


def test_the_schema_and_the_runtime_agree_on_rejection_settings() -> None:
    reference = jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text()))
    document = json.loads((MODEL_DIR / "manifest.json").read_text())

    def with_rule(rule: object) -> dict:
        changed = copy.deepcopy(document)
        changed["extra"]["asr"]["decoder"]["rejection"] = rule
        return changed

    for good in (None, {"method": "best_path_disagreement", "max_disagreement": 0}, RULE.to_dict()):
        reference.validate(with_rule(good))
        schema_validator().validate(with_rule(good))
        RecognizerSettings.from_manifest(with_rule(good)["extra"])
    for bad in ({"method": "best_path_disagreement", "max_disagreement": 1.5},
                {"method": "best_path_gap", "max_disagreement": 0.5}, {"max_disagreement": 0.5},
                {"method": "best_path_disagreement", "max_disagreement": 0.5, "frames": 3}, 0.5):
        with pytest.raises(jsonschema.ValidationError):
            reference.validate(with_rule(bad))
        with pytest.raises(ManifestError, match="rejection"):
            schema_validator().validate(with_rule(bad))
        with pytest.raises(ManifestError, match="rejection"):
            RecognizerSettings.from_manifest(with_rule(bad)["extra"])


def _run(*finals: tuple[str, float]) -> evaluate.Run:
    return evaluate.Run(tuple(evaluate.Final(text, d, 1.0) for text, d in finals), 0.1, 2.0)


def test_evaluation_leaves_out_of_grammar_utterances_out_of_the_wer() -> None:
    arrays = {"texts": np.array(["one two", "hello there", "call one two", "good day", "mute"]),
              "kinds": np.array(["digits", "out_of_grammar", "command", "out_of_grammar", "command"]),
              "voices": np.array(["espeak:a", "espeak:a", "flite:b", "flite:b", "flite:b"])}
    runs = [_run(("one two", 0.1)), _run(("six", 0.7)), _run(("call one", 0.6), ("two", 0.2)),
            _run(("four", 0.3)), _run()]
    off = evaluate.score(runs, arrays, None)
    assert off["wer_all"] == round(1 / 6, 4) and off["words"] == {"command": 4, "digits": 2}
    assert off["out_of_grammar_with_text"]["rate"] == 1.0 and off["in_grammar_rejected"]["utterances"] == 0
    on = evaluate.score(runs, arrays, RULE)
    assert on["wer_all"] == round(3 / 6, 4)  # "call one" rejected: two more deletions, "mute" deleted as before
    assert on["in_grammar_rejected"] == {"utterances": 1, "of": 3, "rate": round(1 / 3, 4),
                                         "by_synthesiser": {"espeak": 0.0, "flite": 0.5}}
    assert on["out_of_grammar_with_text"] == {"utterances": 1, "of": 2, "rate": 0.5,
                                              "by_synthesiser": {"espeak": 0.0, "flite": 1.0}}


def test_the_chooser_takes_the_lowest_acceptance_within_the_wer_budget() -> None:
    point = choose_rejection.Point
    points = [point(None, 0.10, 0.0, 1.0), point(0.2, 0.15, 0.2, 0.1), point(0.4, 0.102, 0.03, 0.5),
              point(0.5, 0.101, 0.01, 0.5), point(0.7, 0.10, 0.0, 0.9)]
    assert choose_rejection.choose(points).threshold == 0.5  # 0.4 and 0.5 tie on acceptance: fewer rejections
    assert choose_rejection.choose(points, max_wer_increase=0.1).threshold == 0.2
    assert choose_rejection.choose(points[:2]).threshold is None


def test_the_chooser_runs_on_a_validation_split(tmp_path: Path) -> None:
    pieces = [spoken(t, v) for t, v in GRAMMAR + OUTSIDE]
    kinds = ["digits", "command", "out_of_grammar", "out_of_grammar"]
    data = tmp_path / "data"
    data.mkdir()
    np.savez(data / "validation.npz", audio=np.concatenate(pieces),
             offsets=np.cumsum([0] + [p.size for p in pieces]), texts=np.array([t for t, _ in GRAMMAR + OUTSIDE]),
             kinds=np.array(kinds), voices=np.array([f"espeak:{v}" for _, v in GRAMMAR + OUTSIDE]),
             speech_start=np.full(4, int(0.4 * RATE)), speech_end=np.array([p.size - int(1.2 * RATE) for p in pieces]))
    out = tmp_path / "choice.json"
    assert choose_rejection.main([str(MODEL_DIR), "--data", str(data), "--thresholds", "0.2,0.4,0.9",
                                  "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    sweep = {p["max_disagreement"]: p for p in report["sweep"]}
    assert set(sweep) == {None, 0.2, 0.4, 0.9}
    assert sweep[None]["out_of_grammar_acceptance"] == 1.0 and sweep[0.4]["out_of_grammar_acceptance"] == 0.5
    assert sweep[0.2]["out_of_grammar_acceptance"] == 0.0 and sweep[0.2]["wer"] == sweep[None]["wer"] == 0.0
    assert report["rejection"] == {"method": "best_path_disagreement", "max_disagreement": 0.2}
    with pytest.raises(ValueError, match="out_of_grammar"):
        choose_rejection.decode_validation(MODEL_DIR, data, "onnx", "float", limit=2)


def test_export_writes_the_rejection_rule_and_the_c_files(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = json.loads((ROOT / "models" / "asr" / "config.json").read_text())
    config["architecture"].update(input_size=16, hidden_size=16)
    checkpoint = tmp_path / "checkpoint"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text(json.dumps(config))
    torch.save(CtcLSTM(**config["architecture"]).state_dict(), checkpoint / "float.pt")
    rule = {"method": "best_path_disagreement", "max_disagreement": 0.3}
    out = export_model.export_recognizer(checkpoint, None, tmp_path / "model", formats=("onnx",), rejection=rule)
    manifest = Manifest.load(out)
    assert {(f.format, f.precision) for f in manifest.files} == {(f, p) for f in ("onnx", "c")
                                                                  for p in ("float", "int8")}
    assert manifest.extra["asr"]["decoder"]["rejection"] == rule
    reference = np.load(out / manifest.reference["input"])
    native = StreamingModel.load(out, backend="native").create_stream().push(reference)
    onnx = StreamingModel.load(out, backend="onnx").create_stream().push(reference)
    assert float(np.abs(native - onnx).max()) < 1e-4
    assert "rejection" not in export_model.asr_settings(config, rejection=None)["decoder"]
    assert export_model.asr_settings(config)["decoder"]["rejection"] == export_model.DEFAULT_REJECTION


def _transcribe(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lstm_edge", "transcribe", str(MODEL_DIR),
                           str(ROOT / "models" / "asr" / "demo.wav"), *args], capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("precision", ["float", "int8"])
def test_the_shipped_recognizer_runs_on_the_native_backend(precision: str) -> None:
    native = _transcribe("--backend", "native", "--precision", precision)
    onnx = _transcribe("--backend", "onnx", "--precision", precision)
    assert native.returncode == 0 and onnx.returncode == 0, native.stderr + onnx.stderr
    assert "on native (lstm-edge C" in native.stderr and "on onnx" in onnx.stderr
    assert len(native.stdout.splitlines()) == len(onnx.stdout.splitlines()) == 4
    same = sum(a == b for a, b in zip(native.stdout.splitlines(), onnx.stdout.splitlines()))
    # float: the same text; int8: the C kernels quantize activations their own way (not onnxruntime's), so an
    # utterance near a decision may differ (on the shipped demo: one of four)
    assert same == 4 if precision == "float" else same >= 3


def test_add_c_reproduces_the_shipped_c_files(tmp_path: Path) -> None:
    copy_dir = tmp_path / "asr"
    shutil.copytree(MODEL_DIR, copy_dir)
    for name in ("model.lec", "model.int8.lec"):
        (copy_dir / name).unlink()
    manifest, shipped = add_c_files(copy_dir), Manifest.load(MODEL_DIR)
    for precision in ("float", "int8"):
        assert manifest.file("c", precision).sha256 == shipped.file("c", precision).sha256
    assert [f.key for f in manifest.files] == [f.key for f in shipped.files]
