#!/bin/sh
# Stream an input through the bundled model with the installed runtime (run ./install.sh first).
#   ./run.sh INPUT.npy -o OUTPUT.npy [--chunk N]   # features [T, F] -> `lstm-edge run`
#   ./run.sh INPUT.wav [--json]                     # audio, keyword models -> `lstm-edge listen`
#   ./run.sh - -o OUTPUT.npy < INPUT.npy            # stdin (.npy or .wav, told apart by the first bytes)
#   ./run.sh --self-test                            # the manifest's reference arrays through the installed runtime,
#                                                   # and the C frontend in native/ (built with cc when present)
# Extra arguments go to the lstm-edge command. Backend and precision default to the bundle's
# (override with LSTM_EDGE_BACKEND / LSTM_EDGE_PRECISION).
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
VENV=${LSTM_EDGE_VENV:-$HERE/venv}
if [ ! -x "$VENV/bin/python" ]; then
    echo "error: no runtime in $VENV; run $HERE/install.sh first" >&2
    exit 1
fi
if [ "${1:-}" = "--self-test" ]; then
    # Exit 0 only when every check passed; each check prints one line.
    ${LSTM_EDGE_EXEC_WRAPPER:-} "$VENV/bin/python" -I - "$HERE" "${LSTM_EDGE_BACKEND:-@BACKEND@}" \
        "${LSTM_EDGE_PRECISION:-@PRECISION@}" "${CC:-cc}" <<'SELFTEST'
import dataclasses, shutil, subprocess, sys, tempfile
from pathlib import Path

import numpy as np

from lstm_edge.runtime import StreamingModel
from lstm_edge.runtime.frontend import LogMelConfig, LogMelFrontend
from lstm_edge.runtime.manifest import Manifest, within_tolerance

here, backend, precision, cc = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
model_dir = here / "model"
manifest = Manifest.load(model_dir)
reference = dict(manifest.reference or {})
failed = []


def report(name, ok, detail):
    print(("ok  " if ok else "FAIL") + f"  {name}: {detail}")
    if not ok:
        failed.append(name)


if not (reference.get("input") and reference.get("output")):
    report("model", False, "the manifest names no reference input/output arrays")
else:
    inputs, expected = np.load(model_dir / reference["input"]), np.load(model_dir / reference["output"])
    stream = StreamingModel.load(model_dir, backend=backend, precision=precision).create_stream()
    if manifest.kind == "step":
        got = np.stack([stream.push(row) for row in inputs])
    else:
        got = np.concatenate([stream.push(inputs[i:i + 10]) for i in range(0, len(inputs), 10)])
    diff = float(np.abs(got - expected).max())
    tolerances = dict(manifest.tolerances)
    if precision == "float":
        ok = within_tolerance(diff, float(np.abs(expected).max()), tolerances)
        report("model", ok, f"{backend} float, {len(inputs)} frames, max abs diff {diff:.2e} "
                            f"(tolerance {tolerances.get('float_max_abs_diff')})")
    else:
        agreement = float((got.argmax(-1) == expected.argmax(-1)).mean())
        want = float(tolerances.get("int8_argmax_agreement", 0.98))
        report("model", agreement >= want, f"{backend} int8, {len(inputs)} frames, argmax agreement with float "
                                           f"{agreement:.4f} (needs >= {want}), max abs diff {diff:.3f}")

native = here / "native"
if manifest.frontend and (native / "lstm_edge_audio.c").is_file():
    config = LogMelConfig.from_dict(dict(manifest.frontend))
    if reference.get("frontend_input") and reference.get("frontend_output"):
        pcm = np.load(model_dir / reference["frontend_input"])
        features = np.load(model_dir / reference["frontend_output"]).reshape(-1, config.n_mels)
        source = "the manifest's frontend reference vector"
    else:  # no stored vector: the numpy frontend installed here is the reference
        t = np.arange(3 * config.sample_rate) / config.sample_rate
        pcm = (8000 * np.sin(2 * np.pi * (200 + 900 * t) * t)).astype(np.int16)
        features = LogMelFrontend(config).compute(pcm)
        source = "a 3 s chirp against the numpy frontend"
    if shutil.which(cc) is None:
        report("C frontend", False, f"no C compiler {cc!r} on this board (install gcc, or set CC)")
    else:
        with tempfile.TemporaryDirectory() as tmp:
            binary = Path(tmp) / "lstm_edge_audio_cli"
            subprocess.run([cc, "-std=c99", "-O2", "-o", str(binary), str(native / "lstm_edge_audio.c"),
                            str(native / "lstm_edge_audio_cli.c"), "-lm"], check=True)
            settings = [f"{k}={v!r}" for k, v in dataclasses.asdict(config).items() if k not in ("window", "mel_scale")]
            kind = "float32" if pcm.dtype.kind == "f" else "int16"
            samples = pcm.astype("<f4" if kind == "float32" else "<i2").tobytes()
            out = subprocess.run([str(binary), "features", f"input={kind}", *settings], input=samples,
                                 capture_output=True, check=True).stdout
        got = np.frombuffer(out, dtype="<f4").reshape(-1, config.n_mels)
        diff = float(np.abs(got - features).max()) if got.shape == features.shape else float("inf")
        report("C frontend", diff <= 1e-4, f"{source}: {got.shape[0]} frames (want {features.shape[0]}), "
                                           f"max abs diff {diff:.2e} (tolerance 1e-4)")
sys.exit(1 if failed else 0)
SELFTEST
    exit $?
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
