"""``lstm-edge build-c MODEL_DIR --target cortex-m4|cortex-m33|cortex-m55``: bare-metal keyword spotter firmware.

Built with Debian's ``gcc-arm-none-eabi`` (+ ``libnewlib-arm-none-eabi``) from ``runtime/native/mcu``: the int8
weights of ``model.int8.lec`` become ``const`` arrays (flash), every buffer is static or inside one arena sized at
build time (no heap), and the firmware runs on qemu-system-arm's MPS2/MPS3 boards, reading PCM through
semihosting. The output folder holds::

    liblstm_edge_mcu.a       model runner + frontend + detector for this core (kernels chosen at compile time)
    lstm_edge_mcu.h          its API
    model_mcu.c, model_mcu.h the model as const arrays, its frontend and detector settings, LEM_MCU_ARENA_BYTES
    firmware.elf             the keyword spotter for the target's qemu board
    run-qemu.sh              ./run-qemu.sh AUDIO.s16le -> the JSON lines of ``lstm-edge listen --json``
    footprint.json           flash, RAM (state + buffers + measured stack), instructions per 10 ms frame
    build.json               target, compiler, flags, files
"""

from __future__ import annotations

import json
import shutil
import struct
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lstm_edge.devices.c_build import BuildError, run_tool, static_library
from lstm_edge.runtime.errors import expected_got
from lstm_edge.runtime.manifest import Manifest, check_file

MCU_DIR = Path(__file__).resolve().parent.parent / "runtime" / "native" / "mcu"
LIBRARY_SOURCES = ("lstm_edge_mcu.c", "lstm_edge_mcu_audio.c")
FIRMWARE_SOURCES = ("startup.c", "firmware.c")
PAD = 16  # LEM_MCU_PAD
STACK_BYTES = 8192
# -O2 without auto-vectorisation: the float code stays scalar IEEE arithmetic on every core (bitwise the portable
# kernels' results); ISO C mode keeps GCC from contracting a * b + c into fused multiply-adds. -fno-thread-jumps:
# GCC 12 otherwise threads the exp clamps of the LSTM gates into constant paths and moves the common path out of
# line, reloading its constants each time (+7k instructions per frame on the keyword spotter).
CFLAGS = ("-std=c99", "-O2", "-fno-tree-vectorize", "-fno-thread-jumps", "-ffunction-sections", "-fdata-sections",
          "-Wall", "-Wextra", "-Wdouble-promotion", "-Werror=implicit-function-declaration", "-mthumb",
          "-mfloat-abi=hard")
APT = "gcc-arm-none-eabi libnewlib-arm-none-eabi"
LAYER_NAMES = {1: "linear", 2: "affine", 3: "residual add", 4: "activation", 5: "LSTM", 6: "GRU", 7: "embedding",
               8: "layer norm", 9: "projected LSTM", 10: "causal convolution"}
MCU_LAYERS = (1, 2, 3, 4, 5)
MCU_ACTIVATIONS = {1: "ReLU", 2: "tanh", 3: "sigmoid"}


class McuBuildError(BuildError):
    """The firmware could not be built or measured (missing toolchain or qemu, a model the MCU build can't run)."""


@dataclass(frozen=True)
class McuTarget:
    name: str
    cpu: str
    board: str  # qemu-system-arm -M
    flash: tuple[int, int]  # origin, length
    ram: tuple[int, int]
    layout: int  # weight layout its kernels read (lem_mcu_matrix.layout): 4 for the DSP kernels, else 0


MCU_TARGETS = {
    "cortex-m4": McuTarget("cortex-m4", "cortex-m4", "mps2-an386", (0x00000000, 0x400000), (0x20000000, 0x400000),
                           4),
    "cortex-m33": McuTarget("cortex-m33", "cortex-m33", "mps2-an505", (0x10000000, 0x400000), (0x38000000, 0x200000),
                            4),
    "cortex-m55": McuTarget("cortex-m55", "cortex-m55", "mps3-an547", (0x00000000, 0x80000), (0x20000000, 0x80000),
                            0),
}


# ------------------------------------------------------------------------------------------- the weight file
@dataclass
class Tensor:
    values: np.ndarray  # float32 or int8, [rows, cols]
    scales: np.ndarray | None  # int8: float32 per row


@dataclass
class Layer:
    type: int
    in0: int
    in1: int
    out: int
    params: list[int]
    tensors: list[Tensor]


@dataclass
class WeightFile:
    int8: bool
    input_width: int
    output_width: int
    widths: list[int]
    output_buffer: int
    states: list[tuple[str, int]]
    initial_state: np.ndarray | None
    layers: list[Layer]
    metadata: dict[str, str]


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def u32(self) -> int:
        if self.pos + 4 > len(self.data):
            raise McuBuildError("C weight file: truncated (expected more records)")
        value = struct.unpack_from("<I", self.data, self.pos)[0]
        self.pos += 4
        return int(value)

    def raw(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise McuBuildError("C weight file: truncated (expected more records)")
        out = self.data[self.pos:self.pos + n]
        self.pos += (n + 3) // 4 * 4
        return out

    def tensor(self) -> Tensor:
        dtype, rows, cols = self.u32(), self.u32(), self.u32()
        if dtype == 0:
            return Tensor(np.frombuffer(self.raw(rows * cols * 4), "<f4").reshape(rows, cols).astype(np.float32), None)
        values = np.frombuffer(self.raw(rows * cols), np.int8).reshape(rows, cols)
        return Tensor(values, np.frombuffer(self.raw(rows * 4), "<f4").astype(np.float32))


def read_weight_file(path: Path) -> WeightFile:
    """The layers of a ``.lec`` file (docs/manifest.md, "C weight files"); refuses what the MCU runner lacks."""
    data = path.read_bytes()
    if len(data) < 64 or data[:4] != b"LEMW":
        raise McuBuildError(expected_got(f"{path.name}", 'a lstm-edge C weight file (magic "LEMW")', repr(data[:4])))
    (version, precision, input_kind, input_width, output_width, n_buffers, n_states, n_layers, output_buffer,
     payload, crc, meta_bytes) = struct.unpack_from("<12I", data, 4)
    if version == 3:
        raise McuBuildError(f"{path.name}: C weight file version 3 (layers of step models and front ends, or layers "
                            "kept float by mixed precision): the Cortex-M build reads versions 1 and 2 only (LSTM, "
                            "GRU, linear, affine, residual and ReLU/tanh/sigmoid layers, all int8)")
    if version not in (1, 2) or zlib.crc32(data[64:64 + payload]) != crc or len(data) != 64 + payload:
        raise McuBuildError(f"{path}: not a readable C weight file (version {version}, CRC or length mismatch)")
    if precision != 1:
        raise McuBuildError(expected_got(f"{path.name} precision", "int8 (model.int8.lec)", "float32"))
    if input_kind != 0:
        raise McuBuildError(expected_got("model input", "float features (a keyword spotter)", "token ids"))
    r = _Reader(data[64:64 + payload])
    widths = [r.u32() for _ in range(n_buffers)]
    states = []
    for _ in range(n_states):
        name = r.raw(r.u32()).decode()
        states.append((name, r.u32()))
    state_size = sum(n for _, n in states)
    initial: list[np.ndarray] = []
    for _, n in states:
        initial.append(np.frombuffer(r.raw(4 * n), "<f4") if r.u32() == 1 else np.zeros(n, np.float32))
    layers = []
    for index in range(n_layers):
        kind, in0, in1, out = r.u32(), r.u32(), r.u32(), r.u32()
        params = [r.u32() for _ in range(6)]
        if kind not in MCU_LAYERS:
            raise McuBuildError(f"layer {index} ({LAYER_NAMES.get(kind, f'type {kind}')}): the Cortex-M build runs "
                                f"{', '.join(LAYER_NAMES[k] for k in MCU_LAYERS)} layers only")
        if kind == 4 and params[0] not in MCU_ACTIVATIONS:
            raise McuBuildError(expected_got(f"layer {index} activation", "ReLU, tanh or sigmoid",
                                             {4: "softmax", 5: "log-softmax"}.get(params[0], str(params[0]))))
        count = {1: 2, 2: 2, 3: 0, 4: 0, 5: 3}[kind]
        layers.append(Layer(kind, in0, in1, out, params, [r.tensor() for _ in range(count)]))
    metadata = dict(line.split("=", 1) for line in r.raw(meta_bytes).decode().rstrip("\0").splitlines()
                    if "=" in line)
    has_init = any(np.any(v) for v in initial)
    return WeightFile(True, input_width, output_width, widths, output_buffer, states,
                      np.concatenate(initial).astype(np.float32) if has_init and state_size else None, layers,
                      metadata)


# ------------------------------------------------------------------------------------------- C source
def _padded(n: int) -> int:
    return (n + PAD - 1) // PAD * PAD


def _floats(values: np.ndarray) -> str:
    return ", ".join(repr_float(float(v)) for v in values.ravel())


def repr_float(v: float) -> str:
    """A C float literal that reads back as exactly this float32 (9 significant digits round-trip)."""
    text = f"{np.float32(v):.9g}"
    if "inf" in text or "nan" in text:
        raise McuBuildError(f"non-finite weight {text}")
    if "." not in text and "e" not in text:
        text += ".0"
    return text + "f"


def _c_array(ctype: str, name: str, body: str, align: bool = False) -> str:
    attr = " __attribute__((aligned(16)))" if align else ""
    return f"static const {ctype} {name}[]{attr} = {{\n    {body}\n}};\n"


def _stride(cols: int, layout: int) -> int:
    """Row stride of the int8 weights: a multiple of 8 for the DSP kernels (8 columns a turn), else of 16 (Helium)."""
    return (cols + 7) // 8 * 8 if layout == 4 else _padded(cols)


def _int8_rows(values: np.ndarray, layout: int) -> str:
    rows, cols = values.shape
    padded = np.zeros((rows, _stride(cols, layout)), np.int8)
    padded[:, :cols] = values
    flat = padded.ravel()
    if layout == 4:  # blocks of four rows, four columns of each row in turn (lstm_edge_mcu.h, lem_mcu_matrix)
        whole = rows // 4 * 4
        blocks = padded[:whole].reshape(whole // 4, 4, -1, 4).transpose(0, 2, 1, 3).ravel()
        flat = np.concatenate([blocks, padded[whole:].ravel()])
    return ",\n    ".join(", ".join(str(int(b)) for b in flat[i:i + 32]) for i in range(0, flat.size, 32))


def model_source(weights: WeightFile, name: str, layout: int = 0) -> tuple[str, str, int]:
    """model_mcu.c and model_mcu.h for this weight file, and the arena bytes a stream needs."""
    meta = weights.metadata
    labels = meta.get("labels", "").split(",") if meta.get("labels") else []
    if len(labels) != weights.output_width:
        raise McuBuildError(expected_got("labels in the weight file's metadata", f"{weights.output_width} (one per "
                                         "output, a keyword spotter)", str(len(labels))))
    parts = [f"/* {name}: the model as const arrays (flash), written by lstm-edge build-c. */\n",
             '#include "model_mcu.h"\n\n']
    layer_rows = []
    max_gates, max_stride = 0, 0
    for i, layer in enumerate(weights.layers):
        mats, vecs = ["{0}", "{0}"], ["0", "0"]
        if layer.type in (1, 5):
            n_mats = 1 if layer.type == 1 else 2
            for k in range(n_mats):
                t = layer.tensors[k]
                if t.scales is None:
                    raise McuBuildError(f"layer {i}: expected int8 weights in an int8 file, got float32")
                rows, cols = t.values.shape
                parts.append(_c_array("int8_t", f"w{i}_{k}", _int8_rows(t.values, layout), align=True))
                parts.append(_c_array("float", f"s{i}_{k}", _floats(t.scales)))
                mats[k] = f"{{w{i}_{k}, s{i}_{k}, {rows}u, {cols}u, {_stride(cols, layout)}u, {layout}u}}"
                max_stride = max(max_stride, _padded(cols))
            bias = layer.tensors[n_mats]
            parts.append(_c_array("float", f"b{i}", _floats(bias.values)))
            vecs[0] = f"b{i}"
            if layer.type == 5:
                max_gates = max(max_gates, 4 * layer.params[0])
        elif layer.type == 2:
            for k in range(2):
                parts.append(_c_array("float", f"v{i}_{k}", _floats(layer.tensors[k].values)))
                vecs[k] = f"v{i}_{k}"
        p = layer.params[:3]
        layer_rows.append(f"    {{{layer.type}u, {layer.in0}u, {layer.in1}u, {layer.out}u, {{{p[0]}u, {p[1]}u, "
                          f"{p[2]}u}}, {{{mats[0]}, {mats[1]}}}, {{{vecs[0]}, {vecs[1]}}}}},")
    state_size = sum(n for _, n in weights.states)
    parts.append(_c_array("uint32_t", "widths", ", ".join(f"{w}u" for w in weights.widths)))
    parts.append("static const lem_mcu_layer layers[] = {\n" + "\n".join(layer_rows) + "\n};\n")
    initial = "0"
    if weights.initial_state is not None:
        parts.append(_c_array("float", "initial_state", _floats(weights.initial_state)))
        initial = "initial_state"
    parts.append(f"const lem_mcu_model lem_mcu_model_data = {{\"{name}\", {weights.input_width}u, "
                 f"{weights.output_width}u, {weights.output_buffer}u, {len(weights.widths)}u, {len(weights.layers)}u, "
                 f"{state_size}u, widths, layers, {initial}, {max_gates}u, {max_stride}u}};\n\n")
    label_list = ", ".join(json.dumps(label) for label in labels)
    parts.append(f"static const char *const labels[] = {{{label_list}}};\n")

    def num(key: str, default: float) -> float:
        return float(meta.get(key, default))

    parts.append("const lem_mcu_frontend_config lem_mcu_model_frontend = {"
                 f"{int(num('frontend.sample_rate', 16000))}, {int(num('frontend.n_fft', 512))}, "
                 f"{int(num('frontend.win_length', 400))}, {int(num('frontend.hop_length', 160))}, "
                 f"{int(num('frontend.n_mels', 40))}, {num('frontend.f_min', 20.0)!r}, "
                 f"{num('frontend.f_max', 7600.0)!r}, {num('frontend.log_floor', 1e-6)!r}}};\n")
    logits = 0 if meta.get("output.semantics") == "probabilities" else 1
    parts.append("const lem_mcu_detector_config lem_mcu_model_detector = {"
                 f"{len(labels)}, labels, {logits}, {repr_float(num('detector.threshold', 0.6))}, "
                 f"{int(num('detector.smoothing_frames', 8))}, {repr_float(num('detector.refractory_s', 0.6))}, "
                 f"{repr_float(num('detector.max_event_s', 1.0))}, {repr_float(num('detector.onset_level', 0.2))}, "
                 f"{repr_float(num('detector.lookback_s', 1.2))}, {int(num('frontend.sample_rate', 16000))}, "
                 f"{int(num('frontend.win_length', 400))}, {int(num('frontend.hop_length', 160))}}};\n")
    floats = state_size + max_gates + PAD + _padded(max_gates // 4) + sum(_padded(w) for w in weights.widths)
    arena = floats * 4 + len(weights.widths) * 4 + 3 * max_stride  # with 4-byte pointers (the Cortex-M cores)
    header = "\n".join([f"/* {name} for lstm_edge_mcu, written by lstm-edge build-c. */",
                        "#ifndef MODEL_MCU_H", "#define MODEL_MCU_H", '#include "lstm_edge_mcu.h"', "",
                        f"#define LEM_MCU_ARENA_BYTES ({floats * 4 + 3 * max_stride}u + {len(weights.widths)}u * "
                        "sizeof(float *)) /* lem_mcu_arena_bytes(&lem_mcu_model_data) */",
                        f"#define LEM_MCU_MODEL_INPUTS {weights.input_width}",
                        f"#define LEM_MCU_MODEL_OUTPUTS {weights.output_width}",
                        "extern const lem_mcu_model lem_mcu_model_data;",
                        "extern const lem_mcu_frontend_config lem_mcu_model_frontend;",
                        "extern const lem_mcu_detector_config lem_mcu_model_detector;", "#endif", ""])
    return "".join(parts), header, arena


# ------------------------------------------------------------------------------------------- build and measure
def _which(tool: str, package: str, what: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise McuBuildError(f"{what} needs {tool}, which is not installed; install it with: apt-get install {package}")
    return path


def _run(command: list[str], timeout: float = 600) -> str:
    return run_tool(command, timeout, McuBuildError)


def qemu_command(target: McuTarget, firmware: Path, *args: str) -> list[str]:
    """qemu-system-arm running ``firmware`` on the target's board with these semihosting arguments."""
    semihosting = ",".join(["enable=on", "target=native", f"arg={firmware.name}", *(f"arg={a}" for a in args)])
    return ["qemu-system-arm", "-M", target.board, "-nographic", "-monitor", "none", "-serial", "none",
            "-icount", "shift=0", "-semihosting-config", semihosting, "-kernel", str(firmware)]


RUNNER = """#!/bin/sh
# {board} ({cpu}) under qemu-system-arm: 16 kHz mono s16le PCM in, the JSON lines of `lstm-edge listen --json` out.
# Usage: ./run-qemu.sh AUDIO.s16le [STATS.json]   (needs: apt-get install qemu-system-arm; paths without spaces)
set -e
here=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 1 ] && [ -f "$1" ] || {{ echo "usage: $0 AUDIO.s16le [STATS.json] (16 kHz mono s16le PCM)" >&2; exit 2; }}
case "$1$2" in *" "* | *,*) echo "$0: paths with spaces or commas are not supported" >&2; exit 2 ;; esac
stats=""
[ $# -ge 2 ] && stats=",arg=$2"
exec qemu-system-arm -M {board} -nographic -monitor none -serial none -icount shift=0 \\
    -semihosting-config "enable=on,target=native,arg=firmware.elf,arg=listen,arg=$1$stats" -kernel "$here/firmware.elf"
"""


def section_sizes(elf: Path) -> dict[str, int]:
    """Bytes per output section of the firmware (binutils ``size -A``)."""
    out = _run([_which("arm-none-eabi-size", APT, "the Cortex-M build"), "-A", str(elf)])
    sizes = {}
    for row in out.splitlines():
        cols = row.split()
        if len(cols) >= 2 and cols[0].startswith(".") and cols[1].isdigit():
            sizes[cols[0]] = int(cols[1])
    return sizes


def measure(target: McuTarget, firmware: Path, pcm: np.ndarray) -> dict[str, Any]:
    """Run the firmware's listen mode on ``pcm`` under qemu: detections, instruction counts and stack."""
    _which("qemu-system-arm", "qemu-system-arm", f"running the {target.name} firmware")
    with tempfile.TemporaryDirectory() as work:
        audio, stats = Path(work) / "audio.s16le", Path(work) / "stats.json"
        audio.write_bytes(np.asarray(pcm, dtype="<i2").tobytes())
        out = _run(qemu_command(target, firmware, "listen", str(audio), str(stats)))
        raw = json.loads(stats.read_text())
    per_insn = raw["calibration_instructions"] / raw["calibration_ticks"]
    frames = max(1, raw["frames"])
    parts = {part: raw[f"{part}_ticks"] * per_insn / frames for part in ("frontend", "model", "detector")}
    return {"kernel": raw["kernel"], "frames": raw["frames"], "instructions_per_tick": per_insn,
            "instructions_per_frame_by_part": {k: round(v) for k, v in parts.items()},
            "instructions_per_frame": round(sum(parts.values())),
            "stack_high_water_bytes": raw["stack_high_water_bytes"],
            "detections": [json.loads(line) for line in out.splitlines() if line.startswith("{")]}


def build_mcu(target_name: str, out_dir: str | Path, model_dir: str | Path | None) -> dict[str, Any]:
    """Firmware, library and measurements for a Cortex-M target; returns what build.json records."""
    target = MCU_TARGETS[target_name]
    if model_dir is None:
        raise McuBuildError(f"target {target.name} needs a model directory: the weights are compiled into the "
                            "firmware (lstm-edge build-c MODEL_DIR --target ...)")
    if not MCU_DIR.is_dir():
        raise McuBuildError(expected_got(f"target {target.name}", f"the firmware sources in {MCU_DIR}",
                                         "an install without them (a device bundle holds the runtime only): "
                                         "build firmware from a host install of lstm-edge"))
    cc = _which("arm-none-eabi-gcc", APT, f"target {target.name}")
    manifest = Manifest.load(model_dir)
    if not manifest.has_file("c", "int8"):
        raise McuBuildError(f"{model_dir} has no int8 C weight file (model.int8.lec); add it with: "
                            f"lstm-edge add-c {model_dir}")
    lec = check_file(model_dir, next(f for f in manifest.files if f.format == "c" and f.precision == "int8"))
    weights = read_weight_file(lec)
    source, header, arena = model_source(weights, manifest.name, target.layout)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "model_mcu.c").write_text(source)
    (out / "model_mcu.h").write_text(header)
    shutil.copyfile(MCU_DIR / "lstm_edge_mcu.h", out / "lstm_edge_mcu.h")
    flags = [*CFLAGS, f"-mcpu={target.cpu}", f"-I{out}", f"-I{MCU_DIR}"]
    library = static_library(cc, _which("arm-none-eabi-ar", APT, "the Cortex-M build"), flags,
                             [MCU_DIR / name for name in LIBRARY_SOURCES], out / "liblstm_edge_mcu.a", McuBuildError)
    script = (MCU_DIR / "link.ld.in").read_text()
    for key, value in {"BOARD": target.board, "FLASH_ORIGIN": hex(target.flash[0]),
                       "FLASH_LENGTH": hex(target.flash[1]), "RAM_ORIGIN": hex(target.ram[0]),
                       "RAM_LENGTH": hex(target.ram[1]), "STACK_BYTES": str(STACK_BYTES)}.items():
        script = script.replace(f"@{key}@", value)
    (out / "link.ld").write_text(script)
    _run([cc, *flags, "-nostartfiles", "-Wl,--gc-sections", "-T", str(out / "link.ld"), "-o",
          str(out / "firmware.elf"), *(str(MCU_DIR / s) for s in FIRMWARE_SOURCES), str(out / "model_mcu.c"),
          str(library), "-lm", "-lc", "-lgcc"])
    runner = out / "run-qemu.sh"
    runner.write_text(RUNNER.format(board=target.board, cpu=target.cpu))
    runner.chmod(0o755)
    footprint = footprint_of(target, out / "firmware.elf", arena, weights, Path(model_dir))
    (out / "footprint.json").write_text(json.dumps(footprint, indent=2) + "\n")
    record = {"target": target.name, "board": target.board, "compiler": _run([cc, "--version"]).splitlines()[0],
              "cflags": [*CFLAGS, f"-mcpu={target.cpu}"], "kernel": footprint["kernel"],
              "files": sorted(p.name for p in out.iterdir() if p.name != "build.json")}
    (out / "build.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def footprint_of(target: McuTarget, elf: Path, arena: int, weights: WeightFile, model_dir: Path) -> dict[str, Any]:
    """Flash and RAM of the firmware, and instructions per frame on the model directory's reference PCM."""
    sizes = section_sizes(elf)
    weight_bytes = sum(int(t.values.shape[0]) * (_stride(int(t.values.shape[1]), target.layout) + 4)
                       if t.scales is not None
                       else t.values.size * 4 for layer in weights.layers for t in layer.tensors)
    reference = model_dir / "reference" / "frontend_input.npy"
    if not reference.is_file():
        raise McuBuildError(expected_got(f"{model_dir}", "reference/frontend_input.npy (PCM to measure the "
                                         "firmware on)", "no such file"))
    pcm = np.load(reference)
    repeats = -(-32000 // len(pcm))  # at least 2 s: the first frames (zero state, skipped products) weigh little
    measured = measure(target, elf, np.tile(pcm, repeats))
    static_ram = sizes.get(".data", 0) + sizes.get(".bss", 0)
    state = sum(n for _, n in weights.states) * 4
    return {"target": target.name, "board": target.board, "kernel": measured["kernel"],
            "flash_bytes": sizes.get(".text", 0) + sizes.get(".rodata", 0) + sizes.get(".data", 0)
            + sizes.get(".ARM.exidx", 0),
            "code_bytes": sizes.get(".text", 0), "constant_bytes": sizes.get(".rodata", 0),
            "weight_bytes": weight_bytes,
            "ram_bytes": static_ram + measured["stack_high_water_bytes"],
            "ram_static_bytes": static_ram, "model_arena_bytes": arena, "state_bytes": state,
            "stack_high_water_bytes": measured["stack_high_water_bytes"], "stack_reserved_bytes": STACK_BYTES,
            "instructions_per_frame": measured["instructions_per_frame"],
            "instructions_per_frame_by_part": measured["instructions_per_frame_by_part"],
            "measured_on": f"{reference.name} x {repeats} ({measured['frames']} frames), qemu-system-arm -icount "
                           "shift=0 (SysTick calibrated against a loop of known length)",
            "core_load_at_150mhz": round(measured["instructions_per_frame"] * 100 / 150e6, 4)}
