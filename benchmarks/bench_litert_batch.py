"""TFLite batch signatures on the shipped keyword spotter: which batch sizes to write, and what a StreamBatch gains.

1. File size, export time and memory: the keyword spotter (models/kws/float.pt, as its recipe exports it)
   converted to TFLite with batch signatures for (), (4, 16) (the recipe's choice, ``tflite_batch.DEFAULT_BATCH_SIZES``)
   and (4, 16, 64), each quantized to dynamic int8. The batch signatures go into a companion file
   (``model.batch.tflite``); for the one-stream file, the resident memory a fresh process gains by loading it and
   making one one-stream call (LiteRT's XNNPACK delegate packs the weights of every signature of a file it loads,
   which is why the batch signatures live apart), and for the companion the same with one 16-stream call.
2. Bare LiteRT calls of the (4, 16, 64) files, float and int8, T = 1 and 10: microseconds per stream of one call of
   the B-stream signature for B = 1 (one-stream file), 4, 16, 64 (companion), timed in alternating rounds, and the
   ratio to B = 1.
3. ``StreamBatch`` of n = 16 (one call of ``chunk_T_b16``) against 16 separate ``Stream``s on the shipped files,
   alternating rounds: the ratio batch / separate per stream.
4. Resident memory through the runtime on the shipped files, each in a fresh process (after the imports): (a) load
   the model and push 10 frames through one ``Stream`` (the companion is never opened), (b) load it and push 10
   frames through a 16-slot ``StreamBatch``.

One engine thread; the process is pinned to one core (``--cpu``, default 0).
Run: python benchmarks/bench_litert_batch.py [--quick] [--cpu N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import interleaved_medians, save

ROOT = Path(__file__).resolve().parent.parent
KWS_DIR = ROOT / "models" / "kws" / "export"
SIZE_SETS = ((), (4, 16), (4, 16, 64))
STREAMS = (1, 4, 16, 64)
FRAMES = (1, 10)


def export_variant(batch_sizes: tuple[int, ...], out: Path) -> dict[str, object]:
    import torch

    from lstm_edge.export import export
    from lstm_edge.quantize import quantize
    from lstm_edge.recipes.kws.model import feature_normalization, load_model
    from lstm_edge.runtime.audio import load_mono
    from lstm_edge.runtime.frontend import LogMelConfig, LogMelFrontend

    torch.set_num_threads(1)
    model, config = load_model(ROOT / "models" / "kws")
    frontend = LogMelConfig.from_dict(config["frontend"])
    audio, _ = load_mono(ROOT / "models" / "kws" / "demo.wav", frontend.sample_rate)
    features = LogMelFrontend(frontend).compute(audio)
    start = time.perf_counter()
    export(model, torch.from_numpy(features[None, :10]), out, formats=("tflite",), chunk_sizes=(10, 1),
           labels=config["labels"], frontend=frontend.to_dict(feature_normalization(model)), name="kws-lstm",
           output_semantics="logits", reference_input=features, tflite_batch_sizes=batch_sizes)
    seconds = time.perf_counter() - start
    quantize(out, formats=("tflite",))
    return {"batch_sizes": list(batch_sizes), "export_seconds": round(seconds, 1),
            "float_bytes": (out / "model.tflite").stat().st_size,
            "int8_bytes": (out / "model.int8.tflite").stat().st_size,
            "float_batch_bytes": _size(out / "model.batch.tflite"),
            "int8_batch_bytes": _size(out / "model.int8.batch.tflite"),
            "float_resident_kb": resident_kb(out / "model.tflite"),
            "int8_resident_kb": resident_kb(out / "model.int8.tflite"),
            "float_batch_resident_kb": resident_kb(out / "model.batch.tflite", 16) if batch_sizes else None,
            "int8_batch_resident_kb": resident_kb(out / "model.int8.batch.tflite", 16) if batch_sizes else None}


def _size(path: Path) -> int | None:
    return path.stat().st_size if path.is_file() else None


MEMORY_PROBE = """
import sys
import numpy as np
from ai_edge_litert.interpreter import Interpreter
def rss():
    return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0])
before = rss()
n = int(sys.argv[2])
runner = Interpreter(model_path=sys.argv[1], num_threads=1).get_signature_runner(sys.argv[3])
runner(x=np.zeros((n, 10, 40), np.float32), lstm_h_in=np.zeros((2, n, 128), np.float32),
       lstm_c_in=np.zeros((2, n, 128), np.float32))
print(rss() - before)
"""

RUNTIME_PROBE = """
import sys
import numpy as np
import lstm_edge.runtime.backends.litert, lstm_edge.runtime.batch
from ai_edge_litert.interpreter import Interpreter
from lstm_edge.runtime import StreamingModel
def rss():
    return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0])
before = rss()
n = int(sys.argv[3])
model = StreamingModel.load(sys.argv[1], backend="litert", precision=sys.argv[2], threads=1)
x = np.zeros((n, 10, 40), np.float32)
if n == 1:
    model.create_stream().push(x[0])
else:
    model.create_batch(n).push(x)
print(rss() - before)
"""


def resident_kb(path: Path, streams: int = 1) -> int:
    """KB of resident memory a fresh process gains by loading ``path`` and calling ``chunk_10`` once (with
    ``streams`` > 1: ``chunk_10_b<streams>``)."""
    key = "chunk_10" if streams == 1 else f"chunk_10_b{streams}"
    done = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(path), str(streams), key], check=True,
                          capture_output=True, text=True)
    return int(done.stdout.split()[-1])


def runtime_resident_kb(precision: str, streams: int) -> int:
    """KB of resident memory a fresh process gains by loading the shipped keyword spotter on LiteRT and pushing 10
    frames through one Stream (``streams`` 1) or a StreamBatch of ``streams`` slots."""
    done = subprocess.run([sys.executable, "-c", RUNTIME_PROBE, str(KWS_DIR), precision, str(streams)], check=True,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return int(done.stdout.split()[-1])


def bare_calls(path: Path, batch_path: Path, repeats: int) -> list[dict[str, object]]:
    """Per-stream microseconds of one call of each B-stream signature (the interpreter's own call path): B = 1
    from the one-stream file ``path``, the others from its companion ``batch_path``."""
    from ai_edge_litert.interpreter import Interpreter

    interpreters = {1: Interpreter(model_path=str(path), num_threads=1),
                    0: Interpreter(model_path=str(batch_path), num_threads=1)}
    rows = []
    for frames in FRAMES:
        calls = {}
        for streams in STREAMS:
            key = f"chunk_{frames}" if streams == 1 else f"chunk_{frames}_b{streams}"
            interpreter = interpreters[1 if streams == 1 else 0]
            wrapper = interpreter._interpreter
            runner = interpreter.get_signature_runner(key)
            graph = runner._subgraph_index
            wrapper.AllocateTensors(graph)
            inputs, outputs = runner.get_input_details(), runner.get_output_details()
            rng = np.random.default_rng(streams)
            feed = [(inputs["x"]["index"], rng.standard_normal((streams, frames, 40)).astype(np.float32)),
                    (inputs["lstm_h_in"]["index"], np.zeros((2, streams, 128), np.float32)),
                    (inputs["lstm_c_in"]["index"], np.zeros((2, streams, 128), np.float32))]
            read = [outputs[name]["index"] for name in ("y", "lstm_h_out", "lstm_c_out")]

            def call(feed=feed, read=read, graph=graph, wrapper=wrapper) -> None:
                for index, value in feed:
                    wrapper.SetTensor(index, value, graph)
                wrapper.Invoke(graph)
                for index in read:
                    wrapper.GetTensor(index, graph)

            calls[streams] = call
        times = interleaved_medians({str(n): c for n, c in calls.items()}, repeats)
        one = times["1"]
        for streams in STREAMS:
            per_stream = times[str(streams)] / streams
            rows.append({"T": frames, "B": streams, "call_us": round(times[str(streams)], 2),
                         "us_per_stream": round(per_stream, 2), "ratio_to_B1": round(per_stream / one, 3)})
    return rows


def stream_batch(precision: str, repeats: int) -> list[dict[str, object]]:
    from lstm_edge.runtime import StreamingModel

    model = StreamingModel.load(KWS_DIR, backend="litert", precision=precision, threads=1)
    rows = []
    for frames in FRAMES:
        x = np.random.default_rng(frames).standard_normal((16, frames, 40)).astype(np.float32)
        streams = [model.create_stream() for _ in range(16)]
        batch = model.create_batch(16)

        def separate(streams=streams, x=x) -> None:
            for stream, chunk in zip(streams, x):
                stream.push(chunk)

        times = interleaved_medians({"separate": separate, "batch": lambda b=batch, x=x: b.push(x)}, repeats)
        rows.append({"precision": precision, "T": frames, "n": 16, "batch_engine": batch.engine.name,
                     "separate_us_per_stream": round(times["separate"] / 16, 2),
                     "batch_us_per_stream": round(times["batch"] / 16, 2),
                     "ratio": round(times["batch"] / times["separate"], 3)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run, not for the README)")
    parser.add_argument("--cpu", type=int, default=0, help="the core to pin the process to (default 0)")
    args = parser.parse_args()
    os.sched_setaffinity(0, {args.cpu})
    repeats = 100 if args.quick else 1000
    sizes, bare, pushes = [], {}, []
    with tempfile.TemporaryDirectory() as work:
        print("1. file size, export time, resident memory after load + one call, by batch sizes:")
        for batch_sizes in SIZE_SETS:
            row = export_variant(batch_sizes, Path(work) / "b".join(map(str, ("", *batch_sizes))))
            print(f"  {str(tuple(batch_sizes)):13s} export {row['export_seconds']:6.1f} s   float "
                  f"{row['float_bytes'] / 1024:7.1f} KB (+{row['float_resident_kb'] / 1024:5.1f} MB resident)   "
                  f"int8 {row['int8_bytes'] / 1024:6.1f} KB (+{row['int8_resident_kb'] / 1024:5.1f} MB resident)",
                  flush=True)
            if batch_sizes:
                print(f"  {'':13s} companion{'':10s} float {row['float_batch_bytes'] / 1024:7.1f} KB "
                      f"(+{row['float_batch_resident_kb'] / 1024:5.1f} MB resident, 16 streams)   "
                      f"int8 {row['int8_batch_bytes'] / 1024:6.1f} KB "
                      f"(+{row['int8_batch_resident_kb'] / 1024:5.1f} MB resident, 16 streams)", flush=True)
            sizes.append(row)
        largest = Path(work) / "b".join(map(str, ("", *SIZE_SETS[-1])))
        print("2. one call of the B-stream signature, us per stream (ratio to B=1):")
        for precision, name in (("float", "model"), ("int8", "model.int8")):
            bare[precision] = bare_calls(largest / f"{name}.tflite", largest / f"{name}.batch.tflite", repeats)
            for row in bare[precision]:
                print(f"  {precision:5s} T={row['T']:<2d} B={row['B']:<3d} {row['us_per_stream']:8.2f}  "
                      f"({row['ratio_to_B1']:.2f}x)", flush=True)
    print("3. StreamBatch n=16 vs 16 separate Streams (shipped files), us per stream:")
    for precision in ("float", "int8"):
        for row in stream_batch(precision, max(repeats // 10, 20)):
            print(f"  {precision:5s} T={row['T']:<2d} separate {row['separate_us_per_stream']:8.2f}  batch "
                  f"{row['batch_us_per_stream']:8.2f}  ratio {row['ratio']:.2f}  ({row['batch_engine']})", flush=True)
            pushes.append(row)
    print("4. resident memory through the runtime (shipped files; load + one push of 10 frames, fresh process):")
    runtime_memory = []
    for precision in ("float", "int8"):
        row = {"precision": precision, "one_stream_kb": runtime_resident_kb(precision, 1),
               "batch_16_kb": runtime_resident_kb(precision, 16)}
        runtime_memory.append(row)
        print(f"  {precision:5s} one Stream +{row['one_stream_kb'] / 1024:5.1f} MB   StreamBatch of 16 "
              f"+{row['batch_16_kb'] / 1024:5.1f} MB", flush=True)
    if not args.quick:
        path = save("litert_batch", {"cpu": args.cpu, "sizes": sizes, "bare_calls": bare, "stream_batch": pushes,
                                     "runtime_memory": runtime_memory})
        print(f"saved {path}")


if __name__ == "__main__":
    main()
