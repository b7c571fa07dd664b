"""Device bundles: one ``.tar.gz`` per board with the model, its runtime wheels and scripts, checksummed.

    from lstm_edge.devices.bundle import extract_bundle, make_bundle
    make_bundle("kws_model", "raspberry-pi-4", "kws-rpi4.tar.gz", python="3.11")
    root = extract_bundle("kws-rpi4.tar.gz", "/opt")      # refuses unsafe paths and checksum mismatches

Linux boards get ``model/`` (manifest + the chosen model file), ``wheels/`` (lstm-edge, numpy, the engine and their
dependencies for the board's platform and Python), ``install.sh`` (offline, checks ``SHA256SUMS`` first),
``run.sh``, a systemd unit template and a README. Phones get the model and an integration guide, no wheels.
The bundled ``manifest.json`` lists only the files in the bundle; their sha256 values are the originals.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Callable

import lstm_edge
from lstm_edge.devices.profiles import Profile, ProfileError, get_profile
from lstm_edge.runtime import backends
from lstm_edge.runtime.errors import LstmEdgeError, expected_got
from lstm_edge.runtime.manifest import Manifest, ModelFile, check_file, sha256_of

TEMPLATES = Path(__file__).resolve().parent / "templates"
NATIVE_SOURCES = Path(__file__).resolve().parent.parent / "runtime" / "native"  # the C99 frontend
SUMS_NAME = "SHA256SUMS"
DEFAULT_WHEEL_CACHE = Path.home() / ".cache" / "lstm-edge" / "wheels"

Log = Callable[[str], None]


class BundleError(LstmEdgeError, ValueError):
    """A bundle cannot be made, or an archive is unsafe or does not match its checksums."""


@dataclass(frozen=True)
class Choice:
    """What goes into a bundle: the model file and why it was chosen."""

    backend: str
    precision: str
    entry: ModelFile
    notes: tuple[str, ...]


# ------------------------------------------------------------------------------------------------ choosing
def choose_model_file(manifest: Manifest, profile: Profile, backend: str | None,
                      precision: str | None) -> Choice:
    """The model file for ``profile``: the asked backend/precision, else the profile's, with loud fallbacks.

    An explicitly asked backend or precision that the directory lacks is an error; the profile's preferred int8
    falls back to float, and its preferred backend to the other one, each with a note.
    """
    notes: list[str] = []
    if backend is not None and backend not in backends.REGISTRY:
        raise BundleError(expected_got("backend", f"one of {list(backends.NAMES)}", repr(backend)))
    have = ", ".join(f.key for f in manifest.files) or "none"
    if backend is None:
        backend = profile.backend
        formats = {f.format for f in manifest.files}
        if backends.info(backend).format not in formats:
            others = [b for b in backends.NAMES if b != backend and backends.info(b).format in formats]
            if not others:
                raise BundleError(f"the model directory has no model files (manifest lists: {have})")
            other = others[0]
            notes.append(f"The {profile.name} profile prefers {backend}, but the model directory has no "
                         f"{backends.info(backend).format} file; using {other} instead (export with formats=('onnx', 'tflite') "
                         f"to get it).")
            backend = other
    elif not any(f.format == backends.info(backend).format for f in manifest.files):
        raise BundleError(expected_got(f"a {backends.info(backend).format} file for backend {backend!r}",
                                       "one in the model directory", f"only {have}"))
    fmt = backends.info(backend).format
    if precision is None:
        precision = profile.precision
        if not manifest.has_file(fmt, precision):
            if precision == "int8" and manifest.has_file(fmt, "float"):
                notes.append(f"int8 was preferred for {profile.name} but the directory has no {fmt} int8 file: "
                             "this bundle runs FLOAT. Run `lstm-edge quantize MODEL_DIR` and bundle again for int8.")
                precision = "float"
    entry = manifest.file(fmt, precision)  # raises with the list of files when missing
    return Choice(backend, precision, entry, tuple(notes))


# ------------------------------------------------------------------------------------------------- wheels
def project_root() -> Path | None:
    """The source tree lstm-edge is installed from (editable install), or None."""
    root = Path(lstm_edge.__file__).resolve().parent.parent
    pyproject = root / "pyproject.toml"
    if pyproject.is_file() and re.search(r'^name\s*=\s*"lstm-edge"', pyproject.read_text(), re.MULTILINE):
        return root
    return None


def build_own_wheel(dest: Path, log: Log = print) -> Path:
    """Build the lstm-edge wheel from the installed source tree into ``dest``."""
    root = project_root()
    if root is None:
        raise BundleError("cannot find the lstm-edge source tree (not an editable install): "
                          "pass wheel=PATH (`--wheel`) with a built lstm-edge wheel")
    log(f"building the lstm-edge wheel from {root}")
    with tempfile.TemporaryDirectory(prefix="lstm-edge-wheel-") as tmp:
        # Build from a clean copy: an in-tree build would reuse (and leave) build/ and *.egg-info in the tree.
        source = Path(tmp) / "src"
        shutil.copytree(root, source, ignore=shutil.ignore_patterns(
            ".git", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", "tests", "data", ".cache"))
        result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                                 "--disable-pip-version-check", "-q", "-w", tmp, str(source)],
                                capture_output=True, text=True)
        wheels = list(Path(tmp).glob("lstm_edge-*.whl"))
        if result.returncode != 0 or len(wheels) != 1:
            raise BundleError(f"`pip wheel {root}` failed (exit {result.returncode}): {result.stderr[-1500:]}")
        dest.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy2(wheels[0], dest))


def download_wheels(profile: Profile, python: str, backend: str, cache_dir: Path, log: Log = print) -> list[Path]:
    """numpy, the engine, their dependencies and pip, for ``profile``'s platform and ``python``; cached.

    A cache folder is reused as it is once complete; delete it to pick up newer releases.
    """
    key = f"{profile.architecture}-glibc{profile.glibc}-cp{python.replace('.', '')}-{backend}"
    folder = Path(cache_dir) / key
    done = folder / ".complete"
    if not done.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        platforms = [arg for tag in profile.pip_platforms() for arg in ("--platform", tag)]
        requirements = ["numpy>=1.22", backends.info(backend).pip_package, "pip"]
        log(f"downloading wheels for {key} into {folder}")
        result = subprocess.run([sys.executable, "-m", "pip", "download", "--only-binary=:all:", *platforms,
                                 "--python-version", python, "--implementation", "cp", "--disable-pip-version-check",
                                 "-q", "-d", str(folder), *requirements], capture_output=True, text=True)
        if result.returncode != 0:
            raise BundleError(f"pip download for {key} failed (exit {result.returncode}); PyPI must be reachable "
                              f"or the cache filled: {result.stderr[-1500:]}")
        done.write_text(json.dumps({"requirements": requirements, "platforms": profile.pip_platforms()}) + "\n")
    wheels = sorted(folder.glob("*.whl"))
    names = {w.name.split("-")[0].lower().replace("_", "-") for w in wheels}
    engine = backends.info(backend).pip_package
    missing = [n for n in ("numpy", engine, "pip") if n not in names]
    if missing:
        raise BundleError(expected_got(f"wheels in {folder}", f"numpy, {engine} and pip",
                                       f"{sorted(names)} (missing {missing}); delete the folder to download again"))
    return wheels


# ---------------------------------------------------------------------------------------------- rendering
def _render(template: str, values: dict[str, str], keep: tuple[str, ...] = ()) -> str:
    text = (TEMPLATES / template).read_text(encoding="utf-8")
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    left = sorted(set(re.findall(r"@([A-Z_]+)@", text)) - set(keep))
    if left:
        raise BundleError(f"template {template}: no value for {left}")
    return text


def _shape_text(shape: tuple) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _state_table(manifest: Manifest) -> str:
    rows = ["| state | state_in (graph input) | state_out (graph output) | dtype | shape | initial value |",
            "|---|---|---|---|---|---|"]
    for s in manifest.states:
        init = "zeros" if s.init == "zeros" else "learned (values in manifest.json)"
        rows.append(f"| {s.name} | `{s.input}` | `{s.output}` | {s.dtype} | {_shape_text(s.shape)} | {init} |")
    return "\n".join(rows)


def _common_values(manifest: Manifest, profile: Profile, choice: Choice) -> dict[str, str]:
    notes = "".join(f"\n> **Note:** {n}\n" for n in choice.notes)
    last = manifest.input.shape[-1]
    features = last if isinstance(last, int) else 1  # [1, T] token ids: one id per frame
    chunk = max(choice.entry.chunk_sizes) if choice.entry.chunk_sizes else 10
    signature = (choice.entry.signatures or {}).get(str(chunk), f"chunk_{chunk}")
    states = manifest.states
    return {
        "MODEL": manifest.name, "DEVICE": profile.name, "TITLE": profile.title, "CPU": profile.cpu, "OS": profile.os,
        "ARCH": profile.architecture, "BACKEND": choice.backend, "PRECISION": choice.precision,
        "THREADS": str(profile.threads), "MEMORY_MB": str(profile.memory_budget_mb),
        "VERSION": lstm_edge.__version__, "NOTES": notes, "MODEL_FILE": PurePosixPath(choice.entry.path).name,
        "MODEL_STEM": PurePosixPath(choice.entry.path).stem, "MODEL_EXT": PurePosixPath(choice.entry.path).suffix[1:],
        "INPUT": manifest.input.name, "OUTPUT": manifest.output.name, "FEATURES": str(features),
        "INPUT_SHAPE": _shape_text(manifest.input.shape), "OUTPUT_SHAPE": _shape_text(manifest.output.shape),
        "OUT_DIM": str(manifest.output.shape[-1]), "STATE_TABLE": _state_table(manifest),
        "CHUNK": str(chunk), "SIGNATURE": signature,
        "CHUNK_NOTE": (f"the .tflite file has signatures {dict(choice.entry.signatures or {})}"
                       if choice.entry.chunk_sizes else "the .onnx graph takes any number of frames per call"),
        "INIT": ("zeros" if all(s.init == "zeros" for s in states)
                 else "the learned values in manifest.json `states[i].init`"),
        "STATE_IN_LIST": ", ".join(f'"{s.input}"' for s in states),
        "STATE_OUT_LIST": ", ".join(f'"{s.output}"' for s in states),
        "STATE_SIZES": ", ".join(str(int(_prod(s.shape))) for s in states),
        "STATE_SHAPES": ", ".join(_shape_text(s.shape) for s in states),
        "STATE_SHAPES_KT": ", ".join("longArrayOf(" + ", ".join(f"{d}" for d in s.shape) + ")" for s in states),
        "STATE_SHAPES_SWIFT": ", ".join("[" + ", ".join(str(d) for d in s.shape) + "]" for s in states),
        "CLASS": re.sub(r"[^A-Za-z0-9]", "", manifest.name.title()) or "Model",
    }


def _prod(shape: tuple) -> int:
    out = 1
    for d in shape:
        out *= int(d)
    return out


# ------------------------------------------------------------------------------------------------ writing
def _write_sums(root: Path) -> Path:
    lines = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name != SUMS_NAME):
        lines.append(f"{sha256_of(path)}  {path.relative_to(root).as_posix()}")
    sums = root / SUMS_NAME
    sums.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return sums


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
    choice = choose_model_file(manifest, profile, backend, precision)
    check_file(model_dir, choice.entry)
    if profile.runs_python and python not in profile.python_versions:
        raise BundleError(expected_got(f"--python for {profile.name}", f"one of {list(profile.python_versions)}",
                                       repr(python)))
    out_path = Path(out_path)
    if not out_path.name.endswith((".tar.gz", ".tgz")):
        raise BundleError(expected_got("bundle path", "a name ending in .tar.gz or .tgz", str(out_path)))
    for note in choice.notes:
        log(f"note: {note}")
    root_name = _bundle_root_name(out_path)
    values = _common_values(manifest, profile, choice)
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
        replace(manifest, files=(choice.entry,)).save(model_out)
        for rel in (manifest.reference or {}).values():  # the reference arrays the manifest names
            if isinstance(rel, str) and rel.endswith(".npy") and ".." not in PurePosixPath(rel).parts:
                (model_out / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(model_dir / rel, model_out / rel)
        shutil.copytree(NATIVE_SOURCES, root / "native", ignore=shutil.ignore_patterns("__pycache__", "*.o", "*.so"))
        values["FILES"] = (f"- `model/{choice.entry.path}`: {choice.entry.format}, {choice.entry.precision}, "
                           f"{choice.entry.bytes} bytes, sha256 {choice.entry.sha256}")
        info = {"device": profile.name, "backend": choice.backend, "precision": choice.precision,
                "model_file": f"model/{choice.entry.path}", "notes": list(choice.notes),
                "lstm_edge": lstm_edge.__version__, "python": python if profile.runs_python else None}
        if profile.runs_python:
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
                (root / name).write_text(_render(name, values), encoding="utf-8")
                (root / name).chmod(0o755)
            (root / "lstm-edge.service.in").write_text(
                _render("lstm-edge.service.in", values, keep=("BUNDLE_DIR", "VENV")), encoding="utf-8")
            (root / "README.md").write_text(_render("README-linux.md", values), encoding="utf-8")
        else:
            guide = "guide-android.md" if profile.kind == "android" else "guide-ios.md"
            (root / "README.md").write_text(_render(guide, values), encoding="utf-8")
        (root / "BUNDLE.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        _write_sums(root)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        partial = out_path.with_name(out_path.name + ".partial")
        with tarfile.open(partial, "w:gz") as tar:
            tar.add(root, arcname=root_name)
        partial.replace(out_path)
    log(f"wrote {out_path} ({out_path.stat().st_size / 1e6:.1f} MB): {profile.name}, {choice.backend}, "
        f"{choice.precision}")
    return out_path


# --------------------------------------------------------------------------------------------- extracting
def _check_member(member: tarfile.TarInfo, dest: Path) -> None:
    name = member.name
    parts = PurePosixPath(name).parts
    if name.startswith("/") or (parts and re.match(r"^[A-Za-z]:", parts[0])):
        raise BundleError(expected_got(f"archive member {name!r}", "a relative path", "an absolute path"))
    if ".." in parts:
        raise BundleError(expected_got(f"archive member {name!r}", "a path inside the destination", "'..' in it"))
    if member.issym() or member.islnk():
        link = PurePosixPath(member.linkname)
        base = PurePosixPath(name).parent if member.issym() else PurePosixPath()
        resolved = os.path.normpath(os.path.join(dest, base, link))
        if link.is_absolute() or not resolved.startswith(str(dest) + os.sep):
            kind = "symlink" if member.issym() else "hardlink"
            raise BundleError(expected_got(f"{kind} {name!r}", "a target inside the destination",
                                           repr(member.linkname)))
        raise BundleError(f"archive member {name!r}: links are not allowed in a bundle (got a link to "
                          f"{member.linkname!r})")
    if not (member.isfile() or member.isdir()):
        raise BundleError(expected_got(f"archive member {name!r}", "a regular file or directory",
                                       "a device, fifo or other special file"))


def verify_bundle(root: str | Path) -> list[str]:
    """Check every file of an extracted bundle against its SHA256SUMS; returns the checked paths."""
    root = Path(root)
    sums = root / SUMS_NAME
    if not sums.is_file():
        raise BundleError(f"{root}: no {SUMS_NAME}; expected a bundle made by `lstm-edge bundle`")
    listed: dict[str, str] = {}
    for number, line in enumerate(sums.read_text(encoding="utf-8").splitlines(), 1):
        match = re.fullmatch(r"([0-9a-f]{64})  (.+)", line)
        if not match:
            raise BundleError(expected_got(f"{SUMS_NAME} line {number}", "'<sha256>  <path>'", repr(line)))
        rel = PurePosixPath(match.group(2))
        if rel.is_absolute() or ".." in rel.parts:
            raise BundleError(expected_got(f"{SUMS_NAME} line {number}", "a relative path", str(rel)))
        listed[rel.as_posix()] = match.group(1)
    present = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and p.name != SUMS_NAME}
    unlisted = sorted(present - set(listed))
    if unlisted:
        raise BundleError(f"{root}: files not listed in {SUMS_NAME}: {unlisted}")
    for rel, expected in listed.items():
        path = root / rel
        if not path.is_file():
            raise BundleError(f"{root}: {rel} is listed in {SUMS_NAME} but missing")
        got = sha256_of(path)
        if got != expected:
            raise BundleError(f"{root}/{rel}: checksum mismatch: expected sha256 {expected}, got {got}")
    return sorted(listed)


def extract_bundle(path: str | Path, dest: str | Path) -> Path:
    """Safely extract bundle ``path`` into ``dest`` and return the bundle's root folder.

    Refuses absolute paths, ``..``, links and special files, more than one top folder, and any file that does not
    match SHA256SUMS; on refusal nothing is left in ``dest``.
    """
    path, dest = Path(path), Path(dest).resolve()
    dest.mkdir(parents=True, exist_ok=True)
    try:
        tar = tarfile.open(path, "r:*")
    except (OSError, tarfile.TarError) as err:
        raise BundleError(f"{path}: not a readable tar archive ({err})") from None
    staging = Path(tempfile.mkdtemp(prefix=".lstm-edge-extract-", dir=dest))
    try:
        with tar:
            members = tar.getmembers()
            tops = {PurePosixPath(m.name).parts[0] for m in members if PurePosixPath(m.name).parts}
            for member in members:
                _check_member(member, staging)
            if len(tops) != 1:
                raise BundleError(expected_got(f"{path}: top-level entries", "one folder", sorted(tops)))
            for member in members:
                target = staging / member.name
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                if source is None:
                    raise BundleError(f"{path}: cannot read member {member.name!r}")
                with source, open(target, "wb") as out:
                    shutil.copyfileobj(source, out)
                os.chmod(target, 0o755 if member.mode & 0o111 else 0o644)
        top = tops.pop()
        verify_bundle(staging / top)
        final = dest / top
        if final.exists():
            raise BundleError(expected_got(f"destination {final}", "not to exist yet", "an existing path"))
        (staging / top).rename(final)
        return final
    finally:
        shutil.rmtree(staging, ignore_errors=True)


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
