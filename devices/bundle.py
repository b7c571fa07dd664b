"""Device bundles: one ``.tar.gz`` per board with the model, its runtime wheels and scripts, checksummed.

    from lstm_edge.devices.bundle import extract_bundle, make_bundle
    make_bundle("kws_model", "raspberry-pi-4", "kws-rpi4.tar.gz", python="3.11")
    root = extract_bundle("kws-rpi4.tar.gz", "/opt")      # refuses unsafe paths and checksum mismatches

Linux boards get ``model/`` (manifest + the chosen model file), ``wheels/`` (lstm-edge, numpy, the engine and their
dependencies for the board's platform and Python), ``install.sh`` (offline, checks ``SHA256SUMS`` first),
``run.sh``, a systemd unit template and a README. Phones get the model and an integration guide, no wheels. A board
without a Python engine (the armv7 profile; any Linux board with ``backend="native"``) gets the C programs instead
of wheels (``native_bundle``).
The bundled ``manifest.json`` lists only the files in the bundle; their sha256 values are the originals.
The parts: ``choice`` (which model file), ``wheels``, ``render`` (templates), ``archive`` (sums, safe extraction).
"""

from __future__ import annotations

import json
import shutil
import sys
import tarfile
import tempfile
from dataclasses import replace
from pathlib import Path, PurePosixPath

import lstm_edge
from lstm_edge.devices.archive import SUMS_NAME, extract_bundle, verify_bundle, write_sums
from lstm_edge.devices.choice import Choice, choose_model_file
from lstm_edge.devices.errors import BundleError
from lstm_edge.devices.native_bundle import write_native_parts
from lstm_edge.devices.profiles import ProfileError, get_profile
from lstm_edge.devices.render import common_values, render
from lstm_edge.devices.wheels import DEFAULT_WHEEL_CACHE, Log, build_own_wheel, download_wheels
from lstm_edge.runtime import backends
from lstm_edge.runtime.errors import ManifestError, expected_got
from lstm_edge.runtime.manifest import Manifest, check_batch_file, check_file
from lstm_edge.runtime.names import check_model_name

__all__ = ["BundleError", "Choice", "choose_model_file", "extract_bundle", "make_bundle", "verify_bundle"]
NATIVE_SOURCES = Path(__file__).resolve().parent.parent / "runtime" / "native"  # the C99 frontend


def _bundle_root_name(out_path: Path) -> str:
    name = out_path.name
    for suffix in (".tar.gz", ".tgz", ".tar"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def make_bundle(model_dir: str | Path, device: str, out_path: str | Path, python: str = "3.11",
                backend: str | None = None, precision: str | None = None, wheel_cache: str | Path | None = None,
                wheel: str | Path | None = None, log: Log = print) -> Path:
    """Write the bundle for ``device`` to ``out_path`` (a .tar.gz) and return its path.

    ``backend``/``precision`` default to the device profile's; ``wheel`` is a prebuilt lstm-edge wheel (else one
    is built from the source tree); ``wheel_cache`` holds downloaded dependency wheels between calls.
    """
    profile = get_profile(device)
    if not profile.supported:
        raise ProfileError(f"device {profile.name!r} is not supported: {profile.unsupported_reason}")
    model_dir = Path(model_dir)
    manifest = Manifest.load(model_dir)
    try:
        check_model_name(manifest.name)
    except ManifestError as err:
        raise BundleError(f"{model_dir}/manifest.json: {err}") from None
    choice = choose_model_file(manifest, profile, backend, precision)
    check_file(model_dir, choice.entry)
    native = choice.backend == "native"
    if native and profile.kind != "linux":
        raise BundleError(f"{profile.name} bundles carry the model for an app's engine; for the C library in an app, "
                          "build it with `lstm-edge build-c` (or from the sources in native/, see its README)")
    if profile.kind == "linux" and not native and not profile.python_versions:
        raise BundleError(f"{profile.name} has no Python engine (no wheels for {profile.architecture}): bundle with "
                          "--backend native (the C programs; the model directory needs a C weight file, "
                          "`lstm-edge add-c MODEL_DIR`)")
    if profile.kind == "linux" and not native and python not in profile.python_versions:
        raise BundleError(expected_got(f"--python for {profile.name}", f"one of {list(profile.python_versions)}",
                                       repr(python)))
    out_path = Path(out_path)
    if not out_path.name.endswith((".tar.gz", ".tgz")):
        raise BundleError(expected_got("bundle path", "a name ending in .tar.gz or .tgz", str(out_path)))
    for note in choice.notes:
        log(f"note: {note}")
    root_name = _bundle_root_name(out_path)
    values = common_values(manifest, profile, choice)
    values.update({"PYTHON": python, "ARCHIVE": out_path.name, "ROOT": root_name,
                   "EXTRA": backends.info(choice.backend).extra, "ENGINE": backends.info(choice.backend).pip_package,
                   "PLATFORMS": ", ".join(profile.platform_tags) or "-"})

    with tempfile.TemporaryDirectory(prefix="lstm-edge-bundle-") as tmp:
        root = Path(tmp) / root_name
        model_out = root / "model"
        model_out.mkdir(parents=True)
        target = model_out / choice.entry.path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(model_dir / choice.entry.path, target)
        entry = choice.entry
        if entry.batch_file is not None and profile.kind == "linux" and not native:
            # the Python runtime's StreamBatch reads the batch signatures' companion file (only when a batch opens)
            shutil.copy2(check_batch_file(model_dir, entry), model_out / entry.batch_file.path)
        elif entry.batch_file is not None:  # an app's engine or the C programs run one stream per call
            entry = replace(entry, batch_signatures=None, batch_file=None)
        replace(manifest, files=(entry,)).save(model_out)
        for rel in (manifest.reference or {}).values():  # the reference arrays the manifest names
            if isinstance(rel, str) and rel.endswith(".npy") and ".." not in PurePosixPath(rel).parts:
                (model_out / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(model_dir / rel, model_out / rel)
        shutil.copytree(NATIVE_SOURCES, root / "native", ignore=shutil.ignore_patterns("__pycache__", "*.o", "*.so"))
        values["FILES"] = (f"- `model/{choice.entry.path}`: {choice.entry.format}, {choice.entry.precision}, "
                           f"{choice.entry.bytes} bytes, sha256 {choice.entry.sha256}")
        if entry.batch_file is not None:
            values["FILES"] += (f"\n- `model/{entry.batch_file.path}`: its batch signatures "
                                f"({', '.join(sorted(entry.batch_signatures or {}, key=int))} streams per call, read "
                                f"only by a StreamBatch), {entry.batch_file.bytes} bytes, "
                                f"sha256 {entry.batch_file.sha256}")
        info: dict[str, object] = {"device": profile.name, "backend": choice.backend, "precision": choice.precision,
                                   "model_file": f"model/{choice.entry.path}", "notes": list(choice.notes),
                                   "lstm_edge": lstm_edge.__version__,
                                   "python": python if profile.kind == "linux" and not native else None}
        if native:
            info["c"] = write_native_parts(root, model_dir, manifest, profile, values)
        elif profile.kind == "linux":
            wheels_dir = root / "wheels"
            if wheel is not None:
                wheel = Path(wheel)
                if not wheel.is_file() or not wheel.name.startswith("lstm_edge-") or wheel.suffix != ".whl":
                    raise BundleError(expected_got("wheel", "an existing lstm_edge-*.whl file", str(wheel)))
                wheels_dir.mkdir()
                shutil.copy2(wheel, wheels_dir)
            else:
                build_own_wheel(wheels_dir, log)
            for dep in download_wheels(profile, python, choice.backend,
                                       Path(wheel_cache) if wheel_cache else DEFAULT_WHEEL_CACHE, log):
                shutil.copy2(dep, wheels_dir / dep.name)
            info["wheels"] = sorted(p.name for p in wheels_dir.glob("*.whl"))
            for name in ("install.sh", "run.sh"):
                (root / name).write_text(render(name, values), encoding="utf-8")
                (root / name).chmod(0o755)
            (root / "lstm-edge.service.in").write_text(
                render("lstm-edge.service.in", values, keep=("BUNDLE_DIR", "VENV")), encoding="utf-8")
            (root / "README.md").write_text(render("README-linux.md", values), encoding="utf-8")
        else:
            guide = "guide-android.md" if profile.kind == "android" else "guide-ios.md"
            (root / "README.md").write_text(render(guide, values), encoding="utf-8")
        (root / "BUNDLE.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        write_sums(root)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        partial = out_path.with_name(out_path.name + ".partial")
        with tarfile.open(partial, "w:gz") as tar:
            tar.add(root, arcname=root_name)
        partial.replace(out_path)
    log(f"wrote {out_path} ({out_path.stat().st_size / 1e6:.1f} MB): {profile.name}, {choice.backend}, "
        f"{choice.precision}")
    return out_path


def _main(argv: list[str]) -> int:
    """``python -m lstm_edge.devices.bundle verify DIR`` / ``extract ARCHIVE DEST``."""
    if len(argv) == 2 and argv[0] == "verify":
        try:
            print(f"ok: {len(verify_bundle(argv[1]))} files match {SUMS_NAME}")
        except BundleError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        return 0
    if len(argv) == 3 and argv[0] == "extract":
        try:
            print(extract_bundle(argv[1], argv[2]))
        except BundleError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        return 0
    print("usage: python -m lstm_edge.devices.bundle verify DIR | extract ARCHIVE DEST", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
