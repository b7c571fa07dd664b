#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine, lints and type-checks, then runs the tests.
# Usage: bash tests/run.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian's contrib and non-free sections for the machine's own release, from the archive and key it already uses
# (the deb822 stanza, or the classic line, whose suite is the release itself); nothing is written when both are
# enabled already, and an earlier run's file is replaced, not added to.
enable_contrib_non_free() {
    local codename own="/etc/apt/sources.list.d/lstm-edge-non-free.sources" found
    codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
    rm -f "$own" /etc/apt/sources.list.d/lstm-edge-non-free.list
    # one line per source of this release: URI, keyring (or -), then its components
    found=$( { for file in /etc/apt/sources.list.d/*.sources; do
                   [ -f "$file" ] && awk -v RS= -v release="$codename" '{
                       uri = ""; key = "-"; suites = ""; comps = ""
                       n = split($0, lines, "\n")
                       for (i = 1; i <= n; i++) {
                           split(lines[i], f, /:[ \t]*/)
                           if (f[1] == "URIs") { split(f[2] ":" f[3], u, " "); uri = u[1] }
                           if (f[1] == "Signed-By") key = f[2]
                           if (f[1] == "Suites") suites = " " f[2] " "
                           if (f[1] == "Components") comps = f[2]
                       }
                       if (uri != "" && index(suites, " " release " ")) print uri, key, comps
                   }' "$file"
               done
               [ -f /etc/apt/sources.list ] && awk -v release="$codename" '$1 == "deb" {
                   key = "-"; for (i = 2; i <= NF; i++) {
                       if ($i ~ /signed-by=/) { key = $i; sub(/.*signed-by=/, "", key); sub(/\]$/, "", key) }
                       if ($i ~ /^[a-z]+:\/\//) { uri = $i; if ($(i + 1) != release) break
                           comps = ""; for (j = i + 2; j <= NF; j++) comps = comps " " $j
                           print uri, key, comps; break }
                   }
               }' /etc/apt/sources.list
             } || true)
    if [ -z "$found" ]; then
        echo "tests/run.sh: no Debian source for $codename found; enable contrib and non-free by hand" >&2
        return 0
    fi
    if echo "$found" | tr ' ' '\n' | grep -qx contrib && echo "$found" | tr ' ' '\n' | grep -qx non-free; then
        return 0
    fi
    set -- $found  # the first source of the release: its URI and keyring
    {
        echo "Types: deb"
        echo "URIs: $1"
        echo "Suites: $codename"
        echo "Components: contrib non-free"
        if [ "$2" != "-" ]; then echo "Signed-By: $2"; fi
    } > "$own"
}

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
    # WebAssembly (tests/test_wasm.py): clang + wasm-ld + the WASI C library and compiler runtime build the module,
    # Node.js runs its unit tests, Chromium (driven by its chromedriver) the demo page
    for pair in clang:clang wasm-ld:lld node:nodejs chromium:chromium chromedriver:chromium-driver; do
        command -v "${pair%%:*}" >/dev/null 2>&1 || packages="$packages ${pair#*:}"
    done
    [ -f /usr/lib/wasm32-wasi/libc.a ] || packages="$packages wasi-libc"
    ls /usr/lib/llvm-*/lib/clang/*/lib/wasi/libclang_rt.builtins-wasm32.a >/dev/null 2>&1 \
        || packages="$packages libclang-rt-14-dev-wasm32"
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
        enable_contrib_non_free
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
