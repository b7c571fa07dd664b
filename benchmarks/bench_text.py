"""Character language model: held-out bits per character vs xz -9 and zstd -19, int8 vs float, file sizes,
``suggest`` latency per keystroke, and greedy generation vs torch. One thread, one run, side by side.

Held-out text: the test files of the fortunes split (never read by training or checkpoint selection).
Run: ``python benchmarks/bench_text.py [--model models/text/lm] [--keystrokes 400]``; writes results/text.json.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from lstm_edge.recipes.text.corpus import DOCUMENT_SEPARATOR, VOCAB, split_by_file, tokenizer  # noqa: E402
from lstm_edge.runtime.manifest import Manifest  # noqa: E402
from lstm_edge.runtime.model import StreamingModel  # noqa: E402
from lstm_edge.runtime.text import TextModel  # noqa: E402

from _common import save  # noqa: E402

VARIANTS = (("onnx", "float"), ("onnx", "int8"), ("litert", "float"), ("litert", "int8"))
PROMPT = "The secret of success is"


def compressor_bits_per_char(data: bytes, command: list[str]) -> float:
    out = subprocess.run(command, input=data, stdout=subprocess.PIPE, check=True).stdout
    return 8.0 * len(out) / len(data)


def torch_greedy(weights_dir: Path, prompt: str, n: int) -> str:
    import torch

    from lstm_edge.recipes.text.model import load_model

    torch.set_num_threads(1)
    model, _ = load_model(weights_dir)
    ids = tokenizer().encode(DOCUMENT_SEPARATOR + prompt)
    out = []
    with torch.no_grad():
        logits, state = model.forward_with_state(torch.from_numpy(ids)[None], None)
        for _ in range(n):
            token = int(logits[0, -1].argmax())
            out.append(VOCAB[token])
            logits, state = model.forward_with_state(torch.tensor([[token]]), state)
    return "".join(out)


def keystroke_latency(model: StreamingModel, typed: str, k: int) -> dict[str, float]:
    """Per keystroke: feed one character, then suggest(k). Median / p90 milliseconds and calls made."""
    text = TextModel(model)
    text.feed(typed[:20])
    times = []
    for char in typed[20:]:
        start = time.perf_counter()
        text.feed(char)
        text.suggest(k)
        times.append((time.perf_counter() - start) * 1e3)
    times.sort()
    return {"median_ms": statistics.median(times), "p90_ms": times[int(0.9 * len(times))],
            "keystrokes": len(times)}


def score_memory(model: StreamingModel, text: str, sizes_mb: tuple[float, ...]) -> dict[str, dict[str, float]]:
    """Peak Python/numpy allocation (tracemalloc) while ``score_file`` streams files of the given sizes."""
    import tempfile
    import tracemalloc

    out = {}
    with tempfile.TemporaryDirectory() as folder:
        for size in sizes_mb:
            path = Path(folder) / f"{size}.txt"
            data = text.encode("utf-8")
            with open(path, "wb") as handle:
                for _ in range(int(size * 1e6 / len(data)) + 1):
                    handle.write(data)
            tracemalloc.start()
            started = time.perf_counter()
            result = TextModel(model).score_file(path)
            seconds = time.perf_counter() - started
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            out[f"{size}MB"] = {"chars": result["chars"], "peak_traced_bytes": peak, "seconds": seconds}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path(__file__).parents[1] / "models" / "text" / "lm")
    parser.add_argument("--keystrokes", type=int, default=400)
    parser.add_argument("-k", type=int, default=3)
    args = parser.parse_args()
    model_dir = args.model / "export"
    splits = split_by_file()
    test_text = splits.text("test")
    data = test_text.encode("utf-8")
    if len(data) != len(test_text):
        raise SystemExit("the cleaned test text should be ASCII (one byte per character)")
    results: dict = {"test_files": splits.files["test"], "test_chars": len(test_text),
                     "xz_-9_bits_per_char": compressor_bits_per_char(data, ["xz", "-9", "-c"]),
                     "zstd_-19_bits_per_char": compressor_bits_per_char(data, ["zstd", "-19", "-c"])}
    manifest = Manifest.load(model_dir)
    sizes = {f.key: f.bytes for f in manifest.files}
    results["file_bytes"] = sizes
    results["int8_size_ratio"] = {fmt: sizes[f"{fmt}/int8"] / sizes[f"{fmt}/float"] for fmt in ("onnx", "tflite")}
    expected = torch_greedy(args.model, PROMPT, 200)
    typed = test_text[1000:1000 + args.keystrokes + 20]
    rows = {}
    for backend, precision in VARIANTS:
        model = StreamingModel.load(model_dir, backend=backend, precision=precision, threads=1)
        name = f"{backend}/{precision}"
        started = time.perf_counter()
        bpc = TextModel(model).score(test_text)
        score_seconds = time.perf_counter() - started
        generator = TextModel(model)
        generator.feed(PROMPT)
        generated = generator.generate(200)
        same = next((i for i, (a, b) in enumerate(zip(generated, expected)) if a != b), 200)
        rows[name] = {"test_bits_per_char": bpc, "ratio_to_xz": bpc / results["xz_-9_bits_per_char"],
                      "ratio_to_zstd": bpc / results["zstd_-19_bits_per_char"], "score_seconds": score_seconds,
                      "greedy_200_identical_to_torch": generated == expected,
                      "greedy_chars_equal_to_torch_before_first_difference": same,
                      "suggest": keystroke_latency(model, typed, args.k)}
        print(name, {k: v for k, v in rows[name].items()}, flush=True)
    for backend in ("onnx", "litert"):
        rows[f"{backend}/int8"]["bits_per_char_increase_over_float"] = (
            rows[f"{backend}/int8"]["test_bits_per_char"] - rows[f"{backend}/float"]["test_bits_per_char"])
    results["variants"] = rows
    results["score_file_memory_onnx_int8"] = score_memory(
        StreamingModel.load(model_dir, backend="onnx", precision="int8"), test_text, (0.5, 5.0))
    print(results["score_file_memory_onnx_int8"], flush=True)
    results["greedy_prompt"] = PROMPT
    results["torch_greedy_200"] = expected
    results["suggest_k"] = args.k
    path = save("text", results)
    print(f"xz -9 {results['xz_-9_bits_per_char']:.3f}, zstd -19 {results['zstd_-19_bits_per_char']:.3f} "
          f"bits/char; int8 size ratio {results['int8_size_ratio']}; wrote {path}")


if __name__ == "__main__":
    main()
