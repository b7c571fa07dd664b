"""C99 log-mel frontend and detector (runtime/native, through ctypes) vs numpy / runtime.kws, side by side, one core.

Both frontends stream the shipped demo recording (8.7 s, 16 kHz int16) in chunks of 10 ms and 100 ms; the C library
is built with ``gcc -std=c99 -O2 -shared``. Per chunk length: median time of one pass over the whole recording, in
alternating rounds, as microseconds per 10 ms frame, the real-time factor, and numpy / C. The features of both are
compared first (max abs difference). The detectors consume the shipped model's logits on that recording (ONNX float)
in chunks of 10 frames: ``KeywordStream``'s softmax + detection step against ``le_detector_push`` (same detections
checked first). Run: python benchmarks/bench_c_frontend.py [--rounds N]
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


class DetectorConfig(ctypes.Structure):
    _fields_ = [("n_labels", ctypes.c_int), ("labels", ctypes.POINTER(ctypes.c_char_p)),
                ("scores_are_logits", ctypes.c_int), ("threshold", ctypes.c_double),
                ("smoothing_frames", ctypes.c_int), ("refractory_s", ctypes.c_double),
                ("max_event_s", ctypes.c_double), ("onset_level", ctypes.c_double), ("lookback_s", ctypes.c_double),
                ("sample_rate", ctypes.c_int), ("win_length", ctypes.c_int), ("hop_length", ctypes.c_int)]


class Detection(ctypes.Structure):
    _fields_ = [("label_index", ctypes.c_int), ("label", ctypes.c_char_p), ("start_s", ctypes.c_double),
                ("end_s", ctypes.c_double), ("score", ctypes.c_double)]


def median_us(calls: dict, rounds: int) -> dict[str, float]:
    """Median microseconds of each callable, timed in alternating rounds."""
    timings: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            start_ns = time.perf_counter_ns()
            call()
            timings[name].append((time.perf_counter_ns() - start_ns) / 1e3)
    return {name: statistics.median(values) for name, values in timings.items()}


def bench_detector(lib: ctypes.CDLL, pcm: np.ndarray, rounds: int) -> dict:
    """KeywordStream's per-push detection step (softmax + smoothing + rules) vs le_detector_push on the same logits."""
    from lstm_edge.recipes.kws.model import shipped_model_dir
    from lstm_edge.runtime import StreamingModel
    from lstm_edge.runtime.kws import KeywordSpotter, softmax

    spotter = KeywordSpotter(StreamingModel.load(shipped_model_dir() / "export", backend="onnx", precision="float"))
    logits = spotter.model.create_stream().push(spotter.frontend.compute(pcm)).astype(np.float32)
    labels = (ctypes.c_char_p * len(spotter.labels))(*[label.encode() for label in spotter.labels])
    settings = spotter.config
    frontend = spotter.frontend.config
    config = DetectorConfig(len(spotter.labels), labels, 1, settings.threshold, settings.smoothing_frames,
                            settings.refractory_s, settings.max_event_s, settings.onset_level, settings.lookback_s,
                            frontend.sample_rate, frontend.win_length, frontend.hop_length)
    lib.le_detector_create.restype = ctypes.c_void_p
    lib.le_detector_create.argtypes = [ctypes.POINTER(DetectorConfig), ctypes.POINTER(ctypes.c_int)]
    lib.le_detector_push.restype = ctypes.c_long
    lib.le_detector_push.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(Detection),
                                     ctypes.c_size_t]
    lib.le_detector_reset.argtypes = [ctypes.c_void_p]
    lib.le_detector_free.argtypes = [ctypes.c_void_p]
    status = ctypes.c_int()
    handle = lib.le_detector_create(ctypes.byref(config), ctypes.byref(status))
    if not handle:
        raise RuntimeError(f"le_detector_create failed with status {status.value}")
    found = (Detection * 8)()
    starts = range(0, logits.shape[0], 10)

    def run_c() -> list[str]:
        lib.le_detector_reset(handle)
        names = []
        for start in starts:
            count = lib.le_detector_push(handle, logits[start:start + 10].ctypes.data,
                                         min(10, logits.shape[0] - start), found, 8)
            names += [found[k].label.decode() for k in range(count)]
        return names

    def run_python() -> list[str]:
        stream = spotter.create_stream()
        names = []
        for start in starts:
            names += [d.label for d in stream._consume(softmax(logits[start:start + 10].astype(np.float64)))]
        return names

    try:
        if run_c() != run_python():
            raise RuntimeError("the C and Python detectors disagree")
        medians = median_us({"c": run_c, "python": run_python}, rounds)
    finally:
        lib.le_detector_free(handle)
    return {"frames": int(logits.shape[0]), "detections": len(run_python()),
            "us_per_frame": {name: round(value / logits.shape[0], 3) for name, value in medians.items()},
            "python_over_c": round(medians["python"] / medians["c"], 1)}


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
    parser.add_argument("--rounds", type=int, default=101)
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

                def run_c(chunk: int = chunk, starts: range = starts) -> int:
                    lib.le_frontend_reset(handle)
                    written = 0
                    for start in starts:
                        length = min(chunk, pcm.shape[0] - start)
                        written += lib.le_frontend_push_int16(handle, pcm_address + 2 * start, length,
                                                              out_address + written * row_bytes, n_frames - written)
                    return written

                def run_numpy(chunk: int = chunk, starts: range = starts) -> np.ndarray:
                    stream = frontend.create_stream()
                    return np.concatenate([stream.push(pcm[start:start + chunk]) for start in starts])

                if run_c() != n_frames:
                    raise RuntimeError("the C frontend wrote an unexpected number of frames")
                max_diff = float(np.abs(run_numpy() - out).max())
                medians = median_us({"c": run_c, "numpy": run_numpy}, args.rounds)
                results[f"chunk_{chunk}"] = {
                    "chunk_samples": chunk,
                    "max_abs_diff": max_diff,
                    "us_per_frame": {name: round(value / n_frames, 3) for name, value in medians.items()},
                    "rtf": {name: round(value / 1e6 / duration_s, 6) for name, value in medians.items()},
                    "numpy_over_c": round(medians["numpy"] / medians["c"], 2),
                }
        finally:
            lib.le_frontend_free(handle)
        detector = bench_detector(lib, pcm, args.rounds)
    for key, row in results.items():
        print(f"{key}: C {row['us_per_frame']['c']} us/frame (RTF {row['rtf']['c']}), numpy "
              f"{row['us_per_frame']['numpy']} us/frame (RTF {row['rtf']['numpy']}), numpy/C "
              f"{row['numpy_over_c']}x, max abs diff {row['max_abs_diff']:.2e}")
    print(f"detector: C {detector['us_per_frame']['c']} us/frame, Python {detector['us_per_frame']['python']} "
          f"us/frame, Python/C {detector['python_over_c']}x ({detector['detections']} detections, identical)")
    print("wrote", save("c_frontend", {"audio_s": round(duration_s, 3), "frames": n_frames, "rounds": args.rounds,
                                       "results": results, "detector": detector}))


if __name__ == "__main__":
    main()
