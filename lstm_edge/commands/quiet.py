"""Keep third-party noise off a CLI user's terminal (``lstm-edge --verbose`` shows it again).

Engines and converters write to the process's stderr from C++ (the XNNPACK "INFO: Created delegate" line, oneDNN,
absl), from Python logging (torchao, absl) and from tqdm bars. lstm-edge's own lines go to ``sys.stderr``; this
points ``sys.stderr`` at a copy of the terminal's stderr and sends file descriptor 2, which the native code writes
to, to /dev/null.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import warnings
from typing import Any

QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "TQDM_DISABLE": "1", "GLOG_minloglevel": "3", "ONEDNN_VERBOSE": "0",
             "ORT_LOGGING_LEVEL": "3"}


def _disable_tqdm() -> None:
    """Progress bars off, also where a library passes ``disable=False`` itself (TQDM_DISABLE then does not apply)."""
    if importlib.util.find_spec("tqdm") is None:
        return
    import tqdm

    original = tqdm.tqdm.__init__

    def quiet_init(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs["disable"] = True
        original(self, *args, **kwargs)

    tqdm.tqdm.__init__ = quiet_init


def quiet_third_party(host_side: bool = False) -> None:
    """Silence other libraries' stderr for the rest of this process; lstm-edge's messages still print.

    ``host_side`` (export, quantize, demo) also turns off tqdm progress bars of the converters.
    """
    for name, value in QUIET_ENV.items():
        os.environ.setdefault(name, value)
    if host_side:
        _disable_tqdm()
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    try:
        sys.stderr.flush()
        own = os.fdopen(os.dup(2), "w", buffering=1, encoding=sys.stderr.encoding or "utf-8", errors="replace")
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # no real file descriptor 2 (embedded interpreter, pytest capture)
        return
    sys.stderr = own
