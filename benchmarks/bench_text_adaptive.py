"""The character language model with and without its adaptive part against the classic adaptive compressors on
held-out prose of another source: bits per character of the same characters, side by side in one run.

Test text (reserved for testing, never trained on or tuned on): the Debian FAQ (package ``debian-faq``, its plain
English text), ``--chars`` characters from ``--skip`` on (after the table of contents). The adaptive settings (order
5, learning rate 0.02, 2**19 slots per order) were chosen on other text (the licence texts of
``/usr/share/common-licenses``). Peers: 7-Zip's PPMd (``7z a -m0=PPMd -mx=9``, an adaptive context model; the
archive's own header counts too, about 0.1% here), ``xz -9`` and ``zstd -19``. Also: ``feed`` + ``suggest(3)`` per
keystroke with the adaptive part on, and the adaptive part's memory.

Needs: ``apt-get install debian-faq p7zip-full xz-utils zstd``.
Run: ``python benchmarks/bench_text_adaptive.py [--chars 80000]``; writes results/text_adaptive.json.
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from lstm_edge.runtime.model import StreamingModel  # noqa: E402
from lstm_edge.runtime.text import TextModel  # noqa: E402

from _common import save  # noqa: E402

FAQ = Path("/usr/share/doc/debian/FAQ/debian-faq.en.txt.gz")


def compressed_bits_per_char(data: bytes, chars: int, command: list[str]) -> float:
    return 8.0 * len(subprocess.run(command, input=data, stdout=subprocess.PIPE, check=True).stdout) / chars


def ppmd_bits_per_char(data: bytes, chars: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        source, archive = Path(tmp) / "text.txt", Path(tmp) / "text.7z"
        source.write_bytes(data)
        subprocess.run(["7z", "a", "-bd", "-m0=PPMd", "-mx=9", str(archive), str(source)], check=True,
                       stdout=subprocess.DEVNULL)
        return 8.0 * archive.stat().st_size / chars


def keystroke_ms(model: StreamingModel, warm_text: str, typed: str) -> float:
    text = TextModel(model, adaptive=True)
    text.feed(warm_text)
    times = []
    for char in typed:
        started = time.perf_counter()
        text.feed(char)
        text.suggest(3)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=Path("models/text/lm/export"))
    parser.add_argument("--chars", type=int, default=80_000)
    parser.add_argument("--skip", type=int, default=20_000)
    parser.add_argument("--backend", default="native")
    args = parser.parse_args()
    with gzip.open(FAQ, "rt", encoding="utf-8") as handle:
        text = handle.read()[args.skip:args.skip + args.chars]
    data = text.encode("utf-8")
    rows: dict[str, float] = {
        "7z PPMd -mx=9": ppmd_bits_per_char(data, len(text)),
        "xz -9": compressed_bits_per_char(data, len(text), ["xz", "-9", "-c"]),
        "zstd -19": compressed_bits_per_char(data, len(text), ["zstd", "-19", "-c", "-q"]),
    }
    report: dict = {"text": f"{FAQ} characters {args.skip}..{args.skip + len(text)}", "chars": len(text)}
    for precision in ("float", "int8"):
        model = StreamingModel.load(args.model_dir, backend=args.backend, precision=precision, threads=1)
        for adaptive in (False, True):
            started = time.perf_counter()
            result = TextModel(model, adaptive=adaptive).score(text)
            name = f"lstm-edge {precision}" + (" + adaptive" if adaptive else "")
            rows[name] = result
            report[f"{name} seconds"] = round(time.perf_counter() - started, 1)
            print(f"{name:32s} {result:.4f} bits/char", flush=True)
    model = StreamingModel.load(args.model_dir, backend=args.backend, precision="int8", threads=1)
    report["suggest_ms_median_adaptive_int8"] = round(keystroke_ms(model, text[:20_000], text[20_000:20_400]), 2)
    report["adaptive_memory_bytes"] = TextModel(model, adaptive=True).adaptive.memory_bytes  # type: ignore[union-attr]
    for name, value in rows.items():
        print(f"{name:32s} {value:.4f} bits/char")
    print(f"suggest with adaptation, median per keystroke: {report['suggest_ms_median_adaptive_int8']} ms; adaptive "
          f"memory {report['adaptive_memory_bytes'] / 2**20:.1f} MiB")
    report["bits_per_char"] = {name: round(value, 4) for name, value in rows.items()}
    save("text_adaptive", {"backend": args.backend, **report})


if __name__ == "__main__":
    main()
