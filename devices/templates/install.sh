#!/bin/sh
# Offline installer for this lstm-edge bundle (@DEVICE@). Needs python3 @PYTHON@ and sha256sum; no network.
#   ./install.sh                      # venv in ./venv
#   LSTM_EDGE_VENV=/opt/kws ./install.sh
# PYTHON picks the interpreter (default python3). LSTM_EDGE_EXEC_WRAPPER is a command prefix for running the
# venv's python (for example an emulator when the bundle is tested on a machine of another architecture).
# LSTM_EDGE_PIP_ARGS adds pip options (for example --no-compile).
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$HERE"
PYTHON=${PYTHON:-python3}
VENV=${LSTM_EDGE_VENV:-$HERE/venv}
WRAP=${LSTM_EDGE_EXEC_WRAPPER:-}
PIP_ARGS=${LSTM_EDGE_PIP_ARGS:-}
# Only the bundle's wheels: no pip.conf and no PIP_* variables (an extra find-links or index could slip in).
for name in $(env | sed -n 's/^\(PIP_[A-Z_]*\)=.*/\1/p'); do unset "$name"; done
export PIP_CONFIG_FILE=/dev/null

echo "== checking every file against SHA256SUMS"
if ! sha256sum --check --strict --quiet SHA256SUMS; then
    echo "error: the bundle is corrupt or was modified (see the FAILED lines above); copy it again" >&2
    exit 1
fi

echo "== checking the interpreter ($PYTHON)"
"$PYTHON" - <<'PYCHECK'
import platform, sys
want_version, want_machine = "@PYTHON@", "@ARCH@"
have_version = "%d.%d" % sys.version_info[:2]
have_machine = platform.machine()
problems = []
if have_version != want_version:
    problems.append(f"python: expected {want_version}, got {have_version} (rebuild the bundle with --python {have_version})")
if have_machine != want_machine:
    problems.append(f"machine: expected {want_machine}, got {have_machine}"
                    + (" (this is a 32-bit OS: install Raspberry Pi OS 64-bit)" if have_machine.startswith("armv") else ""))
if problems:
    sys.exit("error: this bundle was built for another system:\n  " + "\n  ".join(problems))
PYCHECK

echo "== creating the virtual environment $VENV"
"$PYTHON" -m venv --without-pip "$VENV"

echo "== installing lstm-edge[@EXTRA@] from wheels/ (offline)"
PIP_WHEEL=$(ls wheels/pip-*.whl | head -n 1)
# pip runs from its own wheel, so python3-venv/ensurepip is not needed on the board.
$WRAP "$VENV/bin/python" "$PIP_WHEEL/pip" install --no-index --find-links "$HERE/wheels" \
    --disable-pip-version-check --progress-bar off $PIP_ARGS "lstm-edge[@EXTRA@]==@VERSION@"

echo "== checking the engine loads the model"
$WRAP "$VENV/bin/python" -I -c "
from lstm_edge.runtime import StreamingModel
model = StreamingModel.load('$HERE/model', backend='@BACKEND@', precision='@PRECISION@')
print('ok:', model.describe())
"

sed "s|@""BUNDLE_DIR@|$HERE|g; s|@""VENV@|$VENV|g" lstm-edge.service.in > lstm-edge.service
echo "== done. Stream a file:   $HERE/run.sh INPUT.npy -o OUTPUT.npy"
echo "   Run as a service:      sudo cp $HERE/lstm-edge.service /etc/systemd/system/ && sudo systemctl enable --now lstm-edge"
