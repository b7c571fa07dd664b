"""ONNX dynamic int8 error by weight option, on step models (two nn.LSTMCell layers; a causal conv then an
LSTMCell) and a sequence model (nn.LSTM), and per MatMul/Conv of the step models: which options and which ops
the int8 error comes from.

    python benchmarks/bench_onnx_int8_options.py

Error: rms(int8 - float) / std(float) of the outputs over one 300-step stream with the state carried, onnxruntime
on both sides (seeded random-weight models from tests/zoo.py). Results: benchmarks/results/onnx_int8_options.json.
"""

from __future__ import annotations

import collections
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from _common import save  # noqa: E402

STEPS = 300
MODELS = ("cell_step", "context_step", "feature_lstm")


def _stream(path: Path, manifest, inputs: list[np.ndarray]) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    state = {s.input: np.zeros([d if isinstance(d, int) else 1 for d in s.shape], np.float32) for s in manifest.states}
    ys = []
    for x in inputs:
        outputs = dict(zip(names, session.run(None, {manifest.input.name: x[None], **state})))
        ys.append(outputs[manifest.outputs[0].name])
        state = {s.input: outputs[s.output] for s in manifest.states}
    return np.concatenate([y.reshape(-1, y.shape[-1]) for y in ys])


def _error(y: np.ndarray, reference: np.ndarray) -> float:
    return float(np.sqrt(np.mean((y - reference) ** 2)) / reference.std())


def main() -> int:
    import onnx
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from lstm_edge.export import export
    from lstm_edge.runtime.manifest import Manifest

    import zoo

    torch.set_num_threads(1)
    results: dict[str, dict] = {}
    work = Path(tempfile.mkdtemp(prefix="onnx_int8_options_"))
    for name in MODELS:
        model, example = zoo.build(name)
        out = work / name
        export(model, example, out, formats=("onnx",), chunk_sizes=(10, 1))
        manifest = Manifest.load(out)
        float_path = out / manifest.file("onnx", "float").path
        prepared = out / "prepared.onnx"
        quant_pre_process(str(float_path), str(prepared), skip_symbolic_shape=True)
        rng = np.random.default_rng(5)
        inputs = ([rng.standard_normal(example.shape[1:]).astype(np.float32) for _ in range(STEPS)]
                  if manifest.kind == "step" else
                  [rng.standard_normal((STEPS, *example.shape[2:])).astype(np.float32)])
        reference = _stream(float_path, manifest, inputs)
        row: dict[str, dict] = {"options": {}, "per_matmul": {}}
        for per_channel in (False, True):
            for reduce_range in (False, True):
                path = out / f"int8_{per_channel}_{reduce_range}.onnx"
                quantize_dynamic(str(prepared), str(path), weight_type=QuantType.QInt8, per_channel=per_channel,
                                 reduce_range=reduce_range)
                key = f"per_channel={per_channel},reduce_range={reduce_range}"
                row["options"][key] = _error(_stream(path, manifest, inputs), reference)
                print(f"{name:13s} {key:40s} error {100 * row['options'][key]:6.2f}%")
        # One weighted op quantized at a time (shipped options), the rest float. onnxruntime 1.32 skips the
        # nodes that quant_pre_process fused (names ending MatMulAddFusion) when asked by name ("quantized": false).
        if manifest.kind == "step":
            graph = onnx.load(str(prepared)).graph
            initializers = {t.name: t.dims for t in graph.initializer}
            weighted = [n for n in graph.node if n.op_type in ("MatMul", "Gemm", "Conv")]
            for node in weighted:
                path = out / "one.onnx"
                quantize_dynamic(str(prepared), str(path), weight_type=QuantType.QInt8, per_channel=True,
                                 reduce_range=True, nodes_to_quantize=[node.name])
                ops = collections.Counter(n.op_type for n in onnx.load(str(path)).graph.node)
                integer = ops["MatMulInteger"] + ops["ConvInteger"]
                weight = next((list(initializers[i]) for i in node.input if i in initializers), None)
                row["per_matmul"][node.name] = {"weight_shape": weight, "quantized": integer == 1,
                                                "error": _error(_stream(path, manifest, inputs), reference)}
                print(f"  only {node.name:42s} weight {weight} integer={integer == 1} "
                      f"error {100 * row['per_matmul'][node.name]['error']:6.2f}%")
        results[name] = row
    path = save("onnx_int8_options", {"steps": STEPS, "metric": "rms(int8 - float) / std(float), onnxruntime",
                                      "results": results})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
