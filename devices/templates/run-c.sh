#!/bin/sh
# Run the bundled model with lstm-edge's C programs in bin/ (static @ARCH@ binaries: no Python, nothing to install).
#   ./run.sh [--chunk N] < frames.f32 > outputs.f32   # raw little-endian float32 frames of @FEATURES@ values in,
#                                                     # @OUT_DIM@ float32 outputs per frame out (token-id models: int32 ids)
#   ./run.sh --listen [--threshold P] < audio.s16le   # keyword models: 16 kHz mono s16le PCM in, detections out
#                                                     # (one JSON object per line, as `lstm-edge listen --json`)
#   ./run.sh --info                                   # sizes, kernels and the RAM the model and a stream take (JSON)
#   ./run.sh --verify                                 # every file against SHA256SUMS
# Precision defaults to the bundle's (override with LSTM_EDGE_PRECISION); LSTM_EDGE_EXEC_WRAPPER runs the programs
# through another command (e.g. qemu-arm on a PC).
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
PRECISION=${LSTM_EDGE_PRECISION:-@PRECISION@}
case "${1:-}" in
    --verify)
        cd "$HERE" && exec sha256sum -c --quiet SHA256SUMS ;;
    --listen)
        shift
        exec ${LSTM_EDGE_EXEC_WRAPPER:-} "$HERE/bin/lstm-edge-listen" --precision "$PRECISION" "$@" "$HERE/model" ;;
    *)
        exec ${LSTM_EDGE_EXEC_WRAPPER:-} "$HERE/bin/lstm-edge-run" --precision "$PRECISION" "$@" "$HERE/model" ;;
esac
