"""The C99 frontend and detector (runtime/native) against the numpy frontend and runtime/kws.py.

Built with gcc for this machine, and statically for aarch64 and armv7 (run under qemu-aarch64 / qemu-arm): on every
target the features match ``LogMelFrontend`` within 1e-4 on the shipped model's demo audio and its stored reference
input, under random chunkings, and the detections on the same logits equal ``KeywordStream``'s.
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from lstm_edge.runtime import StreamingModel
from lstm_edge.runtime.frontend import LogMelConfig, LogMelFrontend
from lstm_edge.runtime.kws import DetectorConfig, KeywordSpotter, softmax

ROOT = Path(__file__).resolve().parent.parent
NATIVE = ROOT / "runtime" / "native"
MODEL_DIR = ROOT / "models" / "kws" / "export"
DEMO_WAV = ROOT / "models" / "kws" / "demo.wav"
CFLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O2"]
FEATURE_TOLERANCE = 1e-4


@dataclass(frozen=True)
class Target:
    name: str
    compiler: str
    extra_flags: tuple[str, ...]
    runner: tuple[str, ...]


TARGETS = [
    Target("x86_64", "gcc", (), ()),
    Target("aarch64", "aarch64-linux-gnu-gcc", ("-static",), ("qemu-aarch64",)),
    Target("armv7", "arm-linux-gnueabihf-gcc", ("-static",), ("qemu-arm",)),
]


@dataclass(frozen=True)
class Cli:
    target: Target
    binary: Path

    def run(self, args: list[str], stdin: bytes, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([*self.target.runner, str(self.binary), *args], input=stdin, capture_output=True,
                                timeout=300)
        if check and result.returncode != 0:
            raise RuntimeError(f"{self.target.name} cli {args[:1]} exit {result.returncode}: {result.stderr!r}")
        return result

    def features(self, samples: np.ndarray, config: LogMelConfig, chunks: Path | None = None,
                 extra: tuple[str, ...] = ()) -> np.ndarray:
        args = ["features", *extra, "input=" + ("int16" if samples.dtype == np.int16 else "float32")]
        # The tunable settings only (to_dict() also states the fixed choices, which the C frontend implements).
        args += [f"{k}={v!r}" for k, v in dataclasses.asdict(config).items() if k not in ("window", "mel_scale")]
        if chunks is not None:
            args.append(f"chunks={chunks}")
        out = self.run(args, samples.astype("<i2" if samples.dtype == np.int16 else "<f4").tobytes()).stdout
        return np.frombuffer(out, dtype="<f4").reshape(-1, config.n_mels)

    def detect(self, logits: np.ndarray, labels: tuple[str, ...], config: DetectorConfig,
               chunks: Path | None = None, extra: tuple[str, ...] = ()) -> list[dict]:
        args = ["detect", *extra, "labels=" + ",".join(labels), "scores_are_logits=1"]
        args += [f"{k}={v!r}" for k, v in vars(config).items()]
        if chunks is not None:
            args.append(f"chunks={chunks}")
        out = self.run(args, np.ascontiguousarray(logits, dtype="<f4").tobytes()).stdout.decode()
        return [json.loads(line) for line in out.splitlines()]


@pytest.fixture(scope="module", params=TARGETS, ids=[t.name for t in TARGETS])
def cli(request, tmp_path_factory) -> Cli:
    target: Target = request.param
    binary = tmp_path_factory.mktemp(f"native-{target.name}") / "lstm_edge_audio_cli"
    subprocess.run([target.compiler, *CFLAGS, *target.extra_flags, "-o", str(binary),
                    str(NATIVE / "lstm_edge_audio.c"), str(NATIVE / "lstm_edge_audio_cli.c"), "-lm"],
                   check=True, capture_output=True, timeout=300)
    if target.runner:
        kind = subprocess.run(["file", str(binary)], capture_output=True, text=True).stdout
        assert ("ARM aarch64" if target.name == "aarch64" else "ARM, EABI5") in kind, kind
    return Cli(target, binary)


def demo_pcm() -> np.ndarray:
    with wave.open(str(DEMO_WAV), "rb") as handle:
        assert handle.getframerate() == 16000 and handle.getnchannels() == 1 and handle.getsampwidth() == 2
        return np.frombuffer(handle.readframes(handle.getnframes()), dtype="<i2").astype(np.int16)


def write_chunks(path: Path, seed: int, low: int, high: int) -> Path:
    lengths = np.random.default_rng(seed).integers(low, high, size=500)
    path.write_text(" ".join(str(n) for n in lengths) + "\n")
    return path


def python_stream_features(samples: np.ndarray, config: LogMelConfig, chunks: Path) -> np.ndarray:
    """The numpy FrontendStream fed in the same chunks as the C program (chunk list cycled)."""
    lengths = [int(n) for n in chunks.read_text().split()]
    stream = LogMelFrontend(config).create_stream()
    out, offset, index = [], 0, 0
    while offset < samples.shape[0]:
        n = lengths[index % len(lengths)]
        out.append(stream.push(samples[offset:offset + n]))
        offset, index = offset + n, index + 1
    return np.concatenate(out)


def test_features_match_numpy_on_demo_audio(cli: Cli, tmp_path: Path) -> None:
    pcm = demo_pcm()
    config = LogMelConfig()
    expected = LogMelFrontend(config).compute(pcm)
    whole = cli.features(pcm, config)
    assert whole.shape == expected.shape and expected.shape[1] == 40 and expected.shape[0] > 500  # ~8.5 s demo
    assert np.abs(whole - expected).max() <= FEATURE_TOLERANCE
    for seed, (low, high) in enumerate([(1, 50), (1, 2000), (150, 170), (399, 402)]):
        chunks = write_chunks(tmp_path / f"chunks{seed}.txt", seed, low, high)
        chunked = cli.features(pcm, config, chunks)
        assert chunked.shape == expected.shape
        assert np.abs(chunked - expected).max() <= FEATURE_TOLERANCE, (low, high)
        assert np.abs(python_stream_features(pcm, config, chunks) - chunked).max() <= FEATURE_TOLERANCE


def test_reset_gives_a_fresh_stream(cli: Cli, onnx_model: StreamingModel, tmp_path: Path) -> None:
    """The input twice with a reset in between: both passes equal a fresh stream, though the first one ended with
    samples held back (frontend) and a detection open (detector)."""
    pcm = demo_pcm()[:16000 * 3 + 250]
    config = LogMelConfig()
    chunks = write_chunks(tmp_path / "chunks.txt", 4, 1, 900)
    twice = cli.features(pcm, config, chunks, extra=("repeat=2",))
    expected = LogMelFrontend(config).compute(pcm)
    assert twice.shape == (2 * expected.shape[0], 40)
    assert np.abs(twice - np.concatenate([expected, expected])).max() <= FEATURE_TOLERANCE
    logits = np.full((400, len(onnx_model.manifest.labels)), -4.0, dtype=np.float32)
    logits[:, 0] = 2.0
    logits[100:200, 4] = 6.0
    logits[350:, 5] = 6.0  # still open at the end: closed by the flush
    stream = KeywordSpotter(onnx_model, DetectorConfig()).create_stream()  # the C run below uses the defaults
    once = [d.to_dict() for d in stream._consume(softmax(logits.astype(np.float64))) + stream.flush()]
    assert [d["label"] for d in once] == ["up", "down"]
    got = cli.detect(logits, onnx_model.manifest.labels, DetectorConfig(), chunks, extra=("repeat=2",))
    assert same_detections(got, once + once)


def test_features_match_the_manifest_reference_input(cli: Cli) -> None:
    """The shipped model's stored reference input is the log-mel of demo.wav: the C frontend reproduces it."""
    manifest = json.loads((MODEL_DIR / "manifest.json").read_text())
    reference = np.load(MODEL_DIR / manifest["reference"]["input"]).reshape(-1, manifest["frontend"]["n_mels"])
    config = LogMelConfig.from_dict(manifest["frontend"])
    assert np.abs(cli.features(demo_pcm(), config) - reference).max() <= FEATURE_TOLERANCE


@pytest.mark.parametrize("settings", [
    dict(n_fft=256, win_length=256, hop_length=100, n_mels=20, f_min=0.0, f_max=8000.0, log_floor=1e-10),
    dict(sample_rate=8000, n_fft=1024, win_length=1000, hop_length=1000, n_mels=64, f_max=4000.0),
    dict(n_fft=512, win_length=300, hop_length=320, n_mels=80, f_min=50.0, f_max=8000.0, log_floor=1e-3),
    dict(n_fft=8, win_length=8, hop_length=3, n_mels=2, f_min=0.0, f_max=8000.0),
    dict(n_fft=4, win_length=3, hop_length=1, n_mels=1, f_min=0.0, f_max=8000.0),
], ids=["win=nfft", "hop=win", "hop>win", "nfft=8", "nfft=4"])
def test_other_configs_and_float_input(cli: Cli, settings: dict, tmp_path: Path) -> None:
    config = LogMelConfig(**settings)
    rng = np.random.default_rng(7)
    tone = np.sin(2 * np.pi * 440.0 * np.arange(24000) / config.sample_rate)
    samples = (0.3 * tone + 0.05 * rng.standard_normal(24000)).astype(np.float32)
    samples[5000:9000] = 0.0  # silence: features at the log floor
    expected = LogMelFrontend(config).compute(samples)
    chunks = write_chunks(tmp_path / "chunks.txt", 3, 1, 700)
    got = cli.features(samples, config, chunks)
    assert got.shape == expected.shape and expected.shape[0] > 10
    assert np.abs(got - expected).max() <= FEATURE_TOLERANCE
    assert np.isclose(got.min(), np.log(config.log_floor), atol=1e-6)


def test_bad_config_and_nonfinite_input_are_refused(cli: Cli) -> None:
    bad = cli.run(["features", "n_fft=500"], b"", check=False)
    assert bad.returncode == 1 and b"n_fft: expected a power of two" in bad.stderr
    bad = cli.run(["features", "win_length=600"], b"", check=False)
    assert bad.returncode == 1 and b"win_length: expected in (0, n_fft]" in bad.stderr
    samples = np.zeros(1000, dtype="<f4")
    samples[500] = np.nan
    bad = cli.run(["features", "input=float32"], samples.tobytes(), check=False)
    assert bad.returncode == 1 and b"NaN or inf" in bad.stderr


def python_detections(spotter: KeywordSpotter, pcm: np.ndarray, chunk: int,
                      flush: bool = True) -> tuple[list[dict], np.ndarray]:
    """KeywordStream's detections on ``pcm`` pushed in chunks, and the logits its model produced on the way
    (recomputed by the same frontend and model stream in the same chunks: identical arithmetic)."""
    stream = spotter.create_stream()
    frontend, model_stream = spotter.frontend.create_stream(), spotter.model.create_stream()
    detections, logits = [], []
    for start in range(0, pcm.shape[0], chunk):
        piece = pcm[start:start + chunk]
        detections += stream.push(piece)
        frames = frontend.push(piece)
        if frames.shape[0]:
            logits.append(model_stream.push(frames))
    if flush:
        detections += stream.flush()
    return [d.to_dict() for d in detections], np.concatenate(logits)


def same_detections(c_found: list[dict], python_found: list[dict]) -> bool:
    if len(c_found) != len(python_found):
        return False
    for c, p in zip(c_found, python_found):
        if c["label"] != p["label"] or abs(c["start"] - p["start"]) > 1e-9 or abs(c["end"] - p["end"]) > 1e-9:
            return False
        if abs(round(c["score"], 4) - p["score"]) > 1e-9:
            return False
    return True


@pytest.fixture(scope="module")
def onnx_model() -> StreamingModel:
    return StreamingModel.load(MODEL_DIR, backend="onnx", precision="float")


@pytest.mark.parametrize("detector", [
    DetectorConfig(),
    DetectorConfig(threshold=0.45, smoothing_frames=3, refractory_s=0.1, max_event_s=0.3),
    DetectorConfig(threshold=0.8, smoothing_frames=20, refractory_s=1.5, onset_level=0.5, lookback_s=0.3),
], ids=["defaults", "eager", "strict"])
def test_detections_equal_keyword_stream_on_demo_audio(cli: Cli, onnx_model: StreamingModel,
                                                       detector: DetectorConfig, tmp_path: Path) -> None:
    spotter = KeywordSpotter(onnx_model, detector)
    expected, logits = python_detections(spotter, demo_pcm(), chunk=1600)
    assert len(expected) >= 3  # the demo holds several keywords: an empty list would prove nothing
    assert same_detections(cli.detect(logits, spotter.labels, detector), expected)
    chunks = write_chunks(tmp_path / "frames.txt", 11, 1, 40)
    assert same_detections(cli.detect(logits, spotter.labels, detector, chunks), expected)


def test_detections_on_synthetic_logits(cli: Cli, onnx_model: StreamingModel, tmp_path: Path) -> None:
    """Bursts of every keyword, overlapping and back to back: exercises max_event_s, refractory and onsets."""
    rng = np.random.default_rng(5)
    labels_count = len(onnx_model.manifest.labels)
    logits = rng.normal(0.0, 1.0, size=(3000, labels_count)).astype(np.float32)
    logits[:, 0] += 3.0
    position = 0
    while position < 2900:
        length = int(rng.integers(5, 150))
        logits[position:position + length, int(rng.integers(2, labels_count))] += float(rng.uniform(3.0, 9.0))
        position += length + int(rng.integers(0, 60))
    for detector in (DetectorConfig(), DetectorConfig(threshold=0.5, smoothing_frames=2, refractory_s=0.0,
                                                      max_event_s=0.2, onset_level=0.1)):
        stream = KeywordSpotter(onnx_model, detector).create_stream()
        expected = [d.to_dict() for d in stream._consume(softmax(logits.astype(np.float64))) + stream.flush()]
        assert len(expected) >= 10
        chunks = write_chunks(tmp_path / "frames.txt", 2, 1, 30)
        assert same_detections(cli.detect(logits, onnx_model.manifest.labels, detector, chunks), expected)


# ------------------------------------------------------------------------------------------ bundles on a board
@pytest.fixture(scope="module")
def model_with_frontend_reference(tmp_path_factory) -> Path:
    """A copy of the shipped model directory whose manifest also names a frontend reference vector (1 s of the
    demo audio and its numpy features), as the bundle and `run.sh --self-test` read it."""
    import shutil

    model_dir = tmp_path_factory.mktemp("kws-model") / "export"
    shutil.copytree(MODEL_DIR, model_dir)
    pcm = demo_pcm()[16000:32000]
    np.save(model_dir / "reference" / "frontend_input.npy", pcm)
    np.save(model_dir / "reference" / "frontend_output.npy", LogMelFrontend().compute(pcm))
    manifest = json.loads((model_dir / "manifest.json").read_text())
    manifest["reference"].update(frontend_input="reference/frontend_input.npy",
                                 frontend_output="reference/frontend_output.npy")
    (model_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return model_dir


def test_bundles_ship_reference_arrays_and_the_c_frontend(model_with_frontend_reference: Path, tmp_path: Path) -> None:
    from lstm_edge.devices.bundle import extract_bundle, make_bundle

    archive = make_bundle(model_with_frontend_reference, "android-arm64", tmp_path / "kws-android.tar.gz",
                          log=lambda m: None)
    root = extract_bundle(archive, tmp_path / "phone")
    for name in ("input", "output", "frontend_input", "frontend_output"):
        assert (root / "model" / "reference" / f"{name}.npy").is_file(), name
    for name in ("lstm_edge_audio.h", "lstm_edge_audio.c", "lstm_edge_audio_cli.c"):
        assert (root / "native" / name).read_bytes() == (NATIVE / name).read_bytes()


@pytest.mark.slow
def test_run_sh_self_test_on_an_x86_board(model_with_frontend_reference: Path, tmp_path: Path) -> None:
    """install.sh then `run.sh --self-test` on this machine as an x86_64 board: passes on the intact bundle and
    fails, naming the check, when a reference array is altered or no C compiler is found."""
    import os
    import sys

    from lstm_edge.devices.bundle import extract_bundle, make_bundle

    archive = make_bundle(model_with_frontend_reference, "x86_64-linux", tmp_path / "kws-x86.tar.gz",
                          python="{}.{}".format(*sys.version_info[:2]), backend="onnx", precision="float",
                          wheel_cache=tmp_path / "wheels", log=lambda m: None)
    root = extract_bundle(archive, tmp_path / "board")
    env = {**os.environ, "PYTHON": sys.executable, "LSTM_EDGE_PIP_ARGS": "--no-compile"}
    install = subprocess.run([str(root / "install.sh")], env=env, capture_output=True, text=True, timeout=900)
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-2000:]

    def self_test(**extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(root / "run.sh"), "--self-test"], env={**os.environ, **extra},
                              capture_output=True, text=True, timeout=300)

    passed = self_test()
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert re.search(r"ok    model: onnx float, \d+ frames", passed.stdout), passed.stdout
    assert "ok    C frontend: the manifest's frontend reference vector: 98 frames" in passed.stdout
    assert "FAIL" not in passed.stdout

    no_compiler = self_test(CC="no-such-cc")
    assert no_compiler.returncode == 1 and "FAIL  C frontend: no C compiler 'no-such-cc'" in no_compiler.stdout

    features_path = root / "model" / "reference" / "frontend_output.npy"
    np.save(features_path, np.load(features_path) + np.float32(1e-3))
    output_path = root / "model" / "reference" / "output.npy"
    np.save(output_path, np.load(output_path) * np.float32(1.01))
    altered = self_test()
    assert altered.returncode == 1
    assert "FAIL  model: onnx float" in altered.stdout and "FAIL  C frontend: the manifest's" in altered.stdout


JAVA_HARNESS = """
package com.example.kws;

import java.io.DataInputStream;
import java.io.FileInputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Paths;

/** The guide's NativeAudio object, as the JVM sees it (static natives), driven over files. */
public final class NativeAudio {
    static native long frontendCreate(int sampleRate, int nFft, int winLength, int hopLength, int nMels,
                                      double fMin, double fMax, double logFloor);
    static native int frontendPush(long handle, short[] pcm, int n, float[] features);
    static native void frontendReset(long handle);
    static native void frontendFree(long handle);
    static native long detectorCreate(String[] labels, boolean logits, double[] settings, int[] timing);
    static native int detectorPush(long handle, float[] scores, int frames, double[] out);
    static native void detectorReset(long handle);
    static native void detectorFree(long handle);

    public static void main(String[] args) throws Exception {
        System.load(args[0]);
        ByteBuffer pcmBytes = ByteBuffer.wrap(Files.readAllBytes(Paths.get(args[1]))).order(ByteOrder.LITTLE_ENDIAN);
        short[] pcm = new short[pcmBytes.remaining() / 2];
        pcmBytes.asShortBuffer().get(pcm);
        long frontend = frontendCreate(16000, 512, 400, 160, 40, 20.0, 7600.0, 1e-6);
        float[] features = new float[1024 * 40];
        ByteBuffer out = ByteBuffer.allocate(4 * 40 * (pcm.length / 160 + 1)).order(ByteOrder.LITTLE_ENDIAN);
        for (int start = 0; start < pcm.length; start += 1234) {
            int n = Math.min(1234, pcm.length - start);
            short[] piece = java.util.Arrays.copyOfRange(pcm, start, start + n);
            int frames = frontendPush(frontend, piece, n, features);
            for (int i = 0; i < frames * 40; i++) out.putFloat(features[i]);
        }
        frontendFree(frontend);
        Files.write(Paths.get(args[2]), java.util.Arrays.copyOf(out.array(), out.position()));

        ByteBuffer logitBytes = ByteBuffer.wrap(Files.readAllBytes(Paths.get(args[3]))).order(ByteOrder.LITTLE_ENDIAN);
        float[] logits = new float[logitBytes.remaining() / 4];
        logitBytes.asFloatBuffer().get(logits);
        String[] labels = args[4].split(",");
        long detector = detectorCreate(labels, true, new double[] {0.6, 0.6, 1.0, 0.2, 1.2},
                                       new int[] {8, 16000, 400, 160});
        double[] found = new double[4 * 513];
        int frames = logits.length / labels.length;
        for (int start = 0; start < frames; start += 10) {
            int n = Math.min(10, frames - start);
            float[] chunk = java.util.Arrays.copyOfRange(logits, start * labels.length, (start + n) * labels.length);
            int count = detectorPush(detector, chunk, n, found);
            for (int k = 0; k < count; k++) {
                System.out.println(labels[(int) found[4 * k]] + " " + found[4 * k + 1] + " " + found[4 * k + 2] + " "
                                   + found[4 * k + 3]);
            }
        }
        detectorFree(detector);
    }
}
"""


def test_android_guide_jni_glue_runs_on_a_jvm(onnx_model: StreamingModel, tmp_path: Path) -> None:
    """The JNI file of the rendered Android guide, compiled with the C library and called from a JVM class with the
    guide's native signatures: same features as numpy, same detections as KeywordStream (no flush in the guide)."""
    import re
    import shutil

    from lstm_edge.devices.bundle import extract_bundle, make_bundle

    root = extract_bundle(make_bundle(MODEL_DIR, "android-arm64", tmp_path / "a.tar.gz", log=lambda m: None),
                          tmp_path / "phone")
    guide = (root / "README.md").read_text()
    jni_source = re.search(r"`app/src/main/cpp/lstm_edge_jni.c`.*?```c\n(.*?)```", guide, re.S).group(1)
    (tmp_path / "lstm_edge_jni.c").write_text(jni_source)
    java_home = Path(shutil.which("javac")).resolve().parent.parent
    library = tmp_path / "liblstm_edge_audio.so"
    subprocess.run(["gcc", "-std=c99", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Werror", "-O2", "-shared",
                    "-fPIC", f"-I{java_home / 'include'}", f"-I{java_home / 'include' / 'linux'}",
                    f"-I{root / 'native'}",
                    "-o", str(library), str(root / "native" / "lstm_edge_audio.c"), str(tmp_path / "lstm_edge_jni.c"),
                    "-lm"], check=True, capture_output=True, timeout=300)
    source_dir = tmp_path / "java" / "com" / "example" / "kws"
    source_dir.mkdir(parents=True)
    (source_dir / "NativeAudio.java").write_text(JAVA_HARNESS)
    subprocess.run(["javac", "-d", str(tmp_path / "classes"), str(source_dir / "NativeAudio.java")], check=True,
                   capture_output=True, timeout=300)
    pcm = demo_pcm()
    (tmp_path / "pcm.raw").write_bytes(pcm.astype("<i2").tobytes())
    spotter = KeywordSpotter(onnx_model, DetectorConfig())  # the harness's settings (0.6, 0.6, ...): the defaults
    want, logits = python_detections(spotter, pcm, chunk=1600, flush=False)
    (tmp_path / "logits.raw").write_bytes(np.ascontiguousarray(logits, dtype="<f4").tobytes())
    run = subprocess.run(["java", "-cp", str(tmp_path / "classes"), "com.example.kws.NativeAudio", str(library),
                          str(tmp_path / "pcm.raw"), str(tmp_path / "features.raw"), str(tmp_path / "logits.raw"),
                          ",".join(spotter.labels)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    features = np.frombuffer((tmp_path / "features.raw").read_bytes(), dtype="<f4").reshape(-1, 40)
    assert np.abs(features - LogMelFrontend().compute(pcm)).max() <= FEATURE_TOLERANCE
    got = [dict(zip(("label", "start", "end", "score"), line.split())) for line in run.stdout.splitlines()]
    assert len(got) == len(want) >= 3
    for g, w in zip(got, want):
        assert g["label"] == w["label"] and abs(float(g["start"]) - w["start"]) < 1e-9
        assert abs(float(g["end"]) - w["end"]) < 1e-9 and abs(round(float(g["score"]), 4) - w["score"]) < 1e-9
