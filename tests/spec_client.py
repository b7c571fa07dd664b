"""A model-directory client written from docs/manifest.md alone: numpy plus onnxruntime or ai_edge_litert.

It deliberately imports nothing from lstm_edge: it is what an app developer writes from the spec. Usage:

    python tests/spec_client.py MODEL_DIR OUT.npz [--chunk 7] [--asr UTTERANCES.npz]

For every ONNX and TFLite file of the directory it checks the sha256, streams the reference input through the file
(chunks of ``--chunk`` frames, state carried from the manifest's initial state; TFLite chunks composed from the chunk
signatures; static int8 I/O quantized with the manifest's scales) and stores the outputs as ``<format>/<precision>``
(C weight files are for lstm-edge's C library: skipped). A TFLite file with ``batch_signatures`` also streams B copies
of the reference (B its largest streams per call; copy k rolled by 37 k frames) through the B-stream signatures of
its companion ``batch_file`` (sha256 checked) at once, states joined along their ``batch_axis``, and stores them as
``<format>/<precision>/batch`` ([B, frames, ...]); copy 0 must equal the one-stream output within 1e-6. With a
frontend it computes log-mel features of ``reference.frontend_input`` as ``features``. It exits 1 when its own
results are off the directory's reference arrays (features 1e-4; float outputs: the manifest's tolerance).

``--asr``: speech-recognition utterances, each a final text ``text_<i>`` with either the utterance's model output
frames ``log_probs_<i>`` or its audio ``pcm_<i>`` (one utterance from the initial state: the client computes the
features, stacks them and runs the float ONNX file). For each it applies ``extra.asr.decoder.rejection`` and stores
``asr/disagreement_<i>`` and ``asr/rejected_<i>``.

``--text FILE`` (language models): the UTF-8 text's bits per character from a fresh stream (primed with
``extra.text.start_text``), through the float ONNX file, with ``extra.text.adaptive``'s context mixing when the
manifest has it, stored as ``text/bits_per_char``.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_reference(model_dir: Path, reference: dict, key: str) -> np.ndarray:
    path = model_dir / reference[key]
    if sha256(path) != reference[key + "_sha256"]:
        raise SystemExit(f"{path}: sha256 does not match the manifest")
    return np.load(path, allow_pickle=False)


# ------------------------------------------------------------------ frontend (docs/manifest.md, "frontend")
def log_mel(pcm: np.ndarray, fe: dict) -> np.ndarray:
    assert fe["type"] == "log_mel" and fe["framing"] == "valid" and fe["window"] == "hann_periodic"
    assert fe["spectrum"] == "power" and fe["mel_scale"] == "htk" and fe["mel_norm"] == "none"
    assert fe["log"] == "natural" and fe["log_floor_rule"] == "max" and fe["pre_emphasis"] == 0 and fe["dither"] == 0
    x = pcm.astype(np.float64) * fe["int16_scale"] if pcm.dtype == np.int16 else pcm.astype(np.float64)
    win, hop, n_fft, n_mels = fe["win_length"], fe["hop_length"], fe["n_fft"], fe["n_mels"]
    n_frames = 0 if len(x) < win else (len(x) - win) // hop + 1
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)
    frames = np.stack([x[i * hop:i * hop + win] * window for i in range(n_frames)])
    power = np.abs(np.fft.rfft(frames, n=n_fft, axis=1)) ** 2
    def mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    def hz(m):
        return 700.0 * (10.0 ** (np.asarray(m) / 2595.0) - 1.0)

    edges = hz(np.linspace(mel(fe["f_min"]), mel(fe["f_max"]), n_mels + 2))
    bins = np.arange(n_fft // 2 + 1) * fe["sample_rate"] / n_fft
    filters = np.zeros((n_mels, len(bins)))
    for m in range(n_mels):
        lo, mid, hi = edges[m], edges[m + 1], edges[m + 2]
        filters[m] = np.maximum(0.0, np.minimum((bins - lo) / (mid - lo), (hi - bins) / (hi - mid)))
    return np.log(np.maximum(power @ filters.T, fe["log_floor"])).astype(np.float32)


# ------------------------------------------------------------------ model
def initial_state(spec: dict) -> np.ndarray:
    if spec["init"] == "zeros":
        return np.zeros(spec["shape"], dtype=spec["dtype"])
    return np.asarray(spec["init"], dtype=spec["dtype"]).reshape(spec["shape"])  # row-major (C order)


def check_output(entry: dict) -> str | None:
    checks = entry.get("checks") or {}
    return checks.get("nonfinite_any") or checks.get("nonfinite_input")


def refuse_nonfinite(flag: np.ndarray, x: np.ndarray, y: np.ndarray, state: list[np.ndarray]) -> None:
    """The graph's check output: the sum of x, y and the new state (finite when all are finite)."""
    if np.isfinite(flag):
        return
    if not all(np.isfinite(a).all() for a in [x, y, *state]):  # a finite sum can overflow: scan to be sure
        raise SystemExit("non-finite input or result: the call is refused, the state kept")


class OnnxRunner:
    def __init__(self, path: Path, manifest: dict, entry: dict) -> None:
        import onnxruntime

        self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.x, self.y, self.states = manifest["inputs"][0], manifest["outputs"][0], manifest["states"]
        self.check = check_output(entry)
        self.fixed = None

    def run(self, x: np.ndarray, state: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        feed = {self.x["name"]: x, **{s["input"]: v for s, v in zip(self.states, state)}}
        names = [self.y["name"]] + [s["output"] for s in self.states] + ([self.check] if self.check else [])
        out = self.session.run(names, feed)
        y, new_state = out[0], out[1:1 + len(self.states)]
        if self.check:
            refuse_nonfinite(out[-1], x, y, new_state)
        return y, new_state


class LiteRTRunner:
    def __init__(self, path: Path, manifest: dict, entry: dict, streams: int = 1) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=str(path))
        self.x, self.y, self.states = manifest["inputs"][0], manifest["outputs"][0], manifest["states"]
        self.check = check_output(entry)
        io = (entry.get("quantization") or {}).get("io_quantization") or {}
        signatures = entry["signatures"] if streams == 1 else entry["batch_signatures"][str(streams)]
        # chunk length -> (signature key, runner, that signature's I/O quantization or {})
        if manifest["kind"] == "step":
            (key,) = signatures.values()
            self.by_length = {1: (key, self.interpreter.get_signature_runner(key), io.get(key, {}))}
        else:
            self.by_length = {int(n): (k, self.interpreter.get_signature_runner(k), io.get(k, {}))
                              for n, k in signatures.items()}
        self.fixed = sorted(self.by_length, reverse=True)
        self.step = manifest["kind"] == "step"

    def _call(self, length: int, x: np.ndarray, state: list[np.ndarray]):
        key, runner, io = self.by_length[length]
        details = runner.get_input_details()
        feed = {self.x["name"]: x, **{s["input"]: v for s, v in zip(self.states, state)}}
        for name, value in feed.items():
            if name in io:  # static int8: q = clip(round(v / scale) + zero_point)
                q = io[name]
                info = np.iinfo(q["dtype"])
                quantized = np.rint(value / q["scale"]) + q["zero_point"]
                feed[name] = np.clip(quantized, info.min, info.max).astype(q["dtype"])
            elif details[name]["dtype"] != value.dtype:  # token ids: int32 in the file
                feed[name] = value.astype(details[name]["dtype"])
        out = runner(**feed)
        names = [self.y["name"]] + [s["output"] for s in self.states]
        values = []
        for name in names:
            v = out[name]
            if name in io:  # v = (q - zero_point) * scale
                v = (v.astype(np.float32) - io[name]["zero_point"]) * np.float32(io[name]["scale"])
            values.append(v)
        if self.check and self.x["name"] not in io:  # static int8 input: checked before quantizing instead
            refuse_nonfinite(out[self.check], x, values[0], values[1:])
        elif not np.isfinite(x).all():
            raise SystemExit("non-finite input")
        return values[0], values[1:]

    def run(self, x: np.ndarray, state: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        if self.step:  # step model: one signature at one fixed shape
            return self._call(self.fixed[0], x, state)
        pieces, start, total = [], 0, x.shape[1]
        for length in self.fixed:  # largest first: 23 = 2 x 10 + 3 x 1
            while total - start >= length:
                y, state = self._call(length, x[:, start:start + length], state)
                pieces.append(y)
                start += length
        return np.concatenate(pieces, axis=1), state


# ------------------------------------------------------------------ speech recognition (docs/manifest.md, "extra.asr")
def best_path_text(log_probs: np.ndarray, tokens: list, blank: int) -> str:
    """Most probable token per frame (lowest index on a tie), runs merged, blanks dropped, single spaces."""
    chars, previous = [], None
    for token in np.argmax(log_probs, axis=1).tolist():
        if token != previous and token != blank:
            chars.append(tokens[token])
        previous = token
    return " ".join(word for word in "".join(chars).split(" ") if word)


def levenshtein(a: str, b: str) -> int:
    table = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        diagonal, table[0] = table[0], i
        for j in range(1, len(b) + 1):
            diagonal, table[j] = table[j], min(table[j] + 1, table[j - 1] + 1, diagonal + (a[i - 1] != b[j - 1]))
    return table[len(b)]


def rejection(log_probs: np.ndarray, text: str, asr: dict) -> tuple[float, bool]:
    """(disagreement, rejected) of a final text over its utterance's frames."""
    best = best_path_text(log_probs, asr["tokens"], asr["blank"])
    longest = max(len(text), len(best))
    disagreement = levenshtein(text, best) / longest if longest else 0.0
    rule = asr.get("decoder", {}).get("rejection")
    if rule is None:
        return disagreement, False
    assert rule["method"] == "best_path_disagreement"
    return disagreement, disagreement > rule["max_disagreement"]


def asr_log_probs(model_dir: Path, manifest: dict, pcm: np.ndarray, chunk: int) -> np.ndarray:
    """One utterance from the initial state: log-mel features, frame stacking, the float ONNX file."""
    asr = manifest["extra"]["asr"]
    assert asr.get("output", "log_probabilities") == "log_probabilities"
    features = log_mel(pcm, manifest["frontend"])
    stack = asr.get("frame_stack", 1)
    n = len(features) // stack
    x = features[:n * stack].reshape(n, features.shape[1] * stack)
    (entry,) = [f for f in manifest["files"] if f["format"] == "onnx" and f["precision"] == "float"]
    return stream(OnnxRunner(model_dir / entry["path"], manifest, entry), manifest, x, chunk).astype(np.float64)


def stream(runner, manifest: dict, data: np.ndarray, chunk: int, batched: bool = False) -> np.ndarray:
    state = [initial_state(s) for s in manifest["states"]]
    if batched:  # data [B, frames, ...]: B streams, states joined on batch_axis
        state = [np.concatenate([v] * len(data), axis=s["batch_axis"]) for v, s in zip(state, manifest["states"])]
        outputs = []
        for start in range(0, data.shape[1], chunk):
            y, state = runner.run(data[:, start:start + chunk], state)
            outputs.append(y)
        return np.concatenate(outputs, axis=1)
    outputs = []
    if manifest["kind"] == "step":
        for row in data:
            y, state = runner.run(row[np.newaxis], state)
            outputs.append(y[0])
        return np.stack(outputs)
    for start in range(0, len(data), chunk):
        y, state = runner.run(data[np.newaxis, start:start + chunk], state)
        outputs.append(y[0])
    return np.concatenate(outputs)


def token_ids(text: str, tokenizer: dict) -> np.ndarray:
    if tokenizer["type"] == "bytes":
        return np.frombuffer(text.encode("utf-8"), np.uint8).astype(np.int64)
    index = {char: i for i, char in enumerate(tokenizer["vocab"])}
    return np.array([index.get(char, tokenizer["unknown_id"]) for char in text], np.int64)


def log_softmax(rows: np.ndarray) -> np.ndarray:
    rows = rows.astype(np.float64) - rows.max(axis=-1, keepdims=True)
    return rows - np.log(np.exp(rows).sum(axis=-1, keepdims=True))


def text_bits_per_char(model_dir: Path, manifest: dict, text: str, chunk: int) -> float:
    """docs/manifest.md, "Text models": priming, then the model's (and the adaptive part's) probability of each
    token."""
    settings = manifest["extra"].get("text", {})
    entry = next(f for f in manifest["files"] if f["format"] == "onnx" and f["precision"] == "float")
    runner = OnnxRunner(model_dir / entry["path"], manifest, entry)
    start = token_ids(settings.get("start_text", ""), manifest["tokenizer"])
    ids = token_ids(text, manifest["tokenizer"])
    vocab = manifest["outputs"][0]["shape"][-1]
    y = stream(runner, manifest, np.concatenate([start, ids]), chunk)
    first = y[len(start) - 1:len(start)] if len(start) else np.zeros((1, vocab), np.float32)
    model_log_probs = log_softmax(np.concatenate([first, y[len(start):len(start) + len(ids) - 1]]))
    adaptive = settings.get("adaptive")
    if adaptive is None:
        return float(-model_log_probs[np.arange(len(ids)), ids].sum() / np.log(2) / len(ids))
    order, bits, rate = adaptive["max_order"], adaptive["table_bits"], adaptive["learning_rate"]
    counts = np.zeros((order, 2 ** bits), np.int64)
    checks = np.zeros((order, 2 ** bits), np.int64)
    order0 = np.zeros(vocab, np.int64)
    w = np.array([1.0, 0.0])
    tokens = np.arange(vocab, dtype=np.uint64)
    total_bits = 0.0
    for t, x in enumerate(ids.tolist()):
        slots, checks_of = [], []
        h = 0
        for k in range(1, min(order, t) + 1):  # the contexts that exist
            previous = int(ids[t - k]) + 1
            h = (previous * 2654435761) % 2**32 if k == 1 else ((h ^ previous) * 2654435761 + k) % 2**32
            g = ((np.uint64(h) ^ (((tokens + 1) * 2654435769) % 2**32)) * 2246822507) % 2**32
            slots.append((g >> np.uint64(32 - bits)).astype(np.int64))
            checks_of.append((((g * 3266489909) % 2**32) >> np.uint64(24)).astype(np.int64))
        q = np.full(vocab, 1.0 / vocab)
        for n in [order0] + [np.where(checks[j][slots[j]] == checks_of[j], counts[j][slots[j]], 0)
                             for j in range(len(slots))]:
            if n.sum() == 0:
                break
            d = np.count_nonzero(n)
            q = (n + d * q) / (n.sum() + d)
        z = np.stack([np.maximum(model_log_probs[t], np.log(1e-12)), np.maximum(np.log(q), np.log(1e-12))])
        p = log_softmax(w @ z)
        total_bits -= p[x] / np.log(2)
        w = w + rate * (z[:, x] - z @ np.exp(p))
        for j in range(len(slots)):
            slot, check = slots[j][x], checks_of[j][x]
            if checks[j][slot] != check:
                checks[j][slot], counts[j][slot] = check, 0
            elif counts[j][slot] == 65535:
                mine = slots[j][checks[j][slots[j]] == checks_of[j]]
                counts[j][mine] //= 2
            counts[j][slot] += 1
        if order0[x] == 65535:
            order0 //= 2
        order0[x] += 1
    return total_bits / len(ids)


def main(argv: list[str]) -> int:
    model_dir, out_path = Path(argv[0]), Path(argv[1])
    chunk = int(argv[argv.index("--chunk") + 1]) if "--chunk" in argv else 7
    manifest = json.loads((model_dir / "manifest.json").read_text())
    if manifest["schema"] != "lstm-edge/manifest" or manifest["schema_version"] > 2:
        raise SystemExit("not a manifest this client reads")
    reference = manifest["reference"]
    results: dict[str, np.ndarray] = {}
    failures = []
    if manifest.get("frontend"):
        features = log_mel(load_reference(model_dir, reference, "frontend_input"), manifest["frontend"])
        expected = load_reference(model_dir, reference, "frontend_output")
        results["features"] = features
        if features.shape != expected.shape or np.abs(features - expected).max() > 1e-4:
            failures.append("features")
    data = load_reference(model_dir, reference, "input")
    torch_output = load_reference(model_dir, reference, "output")
    for entry in manifest["files"]:
        if entry["format"] == "c":
            continue
        path = model_dir / entry["path"]
        if sha256(path) != entry["sha256"]:
            raise SystemExit(f"{path}: sha256 does not match the manifest")
        runner = (OnnxRunner if entry["format"] == "onnx" else LiteRTRunner)(path, manifest, entry)
        y = stream(runner, manifest, data, chunk)
        results[f"{entry['format']}/{entry['precision']}"] = y
        if entry.get("batch_signatures"):
            companion = model_dir / entry["batch_file"]["path"]
            if sha256(companion) != entry["batch_file"]["sha256"]:
                raise SystemExit(f"{companion}: sha256 does not match the manifest's batch_file")
            streams = max(int(n) for n in entry["batch_signatures"])
            copies = np.stack([np.roll(data, 37 * k, axis=0) for k in range(streams)])
            batch = stream(LiteRTRunner(companion, manifest, entry, streams), manifest, copies, chunk, batched=True)
            results[f"{entry['format']}/{entry['precision']}/batch"] = batch
            if not np.abs(batch[0] - y).max() <= 1e-6:
                failures.append(f"{entry['format']}/{entry['precision']} stream 0 of {streams} vs alone")
        bound = manifest["tolerances"]["float_max_abs_diff"] * (1.0 + float(np.abs(torch_output).max()))
        if entry["precision"] == "float" and not np.abs(y - torch_output).max() <= bound:
            failures.append(f"{entry['format']}/float vs reference output")
    if "--asr" in argv:
        with np.load(argv[argv.index("--asr") + 1]) as utterances:
            for key in [k for k in utterances.files if k.startswith("text_")]:
                i = key[len("text_"):]
                if f"log_probs_{i}" in utterances.files:
                    log_probs = utterances[f"log_probs_{i}"].astype(np.float64)
                else:
                    log_probs = asr_log_probs(model_dir, manifest, utterances[f"pcm_{i}"], chunk)
                disagreement, rejected = rejection(log_probs, str(utterances[key]), manifest["extra"]["asr"])
                results[f"asr/disagreement_{i}"] = np.float64(disagreement)
                results[f"asr/rejected_{i}"] = np.bool_(rejected)
    if "--text" in argv:
        text = Path(argv[argv.index("--text") + 1]).read_text(encoding="utf-8")
        results["text/bits_per_char"] = np.float64(text_bits_per_char(model_dir, manifest, text, chunk))
    np.savez(out_path, **results)
    if failures:
        print("off the reference arrays:", ", ".join(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
