"""An emulated aarch64 Python 3.11 for testing bundles on an x86-64 host, with no binfmt and no root filesystem image.

The root filesystem is unpacked from Debian bookworm arm64 packages (``apt-get download`` + ``dpkg -x``) and run as
``qemu-aarch64 -cpu cortex-a72 -L ROOTFS ROOTFS/usr/bin/python3.11``. It is cached (default
``~/.cache/lstm-edge/arm``) and rebuilt only when the package list changes.

Host needs: ``qemu-user`` (for ``qemu-aarch64``) and apt with the arm64 architecture enabled
(``dpkg --add-architecture arm64 && apt-get update``; done here when running as root).

    python devices/arm/qemu_env.py build            # prints the rootfs path
    python devices/arm/qemu_env.py python -c 'import platform; print(platform.machine())'
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from lstm_edge.runtime.paths import cache_dir

DEFAULT_CACHE = Path(os.environ.get("LSTM_EDGE_ARM_CACHE") or cache_dir("arm"))
CPU = "cortex-a72"  # `-cpu max` emulates 512-bit SVE and runs ~20x slower
PYTHON = "/usr/bin/python3.11"

# Debian bookworm arm64 packages for python3.11 and the C++ runtime the engines link against. Worked out from
# `apt-cache depends --recurse python3.11:arm64 libstdc++6:arm64`, minus the packaging tools (dpkg, perl, debconf)
# an unpacked tree does not need. python3.11-venv (ensurepip) is left out on purpose: bundles install without it.
ARM64_PACKAGES = (
    "libc6", "libgcc-s1", "libstdc++6", "gcc-12-base", "zlib1g", "libexpat1", "libffi8", "libssl3", "libbz2-1.0",
    "liblzma5", "libcrypt1", "libdb5.3", "libncursesw6", "libtinfo6", "libreadline8", "libsqlite3-0", "libuuid1",
    "libnsl2", "libtirpc3", "libgssapi-krb5-2", "libkrb5-3", "libk5crypto3", "libkrb5support0", "libcom-err2",
    "libkeyutils1", "libpython3.11-minimal", "libpython3.11-stdlib", "python3.11-minimal", "python3.11",
)
ALL_ARCH_PACKAGES = ("media-types", "libtirpc-common", "readline-common")

# onnxruntime reads /proc/cpuinfo at import (cpuinfo library) and segfaults on the host's x86 one; qemu -L
# redirects the open to ROOTFS/proc/cpuinfo, so a Cortex-A72's goes there.
FAKE_CPUINFO = "".join(
    f"processor\t: {n}\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\nCPU implementer\t: 0x41\n"
    f"CPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n" for n in range(4)
) + "Hardware\t: BCM2835\nRevision\t: c03111\nModel\t\t: Raspberry Pi 4 Model B Rev 1.1\n"


class QemuEnvError(RuntimeError):
    """The emulated environment cannot be built or run (the message says what is missing)."""


def _run(cmd: list[str], cwd: Path | None = None) -> str:
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise QemuEnvError(f"`{' '.join(cmd)}` failed (exit {result.returncode}):\n{result.stderr[-2000:]}")
    return result.stdout


def qemu_binary() -> str:
    path = shutil.which("qemu-aarch64") or shutil.which("qemu-aarch64-static")
    if path is None:
        raise QemuEnvError("qemu-aarch64 not found: install it with `apt-get install -y qemu-user`")
    return path


def _ensure_arm64_apt() -> None:
    """Make `apt-get download pkg:arm64` work: the arm64 architecture must be known to dpkg and apt."""
    foreign = _run(["dpkg", "--print-foreign-architectures"]).split()
    policy = subprocess.run(["apt-cache", "policy", "python3.11:arm64"], capture_output=True, text=True).stdout
    if "arm64" in foreign and "Candidate:" in policy and "(none)" not in policy:
        return
    if os.geteuid() != 0:
        raise QemuEnvError("apt has no arm64 package lists: run as root "
                           "`dpkg --add-architecture arm64 && apt-get update`")
    if "arm64" not in foreign:
        _run(["dpkg", "--add-architecture", "arm64"])
    _run(["apt-get", "update", "-q"])


def rootfs_stamp() -> str:
    """Identifies the rootfs contents; changes whenever the package list or the fake files change."""
    text = "\n".join((*ARM64_PACKAGES, *ALL_ARCH_PACKAGES, CPU, FAKE_CPUINFO, "v1"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def build_rootfs(cache_dir: Path = DEFAULT_CACHE, log=print) -> Path:
    """Return the path of a ready aarch64 rootfs, building it under ``cache_dir`` when missing or stale."""
    qemu_binary()
    cache_dir = Path(cache_dir)
    rootfs = cache_dir / "rootfs"
    stamp = cache_dir / "rootfs.stamp"
    if stamp.is_file() and stamp.read_text().strip() == rootfs_stamp() and (rootfs / PYTHON.lstrip("/")).is_file():
        return rootfs
    _ensure_arm64_apt()
    debs = cache_dir / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    wanted = [f"{p}:arm64" for p in ARM64_PACKAGES] + list(ALL_ARCH_PACKAGES)
    log(f"downloading {len(wanted)} Debian packages into {debs}")
    _run(["apt-get", "download", "-q", *wanted], cwd=debs)
    if rootfs.exists():
        shutil.rmtree(rootfs)
    rootfs.mkdir(parents=True)
    for deb in sorted(debs.glob("*.deb")):
        base = deb.name.split("_")[0]
        if base in ARM64_PACKAGES and not deb.name.endswith("_arm64.deb"):
            continue  # a stale host-architecture download
        _run(["dpkg", "-x", str(deb), str(rootfs)])
    _finish_rootfs(rootfs)
    check = run_python(rootfs, ["-c", "import platform, ssl, sqlite3, venv, zlib; print(platform.machine())"])
    if check.returncode != 0 or check.stdout.strip() != "aarch64":
        raise QemuEnvError(f"the emulated python does not start: exit {check.returncode}, "
                           f"stdout {check.stdout!r}, stderr {check.stderr[-1500:]!r}")
    stamp.write_text(rootfs_stamp() + "\n")
    log(f"aarch64 rootfs ready at {rootfs}")
    return rootfs


def _finish_rootfs(rootfs: Path) -> None:
    (rootfs / "proc").mkdir(exist_ok=True)
    (rootfs / "proc" / "cpuinfo").write_text(FAKE_CPUINFO)
    (rootfs / "tmp").mkdir(exist_ok=True)
    for name, target in (("python3", "python3.11"),):
        link = rootfs / "usr" / "bin" / name
        if not link.exists():
            link.symlink_to(target)
    # Merged /usr: Debian's dynamic loader is found as /lib/ld-linux-aarch64.so.1.
    for name in ("lib", "bin", "sbin"):
        top = rootfs / name
        if not top.exists() and not top.is_symlink():
            top.symlink_to(f"usr/{name}")


def emulator_command(rootfs: Path) -> list[str]:
    """The prefix that runs an aarch64 program of ``rootfs`` on this host."""
    return [qemu_binary(), "-cpu", CPU, "-L", str(rootfs)]


def python_command(rootfs: Path) -> list[str]:
    return [*emulator_command(rootfs), str(Path(rootfs) / PYTHON.lstrip("/"))]


def run_python(rootfs: Path, args: list[str], **kwargs) -> subprocess.CompletedProcess:
    """Run the emulated python with ``args``; returns the completed process (text mode, output captured)."""
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    return subprocess.run([*python_command(rootfs), *args], **kwargs)


def write_wrapper(rootfs: Path, path: Path, program: str | None = None) -> Path:
    """Write a host shell script that runs ``program`` (default the rootfs python) under qemu."""
    target = program or str(Path(rootfs) / PYTHON.lstrip("/"))
    emulator = " ".join(emulator_command(rootfs))
    path.write_text(f'#!/bin/sh\nexec {emulator} "{target}" "$@"\n')
    path.chmod(0o755)
    return path


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("build", "python"):
        print("usage: qemu_env.py build | python ARGS...", file=sys.stderr)
        return 2
    try:
        rootfs = build_rootfs(log=lambda m: print(m, file=sys.stderr))
    except QemuEnvError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if argv[0] == "build":
        print(rootfs)
        return 0
    return subprocess.run([*python_command(rootfs), *argv[1:]]).returncode


if __name__ == "__main__":
    sys.exit(main())
