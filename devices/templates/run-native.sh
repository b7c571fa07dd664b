#!/bin/sh
# Run the bundled model with the bundled C programs: static @ARCH@ binaries, no Python, nothing to install.
#   ./run.sh listen [--threshold P] < audio.s16le        # 16 kHz mono s16le PCM -> detections, one JSON line each
#   arecord -q -f S16_LE -r 16000 -c 1 -t raw | ./run.sh listen      # live, from the board's microphone
#   ./run.sh run [--chunk N] < frames.raw > outputs.f32  # raw little-endian float32 frames -> float32 outputs
#   ./run.sh --self-test                                 # checksums, then the reference stream through lstm-edge-run
# Precision defaults to the bundle's (@PRECISION@; LSTM_EDGE_PRECISION overrides it when the model folder holds
# that weight file). LSTM_EDGE_EXEC_WRAPPER is a command prefix for the programs (an emulator, when the bundle is
# tested on a machine of another architecture).
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
WRAP=${LSTM_EDGE_EXEC_WRAPPER:-}
PRECISION=${LSTM_EDGE_PRECISION:-@PRECISION@}
case "${1:-}" in
    listen)
        shift
        exec $WRAP "$HERE/bin/lstm-edge-listen" --precision "$PRECISION" "$@" "$HERE/model" ;;
    run)
        shift
        exec $WRAP "$HERE/bin/lstm-edge-run" --precision "$PRECISION" "$@" "$HERE/model" ;;
    --self-test) ;;
    *)
        echo "usage: $0 listen [--threshold P] < pcm | run [--chunk N] < frames | --self-test" >&2
        exit 2 ;;
esac

# Self-test: exit 0 only when every check passed; each check prints one line.
status=0
if (cd "$HERE" && sha256sum --check --strict --quiet SHA256SUMS); then
    echo "ok    checksums: every file matches SHA256SUMS"
else
    echo "FAIL  checksums: the bundle is corrupt or was modified (FAILED lines above); copy it again"
    status=1
fi
if [ "@HAS_REFERENCE@" = "1" ]; then
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    if $WRAP "$HERE/bin/lstm-edge-run" --precision "$PRECISION" --chunk 10 "$HERE/model" \
            < "$HERE/model/@RAW_INPUT@" > "$work/got.f32"; then
        od -A n -v -t f4 -w$((4 * @OUT_WIDTH@)) "$work/got.f32" > "$work/got.txt"
        od -A n -v -t f4 -w$((4 * @OUT_WIDTH@)) "$HERE/model/@RAW_OUTPUT@" > "$work/want.txt"
        # one row per frame: @OUT_WIDTH@ outputs of the program, then @OUT_WIDTH@ of the float reference
        if paste -d ' ' "$work/got.txt" "$work/want.txt" | awk -v n=@OUT_WIDTH@ -v frames=@FRAMES@ \
                -v gate="$PRECISION" -v float_limit=@FLOAT_LIMIT@ -v int8_limit=@INT8_LIMIT@ '
            NF == 2 * n {
                g = 1; w = 1
                for (i = 1; i <= n; i++) {
                    d = $i - $(i + n); if (d < 0) d = -d; if (d > worst) worst = d
                    if ($i > $g) g = i
                    if ($(i + n) > $(w + n)) w = i
                }
                rows++; if (g == w) agree++
            }
            END {
                if (rows != frames) { printf "FAIL  model: %d output frames, want %d\n", rows, frames; exit 1 }
                if (gate == "float") {
                    printf "%s  model: float, %d frames, max abs diff %.2e (tolerance %.2e)\n",
                        (worst <= float_limit ? "ok  " : "FAIL"), rows, worst, float_limit
                    exit (worst <= float_limit ? 0 : 1)
                }
                printf "%s  model: int8, %d frames, argmax agreement with float %.4f (needs >= %s), max abs diff %.3f\n",
                    (agree / rows >= int8_limit ? "ok  " : "FAIL"), rows, agree / rows, int8_limit, worst
                exit (agree / rows >= int8_limit ? 0 : 1)
            }'; then :; else status=1; fi
    else
        echo "FAIL  model: lstm-edge-run failed (message above)"
        status=1
    fi
else
    echo "none  model: the manifest stores no reference stream to compare with (step model, or none stored)"
fi
exit $status
