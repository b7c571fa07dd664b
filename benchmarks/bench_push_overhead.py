"""stream.push against the bare engine call on the same model and inputs, per backend, at T=1 and T=10.

The bare call is what a hand-written client would do: onnxruntime's ``session.run`` on the exported graph, or
LiteRT's public signature runner. Target: push overhead <= 15% (the LiteRT backend skips the runner's per-call
resize and re-allocation, so it can be faster than the bare runner).
Run: python benchmarks/bench_push_overhead.py [--repeats N]
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from lstm_edge.runtime.manifest import Manifest

from _common import interleaved_medians, reference_model, save


def bare_onnx(model_dir: Path, manifest: Manifest, length: int) -> Callable[[np.ndarray], object]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    entry = manifest.file("onnx", "float")
    session = ort.InferenceSession(str(model_dir / entry.path), options, providers=["CPUExecutionProvider"])
    names = [manifest.output.name, *[s.output for s in manifest.states], *(entry.checks or {}).values()]
    state = {s.input: s.initial_value() for s in manifest.states}
    return lambda batched: session.run(names, {manifest.input.name: batched, **state})


def bare_litert(model_dir: Path, manifest: Manifest, length: int) -> Callable[[np.ndarray], object]:
    from ai_edge_litert.interpreter import Interpreter

    entry = manifest.file("tflite", "float")
    runner = Interpreter(model_path=str(model_dir / entry.path), num_threads=1).get_signature_runner(
        entry.signatures[str(length)])
    state = {s.input: s.initial_value() for s in manifest.states}
    return lambda batched: runner(**{manifest.input.name: batched}, **state)


def bare_native(model_dir: Path, manifest: Manifest, length: int) -> Callable[[np.ndarray], object]:
    import ctypes

    from lstm_edge.runtime.backends import native

    lib = native.library()
    entry = manifest.file("c", "float")
    _, model = native.load_c_model((model_dir / entry.path).read_bytes(), entry.path)
    stream = lib.lem_stream_create(model, length, ctypes.byref(ctypes.c_int(0)))
    x = np.zeros((length, 40), np.float32)
    state = np.concatenate([s.initial_value().reshape(-1) for s in manifest.states])
    out = np.zeros(state.size + 12 * length, np.float32)
    x_at, state_at, out_at = x.ctypes.data, state.ctypes.data, out.ctypes.data
    run = lib.lem_stream_run

    out[:state.size] = state

    def call(batched: np.ndarray) -> object:
        x[:] = batched[0]
        # state carried in place (state_in and state_out alias), as push carries it: a zero state would skip work
        return run(stream, x_at, length, out_at, out_at, out_at + 4 * state.size)

    call.keep = (model, stream, x, state, out, state_at)  # type: ignore[attr-defined]  # alive with the closure
    return call


BARE_CALLS = {"onnx": ("bare session.run", bare_onnx), "litert": ("bare signature runner", bare_litert),
              "native": ("bare lem_stream_run", bare_native)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=4000)
    args = parser.parse_args()

    import torch

    from lstm_edge.export import export
    from lstm_edge.runtime import StreamingModel
    from lstm_edge.runtime.backends import NAMES

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = export(reference_model(), torch.randn(1, 10, 40), tmp, formats=("onnx", "tflite", "c"),
                           chunk_sizes=(10, 1))
        manifest = Manifest.load(model_dir)
        for backend in NAMES:
            label, make_bare = BARE_CALLS[backend]
            model = StreamingModel.load(model_dir, backend=backend, threads=1)
            rows = {}
            for length in (1, 10):
                chunk = np.random.default_rng(0).standard_normal((length, 40)).astype(np.float32)
                batched = chunk[None]
                bare = make_bare(model_dir, manifest, length)
                stream = model.create_stream()
                calls = {label: lambda b=bare, x=batched: b(x), "stream.push": lambda s=stream, x=chunk: s.push(x)}
                medians = interleaved_medians(calls, args.repeats)
                ratio = medians["stream.push"] / medians[label]
                rows[f"T={length}"] = {**medians, "push_over_bare": ratio}
                print(f"{backend:7s} T={length:2d}: {label} {medians[label]:7.2f} us   stream.push "
                      f"{medians['stream.push']:7.2f} us   ratio {ratio:.3f}  (overhead {100 * (ratio - 1):+.1f}%, "
                      "target <= +15%)")
            results[backend] = {"engine": model.engine, "results": rows}
    print("saved", save("push_overhead", {"repeats": args.repeats, "backends": results}))


if __name__ == "__main__":
    main()
