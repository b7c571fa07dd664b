"""Bundle archives: SHA256SUMS, checking them, and safe extraction (no path escapes, links or clashes)."""

from __future__ import annotations

import os
import re
import shutil
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

from lstm_edge.devices.errors import BundleError
from lstm_edge.runtime.errors import expected_got
from lstm_edge.runtime.manifest import sha256_of

SUMS_NAME = "SHA256SUMS"


def write_sums(root: Path) -> Path:
    lines = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name != SUMS_NAME):
        lines.append(f"{sha256_of(path)}  {path.relative_to(root).as_posix()}")
    sums = root / SUMS_NAME
    sums.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return sums


def _check_member(member: tarfile.TarInfo, dest: Path) -> None:
    name = member.name
    parts = PurePosixPath(name).parts
    if not parts or name in (".", "./") or any(part == "." for part in name.split("/")[:-1]):
        raise BundleError(expected_got(f"archive member {name!r}", "a path naming a file or folder",
                                       "an empty or '.' name"))
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


def _check_layout(members: list[tarfile.TarInfo]) -> None:
    """No file given twice, no path both a file and a folder, nothing under a file."""
    files: set[str] = set()
    folders: set[str] = set()
    for member in members:
        name = PurePosixPath(member.name).as_posix()
        if member.isfile():
            if name in files:
                raise BundleError(f"archive member {name!r}: expected once, got it twice")
            files.add(name)
        else:
            folders.add(name)
        folders.update(parent.as_posix() for parent in PurePosixPath(name).parents)
    clash = sorted(files & folders)
    if clash:
        raise BundleError(expected_got(f"archive member {clash[0]!r}", "either a file or a folder", "both"))


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
    for listed_name, expected in listed.items():
        path = root / listed_name
        if not path.is_file():
            raise BundleError(f"{root}: {listed_name} is listed in {SUMS_NAME} but missing")
        got = sha256_of(path)
        if got != expected:
            raise BundleError(f"{root}/{listed_name}: checksum mismatch: expected sha256 {expected}, got {got}")
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
            _check_layout(members)
            if len(tops) != 1:
                raise BundleError(expected_got(f"{path}: top-level entries", "one folder", sorted(tops)))
            for member in members:
                target = staging / member.name
                if member.isdir():
                    try:
                        target.mkdir(parents=True, exist_ok=True)
                    except OSError as err:
                        raise BundleError(f"{path}: cannot extract member {member.name!r} ({err})") from None
                    continue
                try:
                    target.parent.mkdir(parents=True, exist_ok=True)
                except OSError as err:
                    raise BundleError(f"{path}: cannot extract member {member.name!r} ({err})") from None
                source = tar.extractfile(member)
                if source is None:
                    raise BundleError(f"{path}: cannot read member {member.name!r}")
                try:
                    with source, open(target, "wb") as out:
                        shutil.copyfileobj(source, out)
                except OSError as err:
                    raise BundleError(f"{path}: cannot extract member {member.name!r} ({err})") from None
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
