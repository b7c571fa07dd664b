"""Which model file of a model directory goes into a device bundle, and why."""

from __future__ import annotations

from dataclasses import dataclass

from lstm_edge.devices.errors import BundleError
from lstm_edge.devices.profiles import Profile
from lstm_edge.runtime import backends
from lstm_edge.runtime.errors import expected_got
from lstm_edge.runtime.manifest import Manifest, ModelFile


@dataclass(frozen=True)
class Choice:
    """What goes into a bundle: the model file and why it was chosen."""

    backend: str
    precision: str
    entry: ModelFile
    notes: tuple[str, ...]


def choose_model_file(manifest: Manifest, profile: Profile, backend: str | None,
                      precision: str | None) -> Choice:
    """The model file for ``profile``: the asked backend/precision, else the profile's, with loud fallbacks.

    An explicitly asked backend or precision that the directory lacks is an error; the profile's preferred int8
    falls back to float, and its preferred backend to the other one, each with a note.
    """
    notes: list[str] = []
    if backend is not None and backend not in backends.REGISTRY:
        raise BundleError(expected_got("backend", f"one of {list(backends.NAMES)}", repr(backend)))
    have = ", ".join(f.key for f in manifest.files) or "none"
    if profile.c_target is not None:  # the bundle ships lstm-edge's C programs: the C weight file or nothing
        if backend is not None and backend != profile.backend:
            raise BundleError(expected_got(f"backend for {profile.name} (its bundle ships lstm-edge's C programs, "
                                           "no Python engine)", repr(profile.backend), repr(backend)))
        if not manifest.has_file("c", "float"):
            raise BundleError(f"{profile.name} bundles run lstm-edge's C programs, which read the C weight file, and "
                              f"the model directory has none (manifest lists: {have}); add it with: "
                              "lstm-edge add-c MODEL_DIR")
        backend = profile.backend
    if backend is not None and backends.info(backend).needs and profile.c_target is None:
        raise BundleError(f"bundles for {profile.name} install a Python engine from PyPI; backend {backend!r} has none "
                          f"(it needs {backends.info(backend).needs}): build its C programs with `lstm-edge build-c` "
                          "instead, or bundle for a board whose profile ships them (raspberry-pi-3-armv7)")
    if backend is None:
        backend = profile.backend
        formats = {f.format for f in manifest.files}
        if backends.info(backend).format not in formats:
            others = [b for b in backends.NAMES if b != backend and backends.info(b).format in formats
                      and not backends.info(b).needs]
            if not others:
                raise BundleError(f"the model directory has no model files (manifest lists: {have})")
            other = others[0]
            notes.append(f"The {profile.name} profile prefers {backend}, but the model directory has no "
                         f"{backends.info(backend).format} file; using {other} instead (export with "
                         "formats=('onnx', 'tflite') to get it).")
            backend = other
    elif not any(f.format == backends.info(backend).format for f in manifest.files):
        raise BundleError(expected_got(f"a {backends.info(backend).format} file for backend {backend!r}",
                                       "one in the model directory", f"only {have}"))
    fmt = backends.info(backend).format
    if precision is None:
        precision = profile.precision
        if not manifest.has_file(fmt, precision):
            if precision == "int8" and manifest.has_file(fmt, "float"):
                notes.append(f"int8 was preferred for {profile.name} but the directory has no {fmt} int8 file: "
                             "this bundle runs FLOAT. Run `lstm-edge quantize MODEL_DIR` and bundle again for int8.")
                precision = "float"
    entry = manifest.file(fmt, precision)  # raises with the list of files when missing
    return Choice(backend, precision, entry, tuple(notes))
