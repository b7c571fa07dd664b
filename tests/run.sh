#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine, then runs it.
# Usage: bash tests/run.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
    missing=""
    for tool in espeak-ng sox qemu-aarch64 xz zstd; do
        command -v "$tool" >/dev/null 2>&1 || missing="yes"
    done
    [ -d /usr/share/games/fortunes ] || missing="yes"  # the text corpus (BSD licence)
    if [ -n "$missing" ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng sox qemu-user fortunes xz-utils zstd >/dev/null
    fi
fi

python3 -m pip install -q --disable-pip-version-check -e ".[dev]"
python3 -m pytest -q tests "$@"
