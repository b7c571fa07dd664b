"""Keyword-spotting firmware for Cortex-M4 / M33 / M55 (``build-c --target cortex-m*``), run under qemu-system-arm.

Each target is built once with the real arm-none-eabi toolchain and run on its MPS2/MPS3 board with semihosting:
the demo recording gives ``lstm-edge listen --json``'s detections, the reference input gives the native library's
portable int8 outputs bit for bit (and meets the manifest's int8 gate against torch), the footprint stays inside
64 KB of RAM with the weights in flash, and the hot path calls neither the heap nor libm.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from lstm_edge.devices.c_build import BuildError, build_c
from lstm_edge.devices.mcu_build import MCU_TARGETS, McuBuildError, qemu_command, read_weight_file
from lstm_edge.runtime import StreamingModel
from lstm_edge.runtime.frontend import LogMelConfig, LogMelFrontend
from lstm_edge.runtime.manifest import Manifest

ROOT = Path(__file__).resolve().parent.parent
KWS_DIR = ROOT / "models" / "kws" / "export"
SMALL_KWS_DIR = ROOT / "models" / "kws_small" / "export"
DEMO_WAV = ROOT / "models" / "kws" / "demo.wav"
KERNELS = {"cortex-m4": "dsp", "cortex-m33": "dsp", "cortex-m55": "helium"}
SCORE_TOL = 1e-3  # the firmware's frontend is float32, the desktop one float64: scores move in the 4th decimal
# what a frame goes through; from there only the library's own code and the C library's copies may be reached
ENTRY_POINTS = ("lem_mcu_stream_push", "lem_mcu_frontend_push", "lem_mcu_detector_push")
COPIES = {"memcpy", "memset", "memmove", "__aeabi_memcpy", "__aeabi_memset", "__aeabi_memclr", "__aeabi_memmove"}


@pytest.fixture(scope="module")
def firmware(tmp_path_factory):
    """target -> build folder (build-c for each Cortex-M target, the shipped keyword spotter compiled in)."""
    folders = {}
    for target in MCU_TARGETS:
        folders[target] = tmp_path_factory.mktemp(target)
        build_c(target, folders[target], KWS_DIR)
    return folders


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    with wave.open(str(DEMO_WAV), "rb") as handle:
        pcm = handle.readframes(handle.getnframes())
    path = tmp_path_factory.mktemp("demo") / "demo.s16le"
    path.write_bytes(pcm)
    return path


@pytest.fixture(scope="module")
def listen_json() -> list[dict]:
    """What `lstm-edge listen --json` prints on the demo with the same int8 weights (C library, native backend)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "lstm_edge", "listen", str(KWS_DIR), str(DEMO_WAV), "--json",
                          "--backend", "native", "--precision", "int8"], capture_output=True, text=True, check=True,
                         env=env, timeout=300)
    return [json.loads(line) for line in out.stdout.splitlines()]


@pytest.mark.parametrize("target", list(MCU_TARGETS))
def test_run_qemu_gives_the_detections_of_lstm_edge_listen(firmware, demo, listen_json, target):
    out = subprocess.run([str(firmware[target] / "run-qemu.sh"), str(demo)], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    got = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(listen_json) >= 3 and [d["label"] for d in got] == [d["label"] for d in listen_json]
    for mine, theirs in zip(got, listen_json):
        assert list(mine) == ["label", "start", "end", "score"]
        assert mine["start"] == theirs["start"] and mine["end"] == theirs["end"]
        assert abs(mine["score"] - theirs["score"]) <= SCORE_TOL


@pytest.mark.parametrize("target", list(MCU_TARGETS))
def test_model_outputs_are_the_portable_kernels_bit_for_bit_and_meet_the_gate(firmware, tmp_path, monkeypatch,
                                                                               target):
    x = np.load(KWS_DIR / "reference" / "input.npy")
    reference = np.load(KWS_DIR / "reference" / "output.npy")
    frames, outputs = tmp_path / "in.f32", tmp_path / "out.f32"
    frames.write_bytes(x.astype("<f4").tobytes())
    subprocess.run(qemu_command(MCU_TARGETS[target], firmware[target] / "firmware.elf", "run", str(frames),
                                str(outputs)), check=True, capture_output=True, timeout=300)
    got = np.frombuffer(outputs.read_bytes(), "<f4").reshape(len(x), -1)
    monkeypatch.setenv("LEM_KERNEL", "portable")
    stream = StreamingModel.load(KWS_DIR, backend="native", precision="int8").create_stream()
    portable = np.concatenate([stream.push(x[t:t + 1]) for t in range(len(x))]).reshape(len(x), -1)
    assert got.tobytes() == portable.astype("<f4").tobytes()
    gate = Manifest.load(KWS_DIR).tolerances["int8_argmax_agreement"]
    assert float((got.argmax(-1) == reference.argmax(-1)).mean()) >= gate


HOST_PROGRAM = r"""
#include <stdio.h>
#include "lstm_edge_mcu.h"
#include "model_mcu.h"
static void *arena[(LEM_MCU_ARENA_BYTES + sizeof(void *) - 1) / sizeof(void *)];
int main(void) {
    lem_mcu_stream stream;
    float x[LEM_MCU_MODEL_INPUTS], y[LEM_MCU_MODEL_OUTPUTS];
    if (lem_mcu_stream_init(&stream, &lem_mcu_model_data, arena, sizeof arena) != LEM_MCU_OK) return 1;
    if (lem_mcu_stream_init(&stream, &lem_mcu_model_data, arena, LEM_MCU_ARENA_BYTES - 1) != LEM_MCU_ERR_ARENA)
        return 3;
    if (lem_mcu_stream_init(&stream, &lem_mcu_model_data, arena, sizeof arena) != LEM_MCU_OK) return 1;
    printf("%s\n", lem_mcu_kernel_name());
    while (fread(x, sizeof x, 1, stdin) == 1) {
        if (lem_mcu_stream_push(&stream, x, y) != LEM_MCU_OK) return 2;
        fwrite(y, sizeof y, 1, stderr);
    }
    return 0;
}
"""


def test_portable_build_of_the_mcu_library_on_this_machine_is_bit_exact(firmware, tmp_path, monkeypatch):
    """The portable kernels of lstm_edge_mcu.c (no DSP, no Helium), from the Cortex-M55 build's row-major weights."""
    from lstm_edge.devices.mcu_build import MCU_DIR

    source = tmp_path / "host.c"
    source.write_text(HOST_PROGRAM)
    program = tmp_path / "host"
    folder = firmware["cortex-m55"]
    subprocess.run(["cc", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", f"-I{folder}", f"-I{MCU_DIR}", "-o",
                    str(program), str(source), str(folder / "model_mcu.c"), str(MCU_DIR / "lstm_edge_mcu.c"),
                    str(MCU_DIR / "lstm_edge_mcu_audio.c"), "-lm"], check=True, capture_output=True)
    x = np.load(KWS_DIR / "reference" / "input.npy")
    run = subprocess.run([str(program)], input=x.astype("<f4").tobytes(), capture_output=True, check=True)
    assert run.stdout.decode().strip() == "portable"
    got = np.frombuffer(run.stderr, "<f4").reshape(len(x), -1)
    monkeypatch.setenv("LEM_KERNEL", "portable")
    stream = StreamingModel.load(KWS_DIR, backend="native", precision="int8").create_stream()
    portable = np.concatenate([stream.push(x[t:t + 1]) for t in range(len(x))]).reshape(len(x), -1)
    assert got.tobytes() == portable.astype("<f4").tobytes()


FEATURE_TOL = 1e-4  # the manifest's frontend contract (docs/manifest.md: features within 1e-4)


@pytest.mark.parametrize("target", list(MCU_TARGETS))
def test_float32_frontend_stays_within_the_feature_contract(firmware, demo, tmp_path, target):
    features = tmp_path / "features.f32"
    subprocess.run(qemu_command(MCU_TARGETS[target], firmware[target] / "firmware.elf", "features", str(demo),
                                str(features)), check=True, capture_output=True, timeout=300)
    got = np.frombuffer(features.read_bytes(), "<f4").reshape(-1, 40)
    pcm = np.frombuffer(demo.read_bytes(), "<i2")
    expected = LogMelFrontend(LogMelConfig.from_dict(Manifest.load(KWS_DIR).frontend)).compute(pcm)
    assert got.shape == expected.shape and got.shape[0] > 800
    assert float(np.abs(got - expected).max()) <= FEATURE_TOL


@pytest.mark.parametrize("target", list(MCU_TARGETS))
def test_footprint_fits_64_kb_of_ram_with_the_weights_in_flash(firmware, target):
    footprint = json.loads((firmware[target] / "footprint.json").read_text())
    weights = (KWS_DIR / "model.int8.lec").stat().st_size
    assert footprint["kernel"] == KERNELS[target]
    assert footprint["constant_bytes"] >= footprint["weight_bytes"] > 0.95 * weights  # const arrays: flash
    assert 0 < footprint["stack_high_water_bytes"] < footprint["stack_reserved_bytes"]
    assert footprint["ram_bytes"] == footprint["ram_static_bytes"] + footprint["stack_high_water_bytes"]
    assert footprint["ram_bytes"] <= 64 * 1024
    parts = footprint["instructions_per_frame_by_part"]
    assert set(parts) == {"frontend", "model", "detector"} and min(parts.values()) > 0
    assert footprint["instructions_per_frame"] == pytest.approx(sum(parts.values()), abs=2)


def _calls(elf: Path) -> dict[str, set[str]]:
    """function -> functions it branches to (bl, or b to another function: tail calls), from arm-none-eabi-objdump."""
    text = subprocess.run(["arm-none-eabi-objdump", "-d", str(elf)], capture_output=True, text=True,
                          check=True).stdout
    calls: dict[str, set[str]] = {}
    current = ""
    for line in text.splitlines():
        head = re.match(r"^[0-9a-f]+ <([^>]+)>:$", line)
        if head:
            current = head.group(1)
            calls[current] = set()
        branch = re.search(r"\s(?:bl|blx|b|b\.w)\s+[0-9a-f]+ <([^>+]+)>", line)
        if branch and current and branch.group(1) != current:
            calls[current].add(branch.group(1))
    return calls


def _defined_in(library: Path) -> set[str]:
    out = subprocess.run(["arm-none-eabi-nm", "--defined-only", str(library)], capture_output=True, text=True,
                         check=True).stdout
    return {line.split()[-1].split(".")[0] for line in out.splitlines()
            if len(line.split()) == 3 and line.split()[1] in "tT"}


@pytest.mark.parametrize("target", list(MCU_TARGETS))
def test_no_heap_and_no_libm_on_the_hot_path(firmware, target):
    calls = _calls(firmware[target] / "firmware.elf")
    own = _defined_in(firmware[target] / "liblstm_edge_mcu.a")
    assert not {"malloc", "_malloc_r", "calloc", "_sbrk", "free"} & set(calls)
    assert {"cos", "pow", "log10"} & set(calls)  # linked, for the tables made at init: the check below can fail
    reached, todo = set(), list(ENTRY_POINTS)
    while todo:
        name = todo.pop()
        if name in reached:
            continue
        reached.add(name)
        todo.extend(calls.get(name, ()))
    assert set(ENTRY_POINTS) <= reached
    outside = {name for name in reached - COPIES if name.split(".")[0] not in own}
    assert not outside, f"a frame reaches {sorted(outside)}"


def test_refusals_name_what_was_expected(tmp_path):
    with pytest.raises(BuildError, match="cortex-m4"):
        build_c("cortex-m7", tmp_path)
    with pytest.raises(McuBuildError, match="needs a model directory"):
        build_c("cortex-m4", tmp_path)
    with pytest.raises(McuBuildError, match="expected int8"):
        read_weight_file(KWS_DIR / "model.lec")
    broken = tmp_path / "broken.lec"
    broken.write_bytes(b"NOPE" + bytes(100))
    with pytest.raises(McuBuildError, match="LEMW"):
        read_weight_file(broken)


def test_the_small_keyword_spotter_fits_a_cortex_m4_with_256_kb_of_flash(tmp_path, demo):
    manifest = Manifest.load(SMALL_KWS_DIR)
    weights = read_weight_file(SMALL_KWS_DIR / "model.int8.lec")
    parameters = sum(t.values.size for layer in weights.layers for t in layer.tensors)
    assert parameters <= 64_000 and manifest.labels == Manifest.load(KWS_DIR).labels
    build_c("cortex-m4", tmp_path, SMALL_KWS_DIR)
    footprint = json.loads((tmp_path / "footprint.json").read_text())
    assert footprint["flash_bytes"] <= 256 * 1024 and footprint["ram_bytes"] <= 64 * 1024
    out = subprocess.run([str(tmp_path / "run-qemu.sh"), str(demo)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    for line in out.stdout.splitlines():
        assert json.loads(line)["label"] in manifest.labels


def test_a_missing_toolchain_names_the_package_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH without the cross compiler
    with pytest.raises(McuBuildError, match="apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi"):
        build_c("cortex-m4", tmp_path / "out", KWS_DIR)


def test_layers_without_a_cortex_m_version_are_refused_by_name(exported):
    _, model_dir = exported("gru")
    with pytest.raises(McuBuildError, match=r"layer \d+ \(GRU\)"):
        read_weight_file(model_dir / "model.int8.lec")
