#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine, then runs it.
# Usage: bash tests/run.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
    missing=""
    for tool in espeak-ng sox qemu-aarch64; do
        command -v "$tool" >/dev/null 2>&1 || missing="yes"
    done
    if [ -n "$missing" ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng sox qemu-user >/dev/null
    fi
fi

python3 -m pip install -q --disable-pip-version-check -e ".[dev]"
# The suite must leave the work tree as it found it (a developer's own uncommitted changes are compared, not refused).
before=$(git status --porcelain 2>/dev/null || true)
status=0
python3 -m pytest -q tests "$@" || status=$?
after=$(git status --porcelain 2>/dev/null || true)
if [ "$before" != "$after" ]; then
    echo "error: the test suite changed the work tree (git status --porcelain before vs after):" >&2
    diff <(echo "$before") <(echo "$after") >&2 || true
    exit 1
fi
exit "$status"
