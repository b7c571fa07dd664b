#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine, lints and type-checks, then runs the tests.
# Usage: bash tests/run.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
    # tool on PATH -> Debian package that provides it: speech synthesis and audio (keyword spotting, speech
    # recognition), emulation and cross compilers (ARM bundles, the C frontend on aarch64 and armv7), a JVM (the
    # Android guide's JNI glue), compressors (text baselines)
    packages=""
    for pair in espeak-ng:espeak-ng flite:flite sox:sox qemu-aarch64:qemu-user qemu-arm:qemu-user gcc:gcc file:file \
                javac:default-jdk-headless aarch64-linux-gnu-gcc:gcc-aarch64-linux-gnu \
                arm-linux-gnueabihf-gcc:gcc-arm-linux-gnueabihf xz:xz-utils zstd:zstd; do
        command -v "${pair%%:*}" >/dev/null 2>&1 || packages="$packages ${pair#*:}"
    done
    [ -f /usr/include/stdio.h ] || packages="$packages libc6-dev"
    [ -f /usr/aarch64-linux-gnu/lib/libc.a ] || packages="$packages libc6-dev-arm64-cross"
    [ -f /usr/arm-linux-gnueabihf/lib/libc.a ] || packages="$packages libc6-dev-armhf-cross"
    [ -d /usr/share/games/fortunes ] || packages="$packages fortunes"  # the text corpus (BSD licence)
    # Festival and its recorded-speaker voices: the keyword recipe's training-only synthesiser
    for pair in english/ked_diphone:festvox-kdlpc16k catalan/upc_ca_ona_hts:festvox-ca-ona-hts \
                czech/czech_dita:festvox-czech-dita czech/czech_ph:festvox-czech-ph czech/czech_krb:festvox-czech-krb \
                czech/czech_machac:festvox-czech-machac finnish/suo_fi_lj_diphone:festvox-suopuhe-lj \
                finnish/hy_fi_mv_diphone:festvox-suopuhe-mv italian/lp_diphone:festvox-italp16k \
                italian/pc_diphone:festvox-itapc16k; do
        [ -d "/usr/share/festival/voices/${pair%%:*}" ] || packages="$packages ${pair#*:}"
    done
    command -v text2wave >/dev/null 2>&1 || packages="$packages festival"
    # Cortex-M firmware (tests/test_cortex_m.py): the bare-metal toolchain with its C library, and the MPS2/MPS3 boards
    command -v arm-none-eabi-gcc >/dev/null 2>&1 || packages="$packages gcc-arm-none-eabi"
    [ -f /usr/lib/arm-none-eabi/newlib/libc.a ] || packages="$packages libnewlib-arm-none-eabi"
    command -v qemu-system-arm >/dev/null 2>&1 || packages="$packages qemu-system-arm"
    # more English training voices (Festival diphones), and the held-out test voices: the CMU SLT speaker in
    # Festival, and MBROLA's US and British English voices (engine in contrib, voices in non-free)
    for pair in english/rab_diphone:festvox-rablpc16k english/don_diphone:festvox-don \
                us/cmu_us_slt_arctic_hts:festvox-us-slt-hts; do
        [ -d "/usr/share/festival/voices/${pair%%:*}" ] || packages="$packages ${pair#*:}"
    done
    # SVOX Pico and RHVoice, in Debian's non-free section: the speech recipe's parametric recorded-speaker voices
    nonfree=""
    command -v pico2wave >/dev/null 2>&1 || nonfree="$nonfree libttspico-utils"
    { command -v RHVoice-test >/dev/null 2>&1 && [ -d /usr/share/RHVoice/voices/clb ]; } || nonfree="$nonfree rhvoice rhvoice-english"
    command -v mbrola >/dev/null 2>&1 || nonfree="$nonfree mbrola"
    for voice in us1 us2 us3 en1; do
        [ -d "/usr/share/mbrola/$voice" ] || nonfree="$nonfree mbrola-$voice"
    done
    if [ -n "$nonfree" ]; then
        # the machine's own archive and key (deb822 sources, else the classic list), with the extra components
        codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
        if [ -f /etc/apt/sources.list.d/debian.sources ]; then
            uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
            key=$(awk '/^Signed-By:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
        else
            uri=$(awk '$1 == "deb" {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' /etc/apt/sources.list)
            key=""
        fi
        echo "deb ${key:+[signed-by=$key] }$uri $codename contrib non-free" > /etc/apt/sources.list.d/lstm-edge-non-free.list
        packages="$packages$nonfree"
    fi
    if [ -n "$packages" ]; then
        apt-get update -qq
        # shellcheck disable=SC2086 # one word per package
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $packages >/dev/null
    fi
fi

python3 -m pip install -q --disable-pip-version-check -e ".[dev]"
python3 -m ruff check .
python3 -m mypy
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
