"""Hostile model directories and archives against device bundles: names, escaping, sandboxed unit, tar layout."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from pathlib import Path

import pytest

from lstm_edge.devices.bundle import BundleError, extract_bundle, make_bundle
from lstm_edge.runtime.errors import ManifestError


@pytest.fixture(scope="module")
def model_dir(small_kws_dir) -> Path:
    return small_kws_dir


@pytest.fixture(scope="module")
def bundle_root(model_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bundle") / "kws-x86.tar.gz"
    archive = make_bundle(model_dir, "x86_64-linux", out, python="3.11", log=lambda m: None)
    return extract_bundle(archive, tmp_path_factory.mktemp("x"))


def with_name(model_dir: Path, tmp_path: Path, name: str) -> Path:
    import shutil

    copy = shutil.copytree(model_dir, tmp_path / "m")
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["name"] = name
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


@pytest.mark.parametrize("name", ["kws\nExecStartPre=/bin/sh -c 'id > /tmp/pwned'", "kws; rm -rf /", "$(id)",
                                  "a b", "", "-kws", "x" * 65, "kws%i"])
def test_bundle_refuses_a_hostile_model_name(model_dir, tmp_path, name):
    directory = with_name(model_dir, tmp_path, name)
    out = tmp_path / "b.tar.gz"
    # Refused when the manifest is read (its schema's name pattern) or by the bundle's own check (length, the same
    # characters): either way before any file is written.
    with pytest.raises((BundleError, ManifestError), match="name"):
        make_bundle(directory, "x86_64-linux", out, log=lambda m: None)
    assert not out.exists() and not list(tmp_path.glob("*.partial"))


def test_bundle_time_name_check_refuses_what_the_schema_lets_through(model_dir, tmp_path):
    with pytest.raises(BundleError, match="model name: expected 1-64 characters"):
        make_bundle(with_name(model_dir, tmp_path, "k" * 65), "x86_64-linux", tmp_path / "b.tar.gz",
                    log=lambda m: None)


def test_phone_guide_values_cannot_add_lines(model_dir, tmp_path):
    from lstm_edge.devices.render import _cell, _md

    assert "\n" not in _md("a\nExecStartPre=x\r\x1b") and _md("a\nb") == "a\\nb"
    assert _cell("h`|x") == "`h'\\|x`"


def test_unit_runs_unprivileged_and_sandboxed(bundle_root):
    unit = (bundle_root / "lstm-edge.service.in").read_text()
    lines = {line.split("=", 1)[0]: line.split("=", 1)[1] for line in unit.splitlines() if "=" in line
             and not line.startswith("#")}
    assert lines["DynamicUser"] == "yes" and lines["NoNewPrivileges"] == "yes"
    assert lines["ProtectSystem"] == "strict" and lines["PrivateTmp"] == "yes" and lines["ProtectHome"] == "read-only"
    assert lines["CapabilityBoundingSet"] == "" and lines["StateDirectory"] == "lstm-edge"
    assert "User" not in lines or lines["User"] != "root"


def test_readme_commands_match_the_cli(bundle_root):
    readme = (bundle_root / "README.md").read_text()
    assert "INPUT.wav -o" not in readme and "./run.sh INPUT.wav [--json]" in readme


def test_device_wheel_holds_the_runtime_only(bundle_root):
    [wheel] = (bundle_root / "wheels").glob("lstm_edge-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for host_only in ("lstm_edge/models/", "lstm_edge/recipes/", "lstm_edge/export/", "lstm_edge/quantize/",
                      "lstm_edge/demo.py", "lstm_edge/devices/templates/", "lstm_edge/devices/bundle.py",
                      "lstm_edge/devices/web/", "lstm_edge/devices/web_site.py", "lstm_edge/runtime/native/wasm/",
                      "lstm_edge/runtime/native/mcu/"):
        assert not any(n.startswith(host_only) for n in names), host_only
    for needed in ("lstm_edge/cli.py", "lstm_edge/runtime/model.py", "lstm_edge/runtime/audio.py",
                   "lstm_edge/devices/bench.py"):
        assert needed in names, needed
    assert wheel.stat().st_size < 250_000, wheel.stat().st_size


def _tar(path: Path, members: list[tuple[str, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize("members, message", [
    ([("X/run.sh", b"a"), ("X/run.sh/x", b"b")], "expected either a file or a folder, got both"),
    ([("X/run.sh/x", b"b"), ("X/run.sh", b"a")], "expected either a file or a folder, got both"),
    ([("X/run.sh", b"a"), ("X/run.sh", None)], "expected either a file or a folder, got both"),
    ([("X/a", b"a"), ("X/a", b"b")], "expected once, got it twice"),
    ([("X/a", b"a"), ("", b"b")], "an empty or '.' name"),
    ([("X/a", b"a"), (".", None)], "an empty or '.' name"),
    ([("X/a", b"a"), (".", b"b")], "an empty or '.' name"),
])
def test_malformed_members_give_the_bundle_error(tmp_path, members, message):
    archive = _tar(tmp_path / "bad.tar.gz", members)
    dest = tmp_path / "dest"
    with pytest.raises(BundleError, match=message):
        extract_bundle(archive, dest)
    assert list(dest.iterdir()) == []


def test_bundle_from_a_regular_install_as_the_readme_shows(tmp_path):
    """`pip install .` (not editable), then `lstm-edge bundle models/kws/export --device raspberry-pi-4`: the device
    wheel is built from the installed package itself, and the bundle holds the one model, not every shipped one."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", "--target", str(site), str(repo)], check=True, timeout=600)
    probe = "import lstm_edge, sys; sys.stdout.write(lstm_edge.__file__)"
    env = {**__import__("os").environ, "PYTHONPATH": str(site)}
    work = tmp_path / "work"
    work.mkdir()
    located = subprocess.run([sys.executable, "-c", probe], env=env, cwd=work, capture_output=True, text=True)
    assert located.stdout.startswith(str(site)), located.stdout + located.stderr  # the regular install, not the tree
    out = work / "kws.tar.gz"
    result = subprocess.run([sys.executable, "-m", "lstm_edge", "bundle", str(repo / "models" / "kws" / "export"),
                             "--device", "raspberry-pi-4", "-o", str(out)], env=env, cwd=work, capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    root = extract_bundle(out, tmp_path / "x")
    [wheel] = (root / "wheels").glob("lstm_edge-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert not any(n.startswith(("lstm_edge/models/", "lstm_edge/recipes/")) for n in names)
    assert "lstm_edge/runtime/manifest.schema.json" in names and wheel.stat().st_size < 250_000
    model_files = sorted(p.name for p in (root / "model").iterdir())
    assert "manifest.json" in model_files and len(model_files) <= 4, model_files
    others = sum(p.stat().st_size for p in (root / "wheels").glob("*.whl") if p != wheel)
    assert out.stat().st_size < others + 2_000_000  # the model and scripts add little beside the engine's wheels
