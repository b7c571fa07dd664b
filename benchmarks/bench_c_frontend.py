"""C99 log-mel frontend (runtime/native, through ctypes) vs the numpy frontend, side by side on one core.

Both stream the shipped demo recording (8.7 s, 16 kHz int16) in chunks of 10 ms and 100 ms; the C library is built
with ``gcc -std=c99 -O2 -shared``. Per chunk length: median time of one pass over the whole recording, in
alternating rounds, as microseconds per 10 ms frame, the real-time factor, and numpy / C. The features of both are
compared first (max abs difference). Run: python benchmarks/bench_c_frontend.py [--rounds N]
"""

from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import subprocess
import tempfile
import time
import wave
from pathlib import Path

import numpy as np

from _common import save

ROOT = Path(__file__).resolve().parent.parent
NATIVE = ROOT / "runtime" / "native"


class FrontendConfig(ctypes.Structure):
    _fields_ = [("sample_rate", ctypes.c_int), ("n_fft", ctypes.c_int), ("win_length", ctypes.c_int),
                ("hop_length", ctypes.c_int), ("n_mels", ctypes.c_int), ("f_min", ctypes.c_double),
                ("f_max", ctypes.c_double), ("log_floor", ctypes.c_double)]


def build_library(folder: Path) -> ctypes.CDLL:
    path = folder / "liblstm_edge_audio.so"
    subprocess.run(["gcc", "-std=c99", "-O2", "-fPIC", "-shared", "-o", str(path), str(NATIVE / "lstm_edge_audio.c"),
                    "-lm"], check=True)
    lib = ctypes.CDLL(str(path))
    lib.le_frontend_create.restype = ctypes.c_void_p
    lib.le_frontend_create.argtypes = [ctypes.POINTER(FrontendConfig), ctypes.POINTER(ctypes.c_int)]
    lib.le_frontend_push_int16.restype = ctypes.c_long
    lib.le_frontend_push_int16.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p,
                                           ctypes.c_size_t]
    lib.le_frontend_reset.argtypes = [ctypes.c_void_p]
    lib.le_frontend_free.argtypes = [ctypes.c_void_p]
    return lib


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from lstm_edge.runtime.frontend import LogMelConfig, LogMelFrontend

    with wave.open(str(ROOT / "models" / "kws" / "demo.wav"), "rb") as handle:
        pcm = np.frombuffer(handle.readframes(handle.getnframes()), dtype="<i2").astype(np.int16)
    config = LogMelConfig()
    frontend = LogMelFrontend(config)
    duration_s = pcm.shape[0] / config.sample_rate
    n_frames = config.n_frames(pcm.shape[0])
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        lib = build_library(Path(tmp))
        c_config = FrontendConfig(config.sample_rate, config.n_fft, config.win_length, config.hop_length,
                                  config.n_mels, config.f_min, config.f_max, config.log_floor)
        status = ctypes.c_int()
        handle = lib.le_frontend_create(ctypes.byref(c_config), ctypes.byref(status))
        if not handle:
            raise RuntimeError(f"le_frontend_create failed with status {status.value}")
        out = np.zeros((n_frames, config.n_mels), dtype=np.float32)
        pcm_address, out_address = pcm.ctypes.data, out.ctypes.data
        row_bytes = config.n_mels * 4
        try:
            for chunk in (160, 1600):
                starts = range(0, pcm.shape[0], chunk)

                def run_c() -> int:
                    lib.le_frontend_reset(handle)
                    written = 0
                    for start in starts:
                        length = min(chunk, pcm.shape[0] - start)
                        written += lib.le_frontend_push_int16(handle, pcm_address + 2 * start, length,
                                                              out_address + written * row_bytes, n_frames - written)
                    return written

                def run_numpy() -> np.ndarray:
                    stream = frontend.create_stream()
                    return np.concatenate([stream.push(pcm[start:start + chunk]) for start in starts])

                if run_c() != n_frames:
                    raise RuntimeError("the C frontend wrote an unexpected number of frames")
                max_diff = float(np.abs(run_numpy() - out).max())
                timings: dict[str, list[float]] = {"c": [], "numpy": []}
                for _ in range(args.rounds):
                    for name, call in (("c", run_c), ("numpy", run_numpy)):
                        start_ns = time.perf_counter_ns()
                        call()
                        timings[name].append((time.perf_counter_ns() - start_ns) / 1e3)
                medians = {name: statistics.median(values) for name, values in timings.items()}
                results[f"chunk_{chunk}"] = {
                    "chunk_samples": chunk,
                    "max_abs_diff": max_diff,
                    "us_per_frame": {name: round(value / n_frames, 3) for name, value in medians.items()},
                    "rtf": {name: round(value / 1e6 / duration_s, 6) for name, value in medians.items()},
                    "numpy_over_c": round(medians["numpy"] / medians["c"], 2),
                }
        finally:
            lib.le_frontend_free(handle)
    for key, row in results.items():
        print(f"{key}: C {row['us_per_frame']['c']} us/frame (RTF {row['rtf']['c']}), numpy "
              f"{row['us_per_frame']['numpy']} us/frame (RTF {row['rtf']['numpy']}), numpy/C "
              f"{row['numpy_over_c']}x, max abs diff {row['max_abs_diff']:.2e}")
    print("wrote", save("c_frontend", {"audio_s": round(duration_s, 3), "frames": n_frames, "rounds": args.rounds,
                                       "results": results}))


if __name__ == "__main__":
    main()
