"""Board profiles: what a device is and how lstm-edge should run on it, kept as JSON data in ``profiles/``.

    from lstm_edge.devices.profiles import get_profile, load_profiles
    profile = get_profile("raspberry-pi-4")
    profile.pip_platforms()   # tags for `pip download --platform ...`
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

from lstm_edge.runtime.backends import NAMES as BACKENDS
from lstm_edge.runtime.errors import LstmEdgeError, expected_got
from lstm_edge.runtime.manifest import PRECISIONS

PROFILE_DIR = Path(__file__).resolve().parent / "profiles"
KINDS = ("linux", "android", "ios")
OLDEST_MANYLINUX_GLIBC = 17  # manylinux_2_17 == manylinux2014
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_VERSION = re.compile(r"^3\.\d+$")


class ProfileError(LstmEdgeError, ValueError):
    """A device profile is unknown, malformed, or the device is not supported."""


@dataclass(frozen=True)
class Profile:
    """One target device, read from ``profiles/NAME.json``."""

    name: str
    title: str
    kind: str  # "linux" (Python runs there), "android" or "ios" (an app embeds the engine)
    cpu: str
    cores: int
    architecture: str
    os: str
    glibc: str | None
    platform_tags: tuple[str, ...]
    python_versions: tuple[str, ...]
    backend: str
    precision: str
    threads: int
    memory_budget_mb: int
    supported: bool
    notes: tuple[str, ...]
    unsupported_reason: str | None = None
    c_target: str | None = None  # a `lstm-edge build-c` target: the bundle ships its C programs, not Python wheels

    @property
    def runs_python(self) -> bool:
        return self.kind == "linux" and self.c_target is None

    def pip_platforms(self) -> list[str]:
        """Every wheel platform tag this device accepts, newest first (for ``pip download --platform``).

        pip matches ``--platform`` tags literally, so a glibc 2.36 board lists manylinux_2_36 down to _2_17.
        """
        tags: list[str] = []
        if self.glibc is not None and self.architecture in ("aarch64", "x86_64"):
            minor = int(self.glibc.split(".")[1])
            tags += [f"manylinux_2_{m}_{self.architecture}" for m in range(minor, OLDEST_MANYLINUX_GLIBC - 1, -1)]
            tags.append(f"manylinux2014_{self.architecture}")
        return list(dict.fromkeys(tags + list(self.platform_tags)))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("platform_tags", "python_versions", "notes"):
            out[key] = list(out[key])
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str) -> Profile:
        """Parse and validate one profile; ``where`` names its source in error messages."""
        if not isinstance(data, Mapping):
            raise ProfileError(expected_got(where, "a JSON object", type(data).__name__))

        def field(key: str, kind: type | tuple[type, ...], optional: bool = False) -> Any:
            if key not in data:
                if optional:
                    return None
                raise ProfileError(f"{where}: missing key {key!r} (has {sorted(data)})")
            value = data[key]
            if value is None and optional:
                return None
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
                raise ProfileError(expected_got(f"{where}.{key}", names, f"{value!r} ({type(value).__name__})"))
            return value

        def strings(key: str) -> tuple[str, ...]:
            values = field(key, list)
            if not all(isinstance(v, str) and v for v in values):
                raise ProfileError(expected_got(f"{where}.{key}", "a list of non-empty strings", values))
            return tuple(values)

        name = field("name", str)
        if not _NAME.match(name):
            raise ProfileError(expected_got(f"{where}.name", "lowercase letters, digits, '-' and '_'", repr(name)))
        kind = field("kind", str)
        if kind not in KINDS:
            raise ProfileError(expected_got(f"{where}.kind", f"one of {KINDS}", repr(kind)))
        backend = field("backend", str)
        if backend not in BACKENDS:
            raise ProfileError(expected_got(f"{where}.backend", f"one of {BACKENDS}", repr(backend)))
        precision = field("precision", str)
        if precision not in PRECISIONS:
            raise ProfileError(expected_got(f"{where}.precision", f"one of {PRECISIONS}", repr(precision)))
        for key in ("cores", "threads", "memory_budget_mb"):
            if field(key, int) < 1:
                raise ProfileError(expected_got(f"{where}.{key}", "a positive integer", data[key]))
        glibc = field("glibc", str, optional=True)
        if glibc is not None and not re.match(r"^2\.\d+$", glibc):
            raise ProfileError(expected_got(f"{where}.glibc", "a version like '2.36' or null", repr(glibc)))
        python_versions = strings("python_versions")
        bad = [v for v in python_versions if not _VERSION.match(v)]
        if bad:
            raise ProfileError(expected_got(f"{where}.python_versions", "versions like '3.11'", bad))
        platform_tags = strings("platform_tags")
        architecture = field("architecture", str)
        supported = field("supported", bool)
        reason = field("unsupported_reason", str, optional=True)
        if not supported and not reason:
            raise ProfileError(f"{where}: supported is false, so unsupported_reason must say why (got none)")
        c_target = field("c_target", str, optional=True)
        if c_target is not None:
            from lstm_edge.devices.c_build import TARGETS

            if c_target not in TARGETS or kind != "linux":
                raise ProfileError(expected_got(f"{where}.c_target", f"one of {list(TARGETS)} on a linux board",
                                                f"{c_target!r} on a {kind} board"))
            if backend != "native":
                raise ProfileError(expected_got(f"{where}.backend", "'native' (the bundle ships the C programs)",
                                                repr(backend)))
        if kind == "linux" and supported and c_target is None:
            if not python_versions or not platform_tags:
                raise ProfileError(expected_got(f"{where}", "python_versions and platform_tags for a Linux board",
                                                f"{list(python_versions)} and {list(platform_tags)}"))
            wrong = [t for t in platform_tags if not t.endswith(architecture)]
            if wrong:
                raise ProfileError(expected_got(f"{where}.platform_tags", f"tags ending in {architecture!r}", wrong))
        return cls(name=name, title=field("title", str), kind=kind, cpu=field("cpu", str), cores=data["cores"],
                   architecture=architecture, os=field("os", str), glibc=glibc, platform_tags=platform_tags,
                   python_versions=python_versions, backend=backend, precision=precision, threads=data["threads"],
                   memory_budget_mb=data["memory_budget_mb"], supported=supported, notes=strings("notes"),
                   unsupported_reason=reason, c_target=c_target)


def load_profile_file(path: str | Path) -> Profile:
    """Read and validate one profile file; its ``name`` must match the file name."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ProfileError(f"{path}: cannot read profile ({err})") from None
    profile = Profile.from_dict(data, str(path))
    if profile.name != path.stem:
        raise ProfileError(expected_got(f"{path}: name", repr(path.stem) + " (the file name)", repr(profile.name)))
    return profile


@cache
def _load_dir(directory: str) -> tuple[Profile, ...]:
    paths = sorted(Path(directory).glob("*.json"))
    if not paths:
        raise ProfileError(f"{directory}: no profile files (*.json) found; the package data is missing")
    return tuple(load_profile_file(p) for p in paths)


def load_profiles(directory: str | Path | None = None) -> dict[str, Profile]:
    """All profiles by name (the packaged ones unless ``directory`` is given)."""
    return {p.name: p for p in _load_dir(str(directory or PROFILE_DIR))}


def get_profile(name: str, directory: str | Path | None = None) -> Profile:
    """The profile called ``name``; the error lists the known names."""
    profiles = load_profiles(directory)
    if name not in profiles:
        raise ProfileError(expected_got("device", f"one of {', '.join(sorted(profiles))}", repr(name)))
    return profiles[name]
