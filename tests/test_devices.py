"""Device profiles, bundles (contents, checksums, safe extraction, phone guides, armv7 C programs under qemu-arm)
and bench."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import wave
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from lstm_edge.cli import main as cli_main
from lstm_edge.devices.bench import RESULT_FIELDS, bench, format_table, frame_seconds, int8_flags
from lstm_edge.devices.bundle import BundleError, extract_bundle, make_bundle, verify_bundle
from lstm_edge.devices.profiles import Profile, ProfileError, get_profile, load_profile_file, load_profiles
from lstm_edge.runtime import Manifest, StreamingModel
from lstm_edge.runtime.kws import KeywordSpotter

KWS_DIR = Path(__file__).resolve().parent.parent / "models" / "kws" / "export"

EXPECTED_DEVICES = {"raspberry-pi-5", "raspberry-pi-4", "raspberry-pi-zero-2-w", "raspberry-pi-3-armv7",
                    "generic-aarch64-linux", "x86_64-linux", "android-arm64", "ios-arm64"}




@pytest.fixture(scope="module")
def model_dir(small_kws_dir) -> Path:
    return small_kws_dir


@pytest.fixture(scope="module")
def linux_bundle(model_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bundle") / "kws-aarch64.tar.gz"
    return make_bundle(model_dir, "generic-aarch64-linux", out, python="3.11", log=lambda m: None)


# ----------------------------------------------------------------------------------------------- profiles
def test_profiles_load_and_validate():
    profiles = load_profiles()
    assert set(profiles) == EXPECTED_DEVICES
    for profile in profiles.values():
        assert profile.threads >= 1 and profile.memory_budget_mb >= 1 and profile.notes
        if profile.runs_python and profile.supported:
            tags = profile.pip_platforms()
            assert tags and all(t.endswith(profile.architecture) for t in tags)
            assert "3.11" in profile.python_versions
    armv7 = profiles["raspberry-pi-3-armv7"]
    assert armv7.supported and armv7.c_target == "armv7" and armv7.backend == "native" and not armv7.runs_python
    pi4 = profiles["raspberry-pi-4"]
    assert pi4.architecture == "aarch64" and "manylinux_2_36_aarch64" in pi4.pip_platforms()
    assert profiles["x86_64-linux"].pip_platforms()[-1].endswith("x86_64")


def test_profile_errors_say_expected_and_got(tmp_path):
    with pytest.raises(ProfileError, match=r"expected one of .*raspberry-pi-4.*got 'pi-6'"):
        get_profile("pi-6")
    good = get_profile("raspberry-pi-4").to_dict()
    with pytest.raises(ProfileError, match=r"backend: expected one of \('onnx', 'litert', 'native'\), got 'tensorrt'"):
        Profile.from_dict({**good, "backend": "tensorrt"}, "test")
    with pytest.raises(ProfileError, match=r"threads: expected int, got '2'"):
        Profile.from_dict({**good, "threads": "2"}, "test")
    with pytest.raises(ProfileError, match="unsupported_reason must say why"):
        Profile.from_dict({**good, "supported": False}, "test")
    with pytest.raises(ProfileError, match="missing key 'cpu'"):
        Profile.from_dict({k: v for k, v in good.items() if k != "cpu"}, "test")
    with pytest.raises(ProfileError, match=r"platform_tags: expected tags ending in 'aarch64'"):
        Profile.from_dict({**good, "platform_tags": ["manylinux_2_17_x86_64"]}, "test")
    wrong_name = tmp_path / "other-board.json"
    wrong_name.write_text(json.dumps(good))
    with pytest.raises(ProfileError, match=r"name: expected 'other-board'"):
        load_profile_file(wrong_name)


def test_devices_command_lists_every_profile(capsys):
    assert cli_main(["devices"]) == 0
    text = capsys.readouterr().out
    for name in EXPECTED_DEVICES:
        assert name in text
    armv7 = [line for line in text.splitlines() if line.startswith("raspberry-pi-3-armv7 ")]
    assert len(armv7) == 1 and armv7[0].split()[2:5] == ["native", "int8", "(C"] and armv7[0].endswith(" ok")
    assert cli_main(["devices", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {p["name"] for p in listed} == EXPECTED_DEVICES


def test_devices_command_as_a_program():
    result = subprocess.run([sys.executable, "-m", "lstm_edge", "devices"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "raspberry-pi-zero-2-w" in result.stdout


# ------------------------------------------------------------------------------------------------ bundles
def test_linux_bundle_contents_and_checksums(linux_bundle, model_dir, tmp_path):
    with tarfile.open(linux_bundle) as tar:
        names = set(tar.getnames())
        files = [m.name for m in tar.getmembers() if m.isfile()]
    root = "kws-aarch64"
    for must in ("model/manifest.json", "model/model.onnx", "install.sh", "run.sh", "lstm-edge.service.in",
                 "README.md", "SHA256SUMS", "BUNDLE.json"):
        assert f"{root}/{must}" in names, must
    wheels = [n.split("/")[-1] for n in names if n.startswith(f"{root}/wheels/") and n.endswith(".whl")]
    for prefix in ("lstm_edge-", "numpy-", "onnxruntime-", "pip-"):
        assert any(w.startswith(prefix) for w in wheels), (prefix, wheels)
    assert all("x86_64" not in w for w in wheels)
    assert any("aarch64" in w for w in wheels if w.startswith("onnxruntime-"))

    extracted = extract_bundle(linux_bundle, tmp_path)
    assert extracted == tmp_path / root
    checked = verify_bundle(extracted)
    assert "model/model.onnx" in checked and len(checked) == len(files) - 1  # all but SHA256SUMS itself
    result = subprocess.run(["sha256sum", "--check", "--strict", "SHA256SUMS"], cwd=extracted,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    for script in ("install.sh", "run.sh"):
        assert (extracted / script).stat().st_mode & 0o111
        assert subprocess.run(["sh", "-n", str(extracted / script)]).returncode == 0
    # The bundled manifest lists only the shipped file, with the original checksum; the model loads from it.
    original = Manifest.load(model_dir)
    bundled = Manifest.load(extracted / "model")
    assert [f.key for f in bundled.files] == ["onnx/float"]
    assert bundled.files[0].sha256 == original.file("onnx", "float").sha256
    x = np.random.default_rng(3).standard_normal((23, 40)).astype(np.float32)
    got = StreamingModel.load(extracted / "model", backend="onnx").create_stream().push(x)
    want = StreamingModel.load(model_dir, backend="onnx").create_stream().push(x)
    np.testing.assert_array_equal(got, want)
    readme = (extracted / "README.md").read_text()
    assert "generic-aarch64-linux" in readme and "lstm_h_in" in readme and "@" not in readme.replace("`@", "")


def test_profile_prefers_int8_litert_but_falls_back_loudly(model_dir, tmp_path):
    messages: list[str] = []
    out = make_bundle(model_dir, "raspberry-pi-4", tmp_path / "kws-rpi4.tar.gz", log=messages.append)
    notes = [m for m in messages if m.startswith("note:")]
    assert any("prefers litert" in m for m in notes), messages
    info = json.loads(extract_bundle(out, tmp_path / "x").joinpath("BUNDLE.json").read_text())
    assert (info["backend"], info["precision"]) == ("onnx", "float")
    assert any("prefers litert" in n for n in info["notes"])
    readme = (tmp_path / "x" / "kws-rpi4" / "README.md").read_text()
    assert "**Note:**" in readme and "Raspberry Pi 4" in readme
    with pytest.raises(BundleError, match=r"tflite file for backend 'litert': expected one in the model directory"):
        make_bundle(model_dir, "raspberry-pi-4", tmp_path / "y.tar.gz", backend="litert", log=lambda m: None)
    with pytest.raises(BundleError, match=r"--python for raspberry-pi-4: expected one of \['3.11'\], got '3.9'"):
        make_bundle(model_dir, "raspberry-pi-4", tmp_path / "z.tar.gz", python="3.9", log=lambda m: None)


@pytest.mark.parametrize("device,language", [("android-arm64", "kotlin"), ("ios-arm64", "swift")])
def test_phone_bundle_has_a_guide_with_the_real_state_names(model_dir, tmp_path, device, language):
    out = make_bundle(model_dir, device, tmp_path / f"kws-{device}.tar.gz", log=lambda m: None)
    root = extract_bundle(out, tmp_path / "x")
    assert not (root / "wheels").exists() and not (root / "install.sh").exists()
    assert (root / "model" / "model.onnx").is_file()
    guide = (root / "README.md").read_text()
    assert f"```{language}" in guide
    manifest = Manifest.load(model_dir)
    for state in manifest.states:
        assert f'"{state.input}"' in guide and f'"{state.output}"' in guide
    assert "reset" in guide and "copy state_out back" in guide


def test_armv7_bundle_ships_the_c_programs_and_runs_them_under_qemu_arm(tmp_path):
    """raspberry-pi-3-armv7 (no Python engine ships for 32-bit ARM): the bundle holds lstm-edge-run and
    lstm-edge-listen cross-built for armv7, the int8 C weight file, the library and run.sh, no wheels. Under
    qemu-arm, run.sh gives the shipped keyword spotter's int8 outputs (bitwise those of the native backend here)
    and the demo's detections, and --verify catches a changed file."""
    archive = tmp_path / "kws-armv7.tar.gz"
    assert cli_main(["bundle", str(KWS_DIR), "--device", "raspberry-pi-3-armv7", "-o", str(archive)]) == 0
    root = extract_bundle(archive, tmp_path / "board")
    assert not (root / "wheels").exists() and not (root / "install.sh").exists()
    for name in ("bin/lstm-edge-run", "bin/lstm-edge-listen", "lib/liblstm_edge.a", "lib/lstm_edge_model.h",
                 "model/model.int8.lec"):
        assert (root / name).is_file(), name
    head = (root / "bin" / "lstm-edge-run").read_bytes()[:20]
    assert head[:5] == b"\x7fELF\x01" and int.from_bytes(head[18:20], "little") == 40  # 32-bit ELF, EM_ARM
    info = json.loads((root / "BUNDLE.json").read_text())
    assert (info["backend"], info["precision"], info["python"]) == ("native", "int8", None)
    assert info["c_build"]["target"] == "armv7" and info["c_build"]["static_programs"]
    manifest = Manifest.load(root / "model")
    assert [(f.format, f.precision) for f in manifest.files] == [("c", "int8")]
    assert "./run.sh --listen" in (root / "README.md").read_text()
    env = {**os.environ, "LSTM_EDGE_EXEC_WRAPPER": "qemu-arm"}

    def run_sh(args: list[str], stdin: bytes) -> subprocess.CompletedProcess:
        return subprocess.run([str(root / "run.sh"), *args], input=stdin, capture_output=True, env=env,
                              timeout=300)

    assert run_sh(["--verify"], b"").returncode == 0
    board = json.loads(run_sh(["--info"], b"").stdout)
    assert board["kernels"] == "portable" and board["int8"] == 1
    frames = np.load(KWS_DIR / manifest.reference["input"])[:300]
    expected = np.load(KWS_DIR / manifest.reference["output"])[:300]
    result = run_sh(["--chunk", "7"], frames.astype("<f4").tobytes())
    assert result.returncode == 0, result.stderr.decode()
    got = np.frombuffer(result.stdout, "<f4").reshape(expected.shape)
    assert (got.argmax(-1) == expected.argmax(-1)).mean() >= manifest.tolerances["int8_argmax_agreement"]
    here = StreamingModel.load(KWS_DIR, backend="native", precision="int8").create_stream().push(frames)
    np.testing.assert_array_equal(got, here)
    with wave.open(str(KWS_DIR.parent / "demo.wav"), "rb") as handle:
        pcm = handle.readframes(handle.getnframes())
    heard = run_sh(["--listen"], pcm)
    assert heard.returncode == 0, heard.stderr.decode()
    spotter = KeywordSpotter(StreamingModel.load(KWS_DIR, backend="native", precision="int8"))
    want = [d.label for d in spotter.detect(np.frombuffer(pcm, "<i2"))]
    assert len(want) >= 5 and [json.loads(line)["label"] for line in heard.stdout.decode().splitlines()] == want
    (root / "model" / "model.int8.lec").write_bytes(b"changed")
    changed = run_sh(["--verify"], b"")
    assert changed.returncode != 0 and "model/model.int8.lec: FAILED" in changed.stdout.decode()


def test_c_bundles_need_the_c_file_and_python_boards_refuse_the_native_backend(model_dir, tmp_path):
    with pytest.raises(BundleError, match="C weight file, and the model directory has none.*lstm-edge add-c"):
        make_bundle(model_dir, "raspberry-pi-3-armv7", tmp_path / "x.tar.gz", log=lambda m: None)
    with pytest.raises(BundleError, match=r"expected 'native', got 'onnx'"):
        make_bundle(KWS_DIR, "raspberry-pi-3-armv7", tmp_path / "x.tar.gz", backend="onnx", log=lambda m: None)
    with pytest.raises(BundleError, match=r"backend 'native' has none.*lstm-edge build-c.*raspberry-pi-3-armv7"):
        make_bundle(KWS_DIR, "raspberry-pi-4", tmp_path / "x.tar.gz", backend="native", log=lambda m: None)
    assert not (tmp_path / "x.tar.gz").exists()


@pytest.mark.slow
def test_x86_bundle_installs_offline_and_streams_files_and_stdin(model_dir, tmp_path):
    """The host is an x86_64-linux board: install.sh and run.sh run natively, exactly as on a device."""
    archive = make_bundle(model_dir, "x86_64-linux", tmp_path / "kws-x86.tar.gz", python="3.11",
                          log=lambda m: None)
    root = extract_bundle(archive, tmp_path / "board")
    env = {**os.environ, "PYTHON": sys.executable}
    install = subprocess.run([str(root / "install.sh")], env=env, capture_output=True, text=True, timeout=900,
                             cwd=tmp_path)
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-2000:]
    assert "ok: kws on onnx (onnxruntime" in install.stdout
    service = (root / "lstm-edge.service").read_text()
    assert f"ExecStart={root}/run.sh $LSTM_EDGE_ARGS" in service and "@" not in service
    features = np.random.default_rng(5).standard_normal((31, 40)).astype(np.float32)
    np.save(tmp_path / "in.npy", features)
    from_file = subprocess.run([str(root / "run.sh"), str(tmp_path / "in.npy"), "-o", str(tmp_path / "a.npy")],
                               capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert from_file.returncode == 0, from_file.stderr[-2000:]
    with open(tmp_path / "in.npy", "rb") as stdin:
        from_stdin = subprocess.run([str(root / "run.sh"), "-", "-o", str(tmp_path / "b.npy")], stdin=stdin,
                                    capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert from_stdin.returncode == 0, from_stdin.stderr[-2000:]
    want = StreamingModel.load(model_dir, backend="onnx").create_stream().push(features)
    np.testing.assert_allclose(np.load(tmp_path / "a.npy"), want, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"))
    # A corrupted file stops the installer before anything is installed.
    (root / "model" / "model.onnx").write_bytes(b"broken")
    broken = subprocess.run([str(root / "install.sh")], env={**env, "LSTM_EDGE_VENV": str(tmp_path / "v2")},
                            capture_output=True, text=True, timeout=300)
    assert broken.returncode == 1 and "model/model.onnx: FAILED" in broken.stdout + broken.stderr
    assert not (tmp_path / "v2").exists()


# --------------------------------------------------------------------------------------- safe extraction
def _tar_with(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return path


def _file(name: str) -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), b"payload\n"


def _link(name: str, target: str, hard: bool = False) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
    info.linkname = target
    return info, None


@pytest.mark.parametrize("members,message", [
    ([_file("b/ok.txt"), _file("b/../../evil.txt")], r"'\.\.' in it"),
    ([_file("/tmp/evil.txt")], "expected a relative path, got an absolute path"),
    ([_file("b/ok.txt"), _link("b/passwd", "../../../etc/passwd")], r"symlink 'b/passwd': expected a target inside"),
    ([_file("b/ok.txt"), _link("b/abs", "/etc/passwd")], r"symlink 'b/abs': expected a target inside"),
    ([_file("b/ok.txt"), _link("b/hard", "../../etc/passwd", hard=True)], r"hardlink 'b/hard': expected a target"),
    ([_file("b/ok.txt"), _link("b/inside", "ok.txt")], "links are not allowed"),
    ([_file("a/x.txt"), _file("b/y.txt")], "top-level entries: expected one folder"),
])
def test_extract_rejects_unsafe_archives(tmp_path, members, message):
    archive = _tar_with(tmp_path / "bad.tar.gz", members)
    dest = tmp_path / "dest"
    with pytest.raises(BundleError, match=message):
        extract_bundle(archive, dest)
    assert list(dest.iterdir()) == []
    assert not (tmp_path / "evil.txt").exists()


def test_extract_rejects_checksum_mismatch_and_unlisted_files(linux_bundle, tmp_path):
    root = extract_bundle(linux_bundle, tmp_path / "good")
    (root / "model" / "model.onnx").write_bytes(b"tampered")
    tampered = tmp_path / "tampered.tar.gz"
    with tarfile.open(tampered, "w:gz") as tar:
        tar.add(root, arcname=root.name)
    with pytest.raises(BundleError, match=r"model/model.onnx: checksum mismatch: expected sha256 [0-9a-f]{64}, got"):
        extract_bundle(tampered, tmp_path / "dest")
    assert list((tmp_path / "dest").iterdir()) == []

    root2 = extract_bundle(linux_bundle, tmp_path / "good2")
    (root2 / "extra.sh").write_text("echo hi\n")
    extra = tmp_path / "extra.tar.gz"
    with tarfile.open(extra, "w:gz") as tar:
        tar.add(root2, arcname=root2.name)
    with pytest.raises(BundleError, match=r"files not listed in SHA256SUMS: \['extra.sh'\]"):
        extract_bundle(extra, tmp_path / "dest2")
    with pytest.raises(BundleError, match="not a readable tar archive"):
        extract_bundle(tmp_path / "good2" / root2.name / "README.md", tmp_path / "dest3")


# ------------------------------------------------------------------------------------------------- bench
def test_bench_json_has_the_fields(model_dir, capsys):
    assert cli_main(["bench", str(model_dir), "--json", "--seconds", "0.2", "--backend", "onnx"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["machine"] and report["python"] and report["frame_seconds"] is None
    assert isinstance(report["flags"], list) and report["skipped"] == []
    [result] = report["results"]
    assert set(RESULT_FIELDS) <= set(result)
    assert (result["backend"], result["precision"], result["chunk_frames"]) == ("onnx", "float", 10)
    assert result["chunks"] >= 50 and 0 < result["p50_us"] <= result["p99_us"]
    assert result["import_seconds"] is None or result["import_seconds"] >= 0
    assert result["load_seconds"] > 0 and result["peak_rss_mb"] > 10
    assert result["per_frame_us"] == pytest.approx(result["p50_us"] / 10, abs=1e-4)
    assert "onnx" in format_table(report)


def test_bench_real_time_factor_and_int8_flag(model_dir):
    manifest = Manifest.load(model_dir)
    assert frame_seconds(replace(manifest, frontend={"sample_rate": 16000, "hop_length": 160})) == 0.01
    assert frame_seconds(manifest) is None
    rows = [{"backend": "onnx", "precision": "float", "p50_us": 40.0, "chunk_frames": 10},
            {"backend": "onnx", "precision": "int8", "p50_us": 50.0, "chunk_frames": 10},
            {"backend": "litert", "precision": "float", "p50_us": 40.0, "chunk_frames": 10},
            {"backend": "litert", "precision": "int8", "p50_us": 25.0, "chunk_frames": 10}]
    [flag] = int8_flags(rows)
    assert flag.startswith("int8 is slower than float on onnx") and "+25%" in flag
    report = bench(model_dir, backend="onnx", precision="float", chunk_frames=5, seconds=0.1)
    assert report["results"][0]["chunk_frames"] == 5
    with pytest.raises(ValueError, match="precision: expected one of"):
        bench(model_dir, precision="int4")
