"""The rule for model names: they end up in file names, shell scripts, systemd units and READMEs."""

from __future__ import annotations

import re

from lstm_edge.runtime.errors import ManifestError, expected_got

MODEL_NAME_RULE = "1-64 characters of letters, digits, '.', '_', '+' and '-', starting with a letter or digit"
_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")  # the manifest schema's pattern, bounded


def check_model_name(name: object) -> str:
    """``name`` if it follows ``MODEL_NAME_RULE``, else a ManifestError saying expected vs got."""
    if not isinstance(name, str) or not _MODEL_NAME.fullmatch(name):
        raise ManifestError(expected_got("model name", MODEL_NAME_RULE, repr(name)))
    return name
