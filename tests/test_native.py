"""The C runtime (runtime/native/lstm_edge_model.c) and its weight files, natively and under qemu.

Parity against torch on the zoo models the C layers cover and on the shipped models (float within 1e-5 relative to
the outputs' magnitude, int8 within the manifest's argmax gate), on this machine through the ``native`` backend and
``lstm-edge-run``, and as static binaries under qemu-aarch64 (NEON dot-product and plain NEON kernels) and qemu-arm
(portable C). ``lstm-edge-listen`` under qemu-arm gives the Python spotter's detections on the shipped demo. Also:
refusals by layer name, corrupt and truncated files, the C API's state calls, chunk-size invariance.
"""

from __future__ import annotations

import ctypes
import json
import re
import shutil
import subprocess
import wave
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from lstm_edge.devices.c_build import CFLAGS as C_FLAGS
from lstm_edge.devices.c_build import NATIVE_DIR, TARGETS, BuildError, build_c
from lstm_edge.export import export
from lstm_edge.export.c_export import add_c_files
from lstm_edge.runtime import InputError, ModelFileError, NonFiniteResultError, StreamingModel
from lstm_edge.runtime.backends import native
from lstm_edge.runtime.errors import BackendUnavailableError, ExportError
from lstm_edge.runtime.kws import KeywordSpotter
from lstm_edge.runtime.manifest import Manifest

import zoo
from conftest import NATIVE_MODELS

ROOT = Path(__file__).resolve().parent.parent
KWS_DIR = ROOT / "models" / "kws" / "export"
DEMO_WAV = ROOT / "models" / "kws" / "demo.wav"
FLOAT_TOL = 1e-5  # times max(1, largest |output|): float32 rounding grows with the outputs' magnitude
FRAMES = 60


def float_close(got: np.ndarray, expected: np.ndarray) -> bool:
    return float(np.abs(got - expected).max()) <= FLOAT_TOL * max(1.0, float(np.abs(expected).max()))


def argmax_agreement(got: np.ndarray, expected: np.ndarray) -> float:
    return float((got.argmax(-1) == expected.argmax(-1)).mean())


def random_chunks(total: int, seed: int) -> list[int]:
    rng = np.random.default_rng(seed)
    sizes = []
    while sum(sizes) < total:
        sizes.append(int(rng.integers(1, 13)))
    sizes[-1] -= sum(sizes) - total
    return [s for s in sizes if s > 0]


def push_chunks(stream, x: np.ndarray, sizes: list[int]) -> np.ndarray:
    out, start = [], 0
    for size in sizes:
        out.append(stream.push(x[start:start + size]))
        start += size
    return np.concatenate(out)


def raw_frames(x: np.ndarray) -> bytes:
    return np.ascontiguousarray(x, dtype="<i4" if x.dtype.kind == "i" else "<f4").tobytes()


def demo_pcm() -> np.ndarray:
    with wave.open(str(DEMO_WAV), "rb") as handle:
        return np.frombuffer(handle.readframes(handle.getnframes()), dtype="<i2").astype(np.int16)


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    """build-c output folders for native, aarch64 and armv7 (built once; the shipped KWS files copied in)."""
    folders = {}
    for target in ("native", "aarch64", "armv7"):
        folders[target] = tmp_path_factory.mktemp(f"c-{target}")
        build_c(target, folders[target], KWS_DIR)
    return folders


RUNNERS = {"native": (), "aarch64": ("qemu-aarch64",), "aarch64-a72": ("qemu-aarch64", "-cpu", "cortex-a72"),
           "armv7": ("qemu-arm",)}


def x86_kernels() -> list[str]:
    """The x86-64 kernel sets this CPU runs, slowest first, from the flags /proc/cpuinfo lists."""
    flags = set(re.search(r"^flags\s*:(.*)$", Path("/proc/cpuinfo").read_text(), re.M).group(1).split())
    kernels = ["portable"]
    if {"avx2", "fma"} <= flags:
        kernels.append("avx2")
        if {"avx512f", "avx512bw", "avx512vl", "avx512_vnni"} <= flags:
            kernels.append("avx512-vnni")
    return kernels


KERNELS = {"native": x86_kernels()[-1], "aarch64": "neon-dotprod", "aarch64-a72": "neon", "armv7": "portable"}


def run_program(builds, runner: str, program: str, args: list[str], stdin: bytes, env: dict | None = None,
                check: bool = True) -> subprocess.CompletedProcess:
    folder = builds[runner.split("-")[0]]
    result = subprocess.run([*RUNNERS[runner], str(folder / program), *args], input=stdin, capture_output=True,
                            timeout=300, env=env)
    if check and result.returncode != 0:
        raise RuntimeError(f"{runner} {program} exit {result.returncode}: {result.stderr.decode()}")
    return result


# ------------------------------------------------------------------------------------------- zoo, native backend
@pytest.mark.parametrize("name", NATIVE_MODELS)
def test_zoo_float_matches_torch_in_random_chunks(exported, name):
    model, model_dir = exported(name)
    x = zoo.random_input(name, FRAMES, seed=3)
    expected_y, expected_state = zoo.torch_reference(model, x)
    streaming = StreamingModel.load(model_dir, backend="native", precision="float")
    assert streaming.engine.startswith("lstm-edge C ")
    stream = streaming.create_stream()
    got = push_chunks(stream, x[0].numpy(), random_chunks(FRAMES, seed=5))
    assert got.shape == expected_y.shape and float_close(got, expected_y)
    state = stream.state
    # torch gives the recurrent layers' final states; a convolution's context (its last input frames) is compared
    # with the ONNX graph's after the same chunks
    contexts = set(state) - set(expected_state)
    assert set(expected_state) <= set(state) and all(name.endswith("_context") for name in contexts)
    if contexts:
        onnx_stream = StreamingModel.load(model_dir, backend="onnx").create_stream()
        push_chunks(onnx_stream, x[0].numpy(), random_chunks(FRAMES, seed=5))
        expected_state = {**expected_state, **{name: onnx_stream.state[name] for name in contexts}}
    for state_name, value in expected_state.items():
        assert float_close(state[state_name], value), state_name


@pytest.mark.parametrize("name", NATIVE_MODELS)
def test_zoo_int8_within_the_gate_and_really_int8(exported, name):
    model, model_dir = exported(name)
    x = zoo.random_input(name, FRAMES, seed=3)
    expected_y, _ = zoo.torch_reference(model, x)
    manifest = Manifest.load(model_dir)
    streaming = StreamingModel.load(model_dir, backend="native", precision="int8")
    got = push_chunks(streaming.create_stream(), x[0].numpy(), random_chunks(FRAMES, seed=6))
    assert argmax_agreement(got, expected_y) >= manifest.tolerances["int8_argmax_agreement"]
    spread = float(expected_y.std())
    assert float(np.sqrt(np.mean((got - expected_y) ** 2))) <= 0.05 * spread
    # Structure, not only closeness: the C library holds int8 weights, and the file is about a quarter of float's.
    int8_entry, float_entry = manifest.file("c", "int8"), manifest.file("c", "float")
    assert streaming._backend.int8 and int8_entry.quantization["weights"].startswith("int8 per output row")
    assert int8_entry.bytes < 0.45 * float_entry.bytes


@pytest.mark.parametrize("precision", ["float", "int8"])
def test_any_chunking_gives_the_same_outputs(exported, precision):
    _, model_dir = exported("feature_lstm")
    x = zoo.random_input("feature_lstm", 150, seed=8)[0].numpy()
    streaming = StreamingModel.load(model_dir, backend="native", precision=precision)
    whole = streaming.create_stream().push(x)  # 150 frames: run by the C stream in pieces of MAX_CHUNK
    ones = push_chunks(streaming.create_stream(), x, [1] * 150)
    mixed = push_chunks(streaming.create_stream(), x, random_chunks(150, seed=9))
    assert np.abs(whole - ones).max() <= 1e-6 and np.abs(whole - mixed).max() <= 1e-6


@pytest.mark.parametrize("layer", ["gru", "lstm_proj"])
def test_wide_recurrent_layers_give_the_same_bits_in_any_chunking(layer, tmp_path):
    """Recurrent matrices above 32 KB (a GRU of 128: 384 x 128, an LSTM of 128 projected to 100: 512 x 100) are read
    backwards on odd frames of a chunk: the outputs and state are bitwise those of one frame per push, float and
    int8, and float matches torch."""
    class Wide(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = (torch.nn.GRU(16, 128, batch_first=True) if layer == "gru"
                        else torch.nn.LSTM(16, 128, proj_size=100, batch_first=True))
            self.head = torch.nn.Linear(128 if layer == "gru" else 100, 5)

        def forward(self, x):
            return self.head(self.rnn(x)[0])

    torch.manual_seed(4)
    wide = Wide().eval()
    out = export(wide, torch.randn(1, 10, 16), tmp_path / layer, formats=("c",))
    x = torch.randn(1, 40, 16)
    with torch.no_grad():
        expected = wide(x)[0].numpy()
    for precision in ("float", "int8"):
        streaming = StreamingModel.load(out, backend="native", precision=precision)
        ones, tens = streaming.create_stream(), streaming.create_stream()
        by_one = push_chunks(ones, x[0].numpy(), [1] * 40)
        by_ten = push_chunks(tens, x[0].numpy(), [10] * 4)
        assert by_one.tobytes() == by_ten.tobytes(), precision
        assert all(ones.state[k].tobytes() == tens.state[k].tobytes() for k in ones.state), precision
        if precision == "float":
            assert float_close(by_ten, expected)


def test_c_api_state_get_set_reset(exported):
    """The C stream's own state calls: reset equals a fresh stream, set_state resumes exactly where get_state was."""
    _, model_dir = exported("learned_h0")  # learned initial state: reset must restore it, not zeros
    lib = native.library()
    p, size = ctypes.c_void_p, ctypes.c_size_t
    lib.lem_stream_push.argtypes = [p, p, size, p]
    lib.lem_stream_get_state.argtypes = lib.lem_stream_set_state.argtypes = [p, p]
    lib.lem_stream_reset.argtypes = [p]
    lib.lem_stream_reset.restype = None
    _, model = native.load_c_model((Path(model_dir) / "model.lec").read_bytes(), "model.lec")
    try:
        status = ctypes.c_int(0)
        stream = lib.lem_stream_create(model, 4, ctypes.byref(status))
        n_state, width = lib.lem_model_state_size(model), lib.lem_model_output_width(model)
        x = np.ascontiguousarray(zoo.random_input("learned_h0", 20, seed=2)[0].numpy())
        y = np.empty((20, width), np.float32)

        def push(frames: np.ndarray) -> np.ndarray:
            out = np.empty((len(frames), width), np.float32)
            assert lib.lem_stream_push(stream, frames.ctypes.data, len(frames), out.ctypes.data) == 0
            return out

        initial = np.empty(n_state, np.float32)
        assert lib.lem_stream_get_state(stream, initial.ctypes.data) == 0
        manifest = Manifest.load(model_dir)
        np.testing.assert_array_equal(initial, np.concatenate([v.reshape(-1) for v in manifest.initial_values()]))
        y[:10] = push(x[:10])
        middle = np.empty(n_state, np.float32)
        lib.lem_stream_get_state(stream, middle.ctypes.data)
        y[10:] = push(x[10:])
        lib.lem_stream_reset(stream)
        np.testing.assert_array_equal(push(x), y)  # reset: a fresh stream again
        assert lib.lem_stream_set_state(stream, middle.ctypes.data) == 0
        np.testing.assert_array_equal(push(x[10:]), y[10:])
        bad = middle.copy()
        bad[3] = np.nan
        assert lib.lem_stream_set_state(stream, bad.ctypes.data) == native.LEM_ERR_NONFINITE_INPUT
        lib.lem_stream_free(stream)
    finally:
        lib.lem_model_free(model)


class SkipLSTM(torch.nn.Module):
    """LSTM head plus a linear skip path from the input: a huge input overflows the output (not bounded by tanh)."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = torch.nn.LSTM(6, 8, batch_first=True)
        self.head = torch.nn.Linear(8, 4)
        self.skip = torch.nn.Linear(6, 4)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.head(out) + self.skip(x)


@pytest.mark.parametrize("name", ["learned_h0", "tokens_time_major", "causal_crnn"])
def test_stream_on_the_c_stream_matches_the_pure_step(exported, name):
    """Stream.push on the native backend goes through a C stream that keeps the state; outputs, state, reset,
    resume and refusals are those of the pure step (the state threaded through Python)."""
    _, model_dir = exported(name)
    model = StreamingModel.load(model_dir, backend="native", precision="int8")
    x = zoo.random_input(name, 90, seed=4)[0].numpy()
    stream = model.create_stream()
    assert stream.engine.name.startswith("native C stream")
    state, pure = model.initial_state(), []
    for start, size in zip(np.cumsum([0, *random_chunks(90, 5)[:-1]]), random_chunks(90, 5)):
        y, state = model.step(x[start:start + size], state)
        pure.append(y)
    direct = push_chunks(stream, x, random_chunks(90, 5))
    np.testing.assert_array_equal(direct, np.concatenate(pure))
    for key, value in stream.state.items():
        np.testing.assert_array_equal(value, state[key])
    resume = stream.state
    tail = stream.push(x[:7])
    stream.state = resume  # set_state: carries on from there
    np.testing.assert_array_equal(stream.push(x[:7]), tail)
    readonly = np.array(x[:7])
    readonly.flags.writeable = False  # passed by copy, same result
    stream.state = resume
    np.testing.assert_array_equal(stream.push(readonly), tail)
    stream.reset()
    np.testing.assert_array_equal(stream.push(x[:7]), push_chunks(model.create_stream(), x[:7], [7]))
    assert stream.frames == 7
    if x.dtype.kind == "f":
        before = stream.state
        bad = x[:5].copy()
        bad[2, 0] = np.nan
        with pytest.raises(InputError, match="NaN"):
            stream.push(bad)
        for key, value in stream.state.items():
            np.testing.assert_array_equal(value, before[key])
        with pytest.raises(InputError):
            stream.state = {k: np.full_like(v, np.inf) for k, v in before.items()}
        for key, value in stream.state.items():
            np.testing.assert_array_equal(value, before[key])


def test_nonfinite_input_and_result_are_refused_and_state_kept(tmp_path):
    torch.manual_seed(0)
    model = SkipLSTM().eval()
    with torch.no_grad():
        model.skip.weight.fill_(1.0)  # six inputs of 3e38 sum past float32's largest value
    model_dir = export(model, torch.randn(1, 10, 6), tmp_path / "skip", formats=("c",))
    stream = StreamingModel.load(model_dir, backend="native").create_stream()
    x = np.random.default_rng(4).standard_normal((10, 6)).astype(np.float32)
    stream.push(x)
    before = stream.state
    bad = x.copy()
    bad[3, 2] = np.inf
    with pytest.raises(InputError, match="NaN/inf"):
        stream.push(bad)
    with pytest.raises(NonFiniteResultError, match="NaN/inf"):  # finite input, overflowing output
        stream.push(np.full_like(x, 3e38))
    for name, value in before.items():
        np.testing.assert_array_equal(stream.state[name], value)
    np.testing.assert_array_equal(stream.push(x), StreamingModel.load(model_dir, backend="native").step(
        x, before)[0])


def test_token_model_refuses_ids_out_of_range(exported):
    _, model_dir = exported("tokens_time_major")
    stream = StreamingModel.load(model_dir, backend="native").create_stream()
    with pytest.raises(InputError, match="token id"):
        stream.push(np.array([1, 2, 50]))


# ------------------------------------------------------------------------------------------- refusals and errors
class ExpHead(torch.nn.Module):
    """An LSTM whose head ends in exp: streamable, but no C layer."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = torch.nn.LSTM(6, 8, batch_first=True)
        self.head = torch.nn.Linear(8, 3)

    def forward(self, x):
        return torch.exp(self.head(self.lstm(x)[0]))


class PooledCRNN(torch.nn.Module):
    """A causal Conv2d over (time, frequency), then L2-pooling over frequency only: streamable, but no C layer."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, kernel_size=(3, 3), padding=(0, 1))
        self.pool = torch.nn.LPPool2d(2, (1, 2))
        self.lstm = torch.nn.LSTM(4 * 8, 12, batch_first=True)
        self.head = torch.nn.Linear(12, 3)

    def forward(self, x):
        h = self.pool(torch.relu(self.conv(torch.nn.functional.pad(x.unsqueeze(1), (0, 0, 2, 0)))))
        return self.head(self.lstm(h.permute(0, 2, 1, 3).flatten(2))[0])


def test_layers_without_a_c_version_are_refused_by_name(tmp_path):
    torch.manual_seed(0)
    with pytest.raises(ExportError, match=re.escape("C exporter cannot convert layer 'forward()' (ONNX Exp")):
        export(ExpHead().eval(), torch.randn(1, 10, 6), tmp_path / "exp", formats=("onnx", "c"))


def test_a_layer_after_a_causal_conv_without_a_c_version_is_refused_by_name(tmp_path):
    torch.manual_seed(0)
    with pytest.raises(ExportError, match=re.escape("C exporter cannot convert layer 'pool' (ONNX ")):
        export(PooledCRNN().eval(), torch.randn(1, 10, 16), tmp_path / "pooled", formats=("onnx", "c"))


def test_file_version_follows_the_layers_and_newer_versions_are_refused(exported):
    """Files with only version-1 layers stay version 1 (older readers load them); a projected LSTM makes version 2;
    a version this library does not know is refused by number."""
    versions = {}
    for name in ("feature_lstm", "projected"):
        data = (Path(exported(name)[1]) / "model.lec").read_bytes()
        versions[name] = int.from_bytes(data[4:8], "little")
    assert versions == {"feature_lstm": 1, "projected": 2}
    future = bytearray(data)
    future[4:8] = (4).to_bytes(4, "little")
    with pytest.raises(ModelFileError, match="version 4"):
        native.load_c_model(bytes(future), "future.lec")


def test_export_with_only_the_c_format(tmp_path):
    model, example = zoo.build("gru")
    out = export(model, example, tmp_path / "gru", formats=("c",))
    manifest = Manifest.load(out)
    assert [f.key for f in manifest.files] == ["c/float", "c/int8"] and not (out / "model.onnx").exists()
    x = zoo.random_input("gru", 30, seed=1)
    assert float_close(StreamingModel.load(out, backend="native").create_stream().push(x[0].numpy()),
                       zoo.torch_reference(model, x)[0])


def test_quantize_leaves_the_c_pair_alone_and_refuses_to_quantize_it(tmp_path):
    """A directory with C files (written in pairs by add-c) quantizes its ONNX file and keeps both C entries; asking
    for the C format by name says where its int8 file comes from."""
    from lstm_edge.quantize import quantize

    model, example = zoo.build("feature_lstm")
    out = export(model, example, tmp_path / "lstm", formats=("onnx", "c"))
    quantize(out)
    assert sorted(f.key for f in Manifest.load(out).files) == ["c/float", "c/int8", "onnx/float", "onnx/int8"]
    with pytest.raises(InputError, match="add-c"):
        quantize(out, formats=("c",))


def test_corrupt_truncated_and_foreign_files_are_refused(tmp_path, builds):
    data = bytearray((KWS_DIR / "model.int8.lec").read_bytes())
    flipped = bytearray(data)
    flipped[5000] ^= 0x40
    cases = {"checksum": bytes(flipped), "truncated": bytes(data[:len(data) // 2]),
             "magic": b"ONNX" + bytes(data[4:]), "empty": b""}
    messages = {"checksum": "CRC-32", "truncated": "truncated", "magic": "LEMW", "empty": "LEMW"}
    for case, content in cases.items():
        with pytest.raises(ModelFileError, match=messages[case]):
            native.load_c_model(content, case)
        path = tmp_path / f"{case}.lec"
        path.write_bytes(content)
        result = run_program(builds, "native", "lstm-edge-run", [str(path)], b"", check=False)
        assert result.returncode == 1 and messages[case].encode() in result.stderr, case
    copy = tmp_path / "kws"
    shutil.copytree(KWS_DIR, copy)
    (copy / "model.lec").write_bytes(bytes(flipped))
    with pytest.raises(ModelFileError, match="checksum mismatch"):  # the manifest's sha256, before the C reader
        StreamingModel.load(copy, backend="native")


def test_no_c_compiler_is_a_clear_error(monkeypatch, tmp_path):
    from lstm_edge.runtime import native_build

    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    monkeypatch.setenv("LSTM_EDGE_CACHE", str(tmp_path / "cache"))
    with pytest.raises(BackendUnavailableError, match="needs a C compiler"):
        native_build.shared_library()
    assert not native.available()


def test_build_c_needs_c_files_and_a_known_target(tmp_path, exported):
    _, model_dir = exported("feature_lstm")
    plain = tmp_path / "plain"
    shutil.copytree(model_dir, plain)
    manifest = Manifest.load(plain)
    replace(manifest, files=tuple(f for f in manifest.files if f.format != "c")).save(plain)
    with pytest.raises(BuildError, match="lstm-edge add-c"):
        build_c("native", tmp_path / "out", plain)
    with pytest.raises(BuildError, match="expected one of"):
        build_c("riscv", tmp_path / "out")


def test_outputs_stay_intact_and_every_way_of_passing_arrays_agrees():
    """The backend writes each call's outputs into fresh records (output blocks are renewed as they fill): arrays
    returned earlier keep their values. A state the backend returned (passed by address), a copy of it, a
    read-only chunk and a non-contiguous one give the same results bitwise."""
    model = StreamingModel.load(KWS_DIR, backend="native", precision="int8")
    x = np.load(KWS_DIR / "reference" / "input.npy")[:150]
    whole, _ = model.step(x, model.initial_state())
    state, ys, states = model.initial_state(), [], []
    for t in range(len(x)):  # more calls than one output block holds
        y, state = model.step(x[t:t + 1], state)
        ys.append(y)
        states.append(state)
    kept = [y.copy() for y in ys]
    assert np.abs(np.concatenate(ys) - whole).max() <= 1e-6
    assert all(np.array_equal(a, b) for a, b in zip(ys, kept))
    middle = states[70]
    by_address, next_state = model.step(x[71:74], middle)
    copied, copied_state = model.step(x[71:74], {name: np.array(v) for name, v in middle.items()})
    frozen = x[71:74].copy()
    frozen.flags.writeable = False
    read_only, _ = model.step(frozen, middle)
    strided, _ = model.step(np.repeat(x[71:74], 2, axis=1)[:, ::2], middle)
    for got in (copied, read_only, strided):
        assert np.array_equal(got, by_address)
    assert all(np.array_equal(next_state[n], copied_state[n]) for n in model.state_names)
    for length in range(1, 25):  # more chunk lengths than a slot keeps output blocks for
        y, _ = model.step(x[:length], model.initial_state())
        assert np.abs(y - whole[:length]).max() <= 1e-6


# ------------------------------------------------------------------------------------------- shipped models
@pytest.mark.parametrize("precision", ["float", "int8"])
def test_shipped_kws_through_the_backend(precision):
    manifest = Manifest.load(KWS_DIR)
    reference = np.load(KWS_DIR / manifest.reference["input"])
    expected = np.load(KWS_DIR / manifest.reference["output"])
    stream = StreamingModel.load(KWS_DIR, backend="native", precision=precision).create_stream()
    got = push_chunks(stream, reference, random_chunks(len(reference), seed=1))
    if precision == "float":
        assert float_close(got, expected)
    else:
        assert argmax_agreement(got, expected) >= manifest.tolerances["int8_argmax_agreement"]


def test_add_c_reproduces_the_shipped_files(tmp_path):
    """The command to rerun after a re-export: on a copy it writes byte-identical files and entries."""
    copy = tmp_path / "kws"
    shutil.copytree(KWS_DIR, copy)
    (copy / "model.lec").unlink()
    manifest = add_c_files(copy)
    shipped = Manifest.load(KWS_DIR)
    for precision in ("float", "int8"):
        assert manifest.file("c", precision).sha256 == shipped.file("c", precision).sha256
    assert [f.key for f in manifest.files] == [f.key for f in shipped.files]


@pytest.mark.parametrize("model", ["text/lm", "asr"])
def test_other_shipped_models_convert_and_match_their_reference(model, tmp_path):
    """The text model (embedding, token ids) and the recognizer (log-softmax) from their directories' ONNX graphs."""
    copy = tmp_path / "model"
    shutil.copytree(ROOT / "models" / model / "export", copy)
    manifest = add_c_files(copy)
    reference = np.load(copy / manifest.reference["input"])
    expected = np.load(copy / manifest.reference["output"])
    got = StreamingModel.load(copy, backend="native").create_stream().push(reference)
    assert float_close(got, expected)
    int8 = StreamingModel.load(copy, backend="native", precision="int8").create_stream().push(reference)
    assert argmax_agreement(int8, expected) >= manifest.tolerances["int8_argmax_agreement"]


# ------------------------------------------------------------------------------------------- programs, qemu
@pytest.mark.parametrize("runner", list(RUNNERS))
def test_lstm_edge_run_on_every_target(builds, runner, exported):
    """Static lstm-edge-run binaries: the shipped KWS and every native zoo model, float and int8, chunk 1 and 7."""
    folder = builds[runner.split("-")[0]]
    info = json.loads(run_program(builds, runner, "lstm-edge-run", ["--info", str(folder)], b"").stdout)
    assert info["kernels"] == KERNELS[runner]
    manifest = Manifest.load(KWS_DIR)
    reference = np.load(KWS_DIR / manifest.reference["input"])[:300]
    expected = np.load(KWS_DIR / manifest.reference["output"])[:300]
    outputs = {}
    for precision in ("float", "int8"):
        for chunk in ("1", "7"):
            out = run_program(builds, runner, "lstm-edge-run", ["--chunk", chunk, "--precision", precision,
                                                                str(folder)], raw_frames(reference)).stdout
            outputs[precision, chunk] = np.frombuffer(out, "<f4").reshape(expected.shape)
        assert np.abs(outputs[precision, "1"] - outputs[precision, "7"]).max() <= 1e-6
    assert float_close(outputs["float", "7"], expected)
    assert argmax_agreement(outputs["int8", "7"], expected) >= manifest.tolerances["int8_argmax_agreement"]
    for name in NATIVE_MODELS:
        model, model_dir = exported(name)
        x = zoo.random_input(name, 40, seed=12)
        want, _ = zoo.torch_reference(model, x)
        out = run_program(builds, runner, "lstm-edge-run", ["--chunk", "3", str(model_dir)],
                          raw_frames(x[0].numpy())).stdout
        assert float_close(np.frombuffer(out, "<f4").reshape(want.shape), want), name


@pytest.mark.parametrize("name", ["gru", "feature_lstm", "projected", "kws"])
def test_gate_arithmetic_gives_bitwise_the_same_int8_outputs_on_every_target(builds, exported, name):
    """The gate arithmetic of every target gives bitwise the same int8 outputs: on this CPU the AVX-512 kernel set's
    LSTM gates (three passes, four vectors interleaved) or the gate loops' x86-64 clones, under qemu the plain
    loops of the ARM builds. The integer products are exact and the gates are the same float operations per value.
    Hidden sizes 48, 40 (projected to 16) and 128 (the shipped keyword spotter) cover whole and partial vectors."""
    if name == "kws":  # the build folders hold the shipped files
        x, frames, width = np.load(KWS_DIR / Manifest.load(KWS_DIR).reference["input"])[:120], 120, 12
        folders = {runner: builds[runner] for runner in ("native", "aarch64", "armv7")}
    else:
        model, model_dir = exported(name)
        example = zoo.random_input(name, 40, seed=12)
        want, _ = zoo.torch_reference(model, example)
        x, frames, width = example[0].numpy(), 40, want.shape[-1]
        folders = dict.fromkeys(("native", "aarch64", "armv7"), model_dir)
    outputs = {runner: run_program(builds, runner, "lstm-edge-run", ["--chunk", "3", "--precision", "int8",
                                                                    str(folder)], raw_frames(x)).stdout
               for runner, folder in folders.items()}
    assert len(outputs["native"]) == frames * width * 4
    assert outputs["aarch64"] == outputs["native"] and outputs["armv7"] == outputs["native"]


def test_portable_kernels_agree_with_the_simd_ones(builds):
    """Every kernel set this CPU runs (LEM_KERNEL picks one): int8 outputs bitwise equal to the portable kernels'
    (each computes the exact int32 dot product), float outputs within the float tolerance and, for each set, bitwise
    the same for every chunk length."""
    manifest = Manifest.load(KWS_DIR)
    reference = raw_frames(np.load(KWS_DIR / manifest.reference["input"])[:200])
    kernels = x86_kernels()
    assert kernels[-1] != "portable", "this x86-64 CPU has no AVX2: no SIMD kernels to compare"
    for precision in ("float", "int8"):
        args = ["--precision", precision, str(builds["native"])]
        outputs = {}
        for kernel in kernels:
            env = {"LEM_KERNEL": kernel}
            info = json.loads(run_program(builds, "native", "lstm-edge-run", ["--info", *args], b"", env=env).stdout)
            assert info["kernels"] == kernel
            for chunk in ("1", "3", "4", "9", "10"):  # ragged: several-vector kernels on 3, 4, 9 and 10 frames
                outputs[kernel, chunk] = run_program(builds, "native", "lstm-edge-run", ["--chunk", chunk, *args],
                                                     reference, env=env).stdout
        portable = np.frombuffer(outputs["portable", "1"], "<f4")
        assert portable.size == 200 * 12
        for (kernel, chunk), out in outputs.items():
            if precision == "int8":
                assert out == outputs["portable", "1"], (kernel, chunk)
            else:  # any chunking of one kernel set: the same float operations per value (odd frames of a chunk
                # read the recurrent matrix backwards)
                assert float_close(np.frombuffer(out, "<f4"), portable), (kernel, chunk)
                assert out == outputs[kernel, "1"], (kernel, chunk)


KERNEL_CHECK_PROGRAM = r"""
/* kernel_check ROWSxCOLS[,...] N_VEC[,...]: for every shape and n_vec, int8 then float, writes three
 * [n_vec, y_stride] float blocks: the selected set's matmat, its matvec per vector, the portable matvec per vector
 * (row-major weights, the portable quantize). Vector 2 is all zeros (int8 scale 0: its y must stay as it was). */
#define _POSIX_C_SOURCE 200112L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "lstm_edge_kernels.h"

static unsigned long long seed = 88172645463325252ull;
static float uniform(void) {
    seed ^= seed << 13;
    seed ^= seed >> 7;
    seed ^= seed << 17;
    return (float)((seed >> 40) % 2000001u) / 1000000.0f - 1.0f;
}

static void *zeros(size_t bytes) {
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes + 64) != 0) exit(1);
    memset(p, 0, bytes + 64);
    return p;
}

static void emit(const float *y, size_t n) {
    if (fwrite(y, sizeof(float), n, stdout) != n) exit(1);
}

int main(int argc, char **argv) {
    const lem_kernels *k = lem_kernels_select(), *portable = lem_kernels_portable();
    size_t rows, cols, n_vecs[64], count = 0, which, n_vec, v, i;
    char *token;
    fprintf(stderr, "%s\n", k->name);
    for (token = strtok(argv[2], ","); token != NULL && count < 64; token = strtok(NULL, ","))
        n_vecs[count++] = (size_t)atol(token);
    for (token = strtok(argv[1], ","); token != NULL; token = strtok(NULL, ",")) {
        if (sscanf(token, "%lux%lu", (unsigned long *)&rows, (unsigned long *)&cols) != 2) return 2;
        for (which = 0; which < count; which++) {
            n_vec = n_vecs[which];
            {
            size_t stride = (cols + LEM_PAD - 1) / LEM_PAD * LEM_PAD, xs = stride + LEM_PAD, ys = rows + 3;
            size_t prows = lem_packed_rows(rows, k->i8_block), frows = lem_packed_rows(rows, k->f32_block);
            int8_t *w = zeros(rows * stride), *wp = zeros(prows * stride), *xq = zeros(n_vec * xs);
            int8_t *pq = zeros(stride);
            float *wf = zeros(rows * stride * 4), *wfp = zeros(frows * stride * 4), *scale = zeros(rows * 4);
            float *x = zeros(n_vec * xs * 4), *xscale = zeros(n_vec * 4), *y0 = zeros(n_vec * ys * 4);
            float *y = zeros(n_vec * ys * 4);
            for (i = 0; i < rows; i++) {
                size_t c;
                scale[i] = 1e-3f * (1.5f + uniform());
                for (c = 0; c < cols; c++) {
                    w[i * stride + c] = (int8_t)(int)(127.0f * uniform());
                    wf[i * stride + c] = uniform();
                }
            }
            for (v = 0; v < n_vec; v++)
                for (i = 0; i < cols; i++) x[v * xs + i] = v == 2 ? 0.0f : 3.0f * uniform();
            for (i = 0; i < n_vec * ys; i++) y0[i] = uniform();
            y0[0] = -0.0f;
            if (n_vec > 2) y0[2 * ys] = -0.0f;
            for (v = 0; v < n_vec; v++) xscale[v] = k->quantize(x + v * xs, cols, xq + v * xs);
            if (k->matvec_i8_packed != NULL) k->pack_i8(w, rows, stride, wp);
            if (k->matvec_f32_packed != NULL) k->pack_f32(wf, rows, stride, wfp);
            /* int8 */
            memcpy(y, y0, n_vec * ys * 4);
            (k->matvec_i8_packed ? k->matmat_i8_packed : k->matmat_i8)(k->matvec_i8_packed ? wp : w, scale, rows,
                                                                      stride, xq, xscale, n_vec, xs, y, ys);
            emit(y, n_vec * ys);
            memcpy(y, y0, n_vec * ys * 4);
            for (v = 0; v < n_vec; v++)
                if (xscale[v] != 0.0f)
                    (k->matvec_i8_packed ? k->matvec_i8_packed : k->matvec_i8)(
                        k->matvec_i8_packed ? wp : w, scale, rows, stride, xq + v * xs, xscale[v], y + v * ys);
            emit(y, n_vec * ys);
            memcpy(y, y0, n_vec * ys * 4);
            for (v = 0; v < n_vec; v++) {
                float s = portable->quantize(x + v * xs, cols, pq);
                if (s != 0.0f) portable->matvec_i8(w, scale, rows, stride, pq, s, y + v * ys);
            }
            emit(y, n_vec * ys);
            /* float */
            memcpy(y, y0, n_vec * ys * 4);
            (k->matvec_f32_packed ? k->matmat_f32_packed : k->matmat_f32)(k->matvec_f32_packed ? wfp : wf, rows,
                                                                         stride, x, n_vec, xs, y, ys);
            emit(y, n_vec * ys);
            memcpy(y, y0, n_vec * ys * 4);
            for (v = 0; v < n_vec; v++)
                (k->matvec_f32_packed ? k->matvec_f32_packed : k->matvec_f32)(k->matvec_f32_packed ? wfp : wf, rows,
                                                                             stride, x + v * xs, y + v * ys);
            emit(y, n_vec * ys);
            memcpy(y, y0, n_vec * ys * 4);
            for (v = 0; v < n_vec; v++) portable->matvec_f32(wf, rows, stride, x + v * xs, y + v * ys);
            emit(y, n_vec * ys);
            free(w), free(wp), free(xq), free(pq), free(wf), free(wfp), free(scale), free(x), free(xscale);
            free(y0), free(y);
            }
        }
    }
    return 0;
}
"""
# ragged rows (partial blocks of 8 and 16, the 32/64-row groups and what is left after them) and columns
KERNEL_CHECK_SHAPES = ["1x5", "7x40", "16x32", "17x64", "33x96", "40x128", "64x100", "96x40", "100x200", "131x33",
                       "512x128"]
# every n_vec up to 9 (each tile's partial vector groups), and around the VNNI kernel's batch of 16 up to 64 streams
KERNEL_CHECK_N_VEC = [*range(1, 10), 15, 16, 17, 31, 64]


@pytest.fixture(scope="module")
def kernel_check(tmp_path_factory):
    """KERNEL_CHECK_PROGRAM built with lstm_edge_kernels.c for this machine and (static) for aarch64."""
    folder = tmp_path_factory.mktemp("kernel-check")
    source = folder / "kernel_check.c"
    source.write_text(KERNEL_CHECK_PROGRAM)
    binaries = {}
    for target in ("native", "aarch64"):
        binaries[target] = folder / f"kernel_check-{target}"
        spec = TARGETS[target]
        subprocess.run([spec.cc, *C_FLAGS, *(("-static",) if spec.static else ()), f"-I{NATIVE_DIR}", "-o",
                        str(binaries[target]), str(source), str(NATIVE_DIR / "lstm_edge_kernels.c"), "-lm"],
                       check=True, capture_output=True)
    return binaries


@pytest.mark.parametrize("runner, kernel", [*(("native", k) for k in x86_kernels()), ("aarch64", "neon-dotprod"),
                                            ("aarch64-a72", "neon")])
def test_several_vector_kernels_match_the_one_vector_ones(kernel_check, runner, kernel):
    """matmat_* of each kernel set this CPU (or qemu) runs, n_vec 1..9 and up to 64 on ragged shapes: int8 bitwise
    equal to the set's matvec per vector and to the portable kernels'; float bitwise equal to the set's matvec (same
    summation order) and within the float tolerance of the portable one. An all-zero vector leaves its outputs
    alone."""
    env = {"LEM_KERNEL": kernel} if runner == "native" else None
    result = subprocess.run([*RUNNERS[runner], str(kernel_check[runner.split("-")[0]]), ",".join(KERNEL_CHECK_SHAPES),
                             ",".join(map(str, KERNEL_CHECK_N_VEC))], capture_output=True, timeout=300, env=env,
                            check=True)
    assert result.stderr.decode().strip() == kernel
    data, start, checked = np.frombuffer(result.stdout, "<f4"), 0, 0
    for shape in KERNEL_CHECK_SHAPES:
        rows = int(shape.split("x")[0])
        for n_vec in KERNEL_CHECK_N_VEC:
            size = n_vec * (rows + 3)
            blocks = []
            for _ in range(6):
                blocks.append(data[start:start + size])
                start += size
            int8_mm, int8_mv, int8_portable, float_mm, float_mv, float_portable = blocks
            what = (shape, n_vec)
            assert int8_mm.tobytes() == int8_mv.tobytes() == int8_portable.tobytes(), what
            assert float_mm.tobytes() == float_mv.tobytes(), what
            assert float_close(float_mm, float_portable), what
            if n_vec > 2:  # the zero vector: its int8 outputs untouched (-0.0 kept)
                assert int8_mm[2 * (rows + 3):3 * (rows + 3)].tobytes() == int8_portable[2 * (rows + 3):
                                                                                         3 * (rows + 3)].tobytes()
                assert np.signbit(int8_mm[2 * (rows + 3)])
            checked += 1
    assert start == data.size and checked == len(KERNEL_CHECK_SHAPES) * len(KERNEL_CHECK_N_VEC)


def test_lstm_edge_listen_under_qemu_arm_gives_the_demo_detections(builds):
    pcm = demo_pcm()
    spotter = KeywordSpotter(StreamingModel.load(KWS_DIR, backend="onnx"))
    expected = [d.to_dict() for d in spotter.detect(pcm)]
    out = run_program(builds, "armv7", "lstm-edge-listen", [str(builds["armv7"])], pcm.astype("<i2").tobytes())
    got = [json.loads(line) for line in out.stdout.decode().splitlines()]
    assert len(expected) >= 3 and [d["label"] for d in got] == [d["label"] for d in expected]  # 4 float, 3 int8
    for mine, theirs in zip(got, expected):
        assert abs(mine["start"] - theirs["start"]) < 1e-6 and abs(mine["end"] - theirs["end"]) < 1e-6
        assert abs(mine["score"] - theirs["score"]) <= 2e-4


FIRMWARE_STYLE_PROGRAM = r"""
#include <stdio.h>
#include "lstm_edge_model.h"
#include "model_int8_lec.h"
int main(void) {
    int status;
    float x[40], y[12];
    lem_model *model = lem_model_from_memory(lem_model_int8_lec, sizeof lem_model_int8_lec, &status);
    lem_stream *stream = model ? lem_stream_create(model, 1, &status) : NULL;
    if (stream == NULL) return 1;
    while (fread(x, sizeof x, 1, stdin) == 1) {
        if (lem_stream_push(stream, x, 1, y) != LEM_OK) return 1;
        fwrite(y, sizeof y, 1, stdout);
    }
    return 0;
}
"""


def test_const_array_header_runs_the_model_from_memory(builds, tmp_path):
    """model_int8_lec.h (for firmware without files): the same outputs as lstm-edge-run on the file."""
    folder = builds["armv7"]
    source = tmp_path / "firmware.c"
    source.write_text(FIRMWARE_STYLE_PROGRAM)
    binary = tmp_path / "firmware"
    subprocess.run(["arm-linux-gnueabihf-gcc", "-std=c99", "-O2", "-static", f"-I{folder}", "-o", str(binary),
                    str(source), str(folder / "liblstm_edge.a"), "-lm"], check=True, capture_output=True)
    frames = raw_frames(np.load(KWS_DIR / "reference" / "input.npy")[:50])
    from_header = subprocess.run(["qemu-arm", str(binary)], input=frames, capture_output=True, check=True).stdout
    from_file = run_program(builds, "armv7", "lstm-edge-run", ["--chunk", "1", "--precision", "int8", str(folder)],
                            frames).stdout
    assert len(from_header) == 50 * 12 * 4 and from_header == from_file
