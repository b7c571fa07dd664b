"""Footprint and cost of the keyword spotter as Cortex-M firmware (build-c --target cortex-m4|m33|m55), under qemu.

For each core: build the firmware with the shipped keyword spotter (int8 weights as const arrays), run the shipped
demo recording (8.8 s) through ``run-qemu.sh`` on its MPS2/MPS3 board with ``-icount shift=0`` (one instruction
per virtual nanosecond), and report code and constant bytes (flash), RAM (static: state, buffers, frontend and
detector tables; stack high-water mark from a painted stack), and instructions per 10 ms frame for the frontend,
the model and the detector, counted by the firmware with SysTick (calibrated against a loop of known length).
The core load at 150 MHz assumes one instruction per cycle (an estimate: loads, divisions and multiply-
accumulates take more on real cores; flash wait states too). TensorFlow Lite Micro's micro_speech example is
listed with its published figures (about 22 KB of code on a Cortex-M3 and about 10 KB of RAM, for a 20 KB
yes/no model), not measured here. The small keyword spotter (models/kws_small, 60k parameters) is measured on the
Cortex-M4 too. Run: python benchmarks/bench_cortex_m.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import wave
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lstm_edge.devices.c_build import build_c  # noqa: E402
from lstm_edge.devices.mcu_build import MCU_TARGETS, section_sizes  # noqa: E402

from _common import save  # noqa: E402

KWS_DIR = ROOT / "models" / "kws" / "export"
SMALL_KWS_DIR = ROOT / "models" / "kws_small" / "export"  # 60k parameters, for 256 KB-flash parts
DEMO = ROOT / "models" / "kws" / "demo.wav"
CLOCK_HZ = 150e6
FRAMES_PER_S = 100
TFLM_MICRO_SPEECH = {"code_bytes": 22 * 1024, "ram_bytes": 10 * 1024, "model_bytes": 20 * 1024,
                     "source": "TensorFlow Lite Micro micro_speech README (published figures, Cortex-M3; not "
                               "measured here)"}


def library_code_bytes(library: Path) -> int:
    out = subprocess.run(["arm-none-eabi-size", "--totals", str(library)], capture_output=True, text=True,
                         check=True).stdout
    return int([line for line in out.splitlines() if "(TOTALS)" in line][0].split()[0])


def ram_by_object(elf: Path) -> dict[str, int]:
    """Bytes of the firmware's RAM objects (.data and .bss symbols, arm-none-eabi-nm), largest first."""
    out = subprocess.run(["arm-none-eabi-nm", "-S", "--size-sort", str(elf)], capture_output=True, text=True,
                         check=True).stdout
    sizes = {}
    for line in out.splitlines():
        cols = line.split()
        if len(cols) == 4 and cols[2] in "bBdD":
            sizes[cols[3]] = int(cols[1], 16)
    return dict(sorted(sizes.items(), key=lambda item: -item[1]))


def measure(target: str, work: Path, pcm_path: Path, model_dir: Path = KWS_DIR) -> dict:
    out = work / f"{target}-{model_dir.parent.name}"
    build_c(target, out, model_dir)
    stats = work / f"{out.name}-stats.json"
    run = subprocess.run([str(out / "run-qemu.sh"), str(pcm_path), str(stats)], capture_output=True, text=True,
                         check=True, timeout=600)
    raw = json.loads(stats.read_text())
    per_tick = raw["calibration_instructions"] / raw["calibration_ticks"]
    frames = raw["frames"]
    parts = {part: round(raw[f"{part}_ticks"] * per_tick / frames) for part in ("frontend", "model", "detector")}
    total = sum(parts.values())
    footprint = json.loads((out / "footprint.json").read_text())
    sizes = section_sizes(out / "firmware.elf")
    ram = footprint["ram_static_bytes"] + raw["stack_high_water_bytes"]
    return {"board": MCU_TARGETS[target].board, "kernel": raw["kernel"], "frames": frames,
            "detections": [json.loads(line) for line in run.stdout.splitlines()],
            "firmware_code_bytes": sizes.get(".text", 0), "library_code_bytes": library_code_bytes(
                out / "liblstm_edge_mcu.a"), "constant_bytes": sizes.get(".rodata", 0),
            "weight_bytes": footprint["weight_bytes"], "flash_bytes": footprint["flash_bytes"],
            "state_bytes": footprint["state_bytes"], "model_arena_bytes": footprint["model_arena_bytes"],
            "ram_static_bytes": footprint["ram_static_bytes"], "stack_high_water_bytes": raw["stack_high_water_bytes"],
            "ram_bytes": ram, "ram_by_object": ram_by_object(out / "firmware.elf"),
            "instructions_per_frame_by_part": parts, "instructions_per_frame": total,
            "core_load_at_150mhz": round(total * FRAMES_PER_S / CLOCK_HZ, 4),
            "real_time_margin_at_150mhz": round(CLOCK_HZ / (total * FRAMES_PER_S), 2)}


def main() -> None:
    with wave.open(str(DEMO), "rb") as handle:
        pcm = handle.readframes(handle.getnframes())
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        pcm_path = work / "demo.s16le"
        pcm_path.write_bytes(pcm)
        for target in MCU_TARGETS:
            results[target] = measure(target, work, pcm_path)
            r = results[target]
            print(f"{target:10s} {r['board']:11s} {r['kernel']:8s} flash {r['flash_bytes'] / 1024:6.1f} KB (code "
                  f"{r['firmware_code_bytes'] / 1024:.1f}, library {r['library_code_bytes'] / 1024:.1f}, constants "
                  f"{r['constant_bytes'] / 1024:.1f}), RAM {r['ram_bytes'] / 1024:.1f} KB (static "
                  f"{r['ram_static_bytes'] / 1024:.1f}, stack {r['stack_high_water_bytes']} B), instructions/frame "
                  f"{r['instructions_per_frame']} {r['instructions_per_frame_by_part']}, "
                  f"{100 * r['core_load_at_150mhz']:.1f}% of 150 MHz ({r['real_time_margin_at_150mhz']}x real time)")
        small = measure("cortex-m4", work, pcm_path, SMALL_KWS_DIR)
        print(f"small model on cortex-m4: flash {small['flash_bytes'] / 1024:.1f} KB (constants "
              f"{small['constant_bytes'] / 1024:.1f}), RAM {small['ram_bytes'] / 1024:.1f} KB, instructions/frame "
              f"{small['instructions_per_frame']} {small['instructions_per_frame_by_part']}, "
              f"{100 * small['core_load_at_150mhz']:.1f}% of 150 MHz")
    print("TFLM micro_speech (published): code ~22 KB, RAM ~10 KB, model ~20 KB")
    path = save("cortex_m", {"model": "models/kws/export (model.int8.lec)", "audio": "models/kws/demo.wav",
                             "emulator": "qemu-system-arm -icount shift=0", "clock_hz": CLOCK_HZ,
                             "results": results, "small_model_cortex_m4": {"model": "models/kws_small/export", **small},
                             "peer_published": TFLM_MICRO_SPEECH})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
