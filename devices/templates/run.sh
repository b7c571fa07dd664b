#!/bin/sh
# Stream an input through the bundled model with the installed runtime (run ./install.sh first).
#   ./run.sh INPUT.npy -o OUTPUT.npy [--chunk N]   # features [T, F] -> `lstm-edge run`
#   ./run.sh INPUT.wav [--json]                     # audio, keyword models -> `lstm-edge listen`
#   ./run.sh - -o OUTPUT.npy < INPUT.npy            # stdin (.npy or .wav, told apart by the first bytes)
# Extra arguments go to the lstm-edge command. Backend and precision default to the bundle's
# (override with LSTM_EDGE_BACKEND / LSTM_EDGE_PRECISION).
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
VENV=${LSTM_EDGE_VENV:-$HERE/venv}
if [ ! -x "$VENV/bin/python" ]; then
    echo "error: no runtime in $VENV; run $HERE/install.sh first" >&2
    exit 1
fi
if [ $# -lt 1 ]; then
    echo "usage: $0 INPUT.npy|INPUT.wav|- [-o OUTPUT.npy] [options]" >&2
    exit 2
fi
INPUT=$1
shift
TMP=""
if [ "$INPUT" = "-" ]; then
    TMP=$(mktemp -d)
    trap 'rm -rf "$TMP"' EXIT
    cat > "$TMP/stdin"
    if [ "$(head -c 4 "$TMP/stdin")" = "RIFF" ]; then INPUT="$TMP/stdin.wav"; else INPUT="$TMP/stdin.npy"; fi
    mv "$TMP/stdin" "$INPUT"
fi
case "$INPUT" in
    *.wav|*.WAV) COMMAND=listen ;;
    *) COMMAND=run ;;
esac
${LSTM_EDGE_EXEC_WRAPPER:-} "$VENV/bin/python" -I -m lstm_edge "$COMMAND" "$HERE/model" "$INPUT" "$@" \
    --backend "${LSTM_EDGE_BACKEND:-@BACKEND@}" --precision "${LSTM_EDGE_PRECISION:-@PRECISION@}"
