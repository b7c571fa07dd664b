"""Filling the bundle templates. Every value is checked or escaped for the file it goes into."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

import lstm_edge
from lstm_edge.devices.choice import Choice
from lstm_edge.devices.errors import BundleError
from lstm_edge.devices.profiles import Profile
from lstm_edge.runtime.errors import expected_got
from lstm_edge.runtime.manifest import Manifest

TEMPLATES = Path(__file__).resolve().parent / "templates"
# Values placed in shell scripts and systemd units: no quoting, spaces, '$', '%', '`' or control characters.
_SCRIPT_SAFE = re.compile(r"[A-Za-z0-9._,:+=/-]*")
_MULTILINE = ("NOTES", "STATE_TABLE", "FILES")  # built here as Markdown, their parts escaped with _md


def _md(text: object) -> str:
    """``text`` on one line: control characters (newlines too) shown as escapes, so no value adds a line."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in str(text))


def _cell(text: object) -> str:
    """A Markdown table cell that cannot close its code span or the cell."""
    return "`" + _md(text).replace("`", "'").replace("|", "\\|") + "`"


def _escaped(template: str, values: dict[str, str]) -> dict[str, str]:
    if template.endswith(".md"):
        return {k: (v if k in _MULTILINE else _md(v)) for k, v in values.items()}
    text = (TEMPLATES / template).read_text(encoding="utf-8")
    for key in set(re.findall(r"@([A-Z_]+)@", text)) & set(values):
        if not _SCRIPT_SAFE.fullmatch(values[key]):
            raise BundleError(expected_got(f"template {template}: value of {key}",
                                           "letters, digits and ._,:+=/- only", repr(values[key])))
    return values


def render(template: str, values: dict[str, str], keep: tuple[str, ...] = ()) -> str:
    text = (TEMPLATES / template).read_text(encoding="utf-8")
    for key, value in _escaped(template, values).items():
        text = text.replace(f"@{key}@", value)
    left = sorted(set(re.findall(r"@([A-Z_]+)@", text)) - set(keep))
    if left:
        raise BundleError(f"template {template}: no value for {left}")
    return text


def _shape_text(shape: tuple) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _state_table(manifest: Manifest) -> str:
    rows = ["| state | state_in (graph input) | state_out (graph output) | dtype | shape | initial value |",
            "|---|---|---|---|---|---|"]
    for s in manifest.states:
        init = "zeros" if s.init == "zeros" else "learned (values in manifest.json)"
        rows.append(f"| {_cell(s.name)} | {_cell(s.input)} | {_cell(s.output)} | {s.dtype} | "
                    f"{_shape_text(s.shape)} | {init} |")
    return "\n".join(rows)


def common_values(manifest: Manifest, profile: Profile, choice: Choice) -> dict[str, str]:
    notes = "".join(f"\n> **Note:** {_md(n)}\n" for n in choice.notes)
    last = manifest.input.shape[-1]
    features = last if isinstance(last, int) else 1  # [1, T] token ids: one id per frame
    chunk = max(choice.entry.chunk_sizes) if choice.entry.chunk_sizes else 10
    signature = (choice.entry.signatures or {}).get(str(chunk), f"chunk_{chunk}")
    states = manifest.states
    return {
        "MODEL": manifest.name, "DEVICE": profile.name, "TITLE": profile.title, "CPU": profile.cpu, "OS": profile.os,
        "ARCH": profile.architecture, "BACKEND": choice.backend, "PRECISION": choice.precision,
        "THREADS": str(profile.threads), "MEMORY_MB": str(profile.memory_budget_mb),
        "VERSION": lstm_edge.__version__, "NOTES": notes, "MODEL_FILE": PurePosixPath(choice.entry.path).name,
        "MODEL_STEM": PurePosixPath(choice.entry.path).stem, "MODEL_EXT": PurePosixPath(choice.entry.path).suffix[1:],
        "INPUT": manifest.input.name, "OUTPUT": manifest.output.name, "FEATURES": str(features),
        "INPUT_SHAPE": _shape_text(manifest.input.shape), "OUTPUT_SHAPE": _shape_text(manifest.output.shape),
        "OUT_DIM": str(manifest.output.shape[-1]), "STATE_TABLE": _state_table(manifest),
        "CHUNK": str(chunk), "SIGNATURE": signature,
        "CHUNK_NOTE": (f"the .tflite file has signatures {dict(choice.entry.signatures or {})}"
                       if choice.entry.chunk_sizes else "the .onnx graph takes any number of frames per call"),
        "INIT": ("zeros" if all(s.init == "zeros" for s in states)
                 else "the learned values in manifest.json `states[i].init`"),
        "STATE_IN_LIST": ", ".join(f'"{s.input}"' for s in states),
        "STATE_OUT_LIST": ", ".join(f'"{s.output}"' for s in states),
        "STATE_SIZES": ", ".join(str(int(_prod(s.shape))) for s in states),
        "STATE_SHAPES": ", ".join(_shape_text(s.shape) for s in states),
        "STATE_SHAPES_KT": ", ".join("longArrayOf(" + ", ".join(f"{d}" for d in s.shape) + ")" for s in states),
        "STATE_SHAPES_SWIFT": ", ".join("[" + ", ".join(str(d) for d in s.shape) + "]" for s in states),
        "CLASS": re.sub(r"[^A-Za-z0-9]", "", manifest.name.title()) or "Model",
    }


def _prod(shape: tuple) -> int:
    out = 1
    for d in shape:
        out *= int(d)
    return out
