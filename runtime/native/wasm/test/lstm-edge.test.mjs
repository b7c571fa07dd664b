// Unit tests of the WebAssembly module on Node.js (node --test), against a build folder made by
// `lstm-edge build-c MODEL_DIR --target wasm -o OUT` and the model directory's reference arrays:
//   LSTM_EDGE_WASM_BUILD=OUT LSTM_EDGE_MODEL_DIR=models/kws/export node --test runtime/native/wasm/test/
import assert from "node:assert/strict";
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { readNpy } from "./npy.mjs";

const build = process.env.LSTM_EDGE_WASM_BUILD;
const modelDir = process.env.LSTM_EDGE_MODEL_DIR;
if (!build || !modelDir) throw new Error("expected LSTM_EDGE_WASM_BUILD and LSTM_EDGE_MODEL_DIR in the environment");
const { StreamingModel, KeywordSpotter, LogMelFrontend, LstmEdgeError, Runtime } = await import(
  join(build, "lstm-edge.mjs"));
const { decodeWav } = await import(join(build, "wav.mjs"));
const manifest = JSON.parse(readFileSync(join(modelDir, "manifest.json"), "utf8"));
const reference = { input: readNpy(join(modelDir, "reference", "input.npy")),
  output: readNpy(join(modelDir, "reference", "output.npy")) };
const runtimes = { simd: await Runtime.load(build, { simd: true }), portable: await Runtime.load(build, { simd: false }) };

function run(model, input, chunk) {
  const stream = model.createStream();
  const width = model.inputWidth;
  const parts = [];
  for (let t = 0; t < input.length / width; t += chunk) parts.push(stream.push(input.subarray(t * width, (t + chunk) * width)));
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  stream.free();
  return out;
}

function argmaxAgreement(a, b, width) {
  let same = 0;
  const rows = a.length / width;
  for (let r = 0; r < rows; r++) {
    const row = (v) => v.subarray(r * width, (r + 1) * width);
    const best = (v) => row(v).indexOf(Math.max(...row(v)));
    same += best(a) === best(b) ? 1 : 0;
  }
  return same / rows;
}

test("float model: the reference output within the manifest's float tolerance", async () => {
  const model = await StreamingModel.load(modelDir, { precision: "float", runtime: runtimes.simd });
  const got = run(model, reference.input.data, 10);
  const want = reference.output.data;
  let diff = 0;
  let peak = 0;
  for (let i = 0; i < want.length; i++) {
    diff = Math.max(diff, Math.abs(got[i] - want[i]));
    peak = Math.max(peak, Math.abs(want[i]));
  }
  const tolerance = manifest.tolerances.float_max_abs_diff * (1 + peak); // the "scaled" rule of docs/manifest.md
  assert.equal(got.length, want.length);
  assert.ok(diff <= tolerance, `max |wasm - torch| ${diff} > ${tolerance}`);
});

test("int8 model: argmax agreement with the reference at the manifest's gate", async () => {
  const model = await StreamingModel.load(modelDir, { runtime: runtimes.simd });
  assert.equal(model.precision, "int8");
  const agreement = argmaxAgreement(run(model, reference.input.data, 10), reference.output.data, model.outputWidth);
  assert.ok(agreement >= manifest.tolerances.int8_argmax_agreement, `argmax agreement ${agreement}`);
});

for (const precision of ["int8", "float"]) {
  test(`${precision}: SIMD128 and portable kernels give bitwise the same outputs, for any chunking`, async () => {
    const simd = await StreamingModel.load(modelDir, { precision, runtime: runtimes.simd });
    const portable = await StreamingModel.load(modelDir, { precision, runtime: runtimes.portable });
    assert.equal(simd.kernel, "wasm-simd128");
    assert.equal(portable.kernel, "portable");
    const input = reference.input.data.subarray(0, 200 * simd.inputWidth);
    const whole = run(simd, input, 200);
    assert.deepEqual(run(portable, input, 200), whole);
    for (const chunk of [1, 7, 10, 33]) assert.deepEqual(run(simd, input, chunk), whole, `chunk ${chunk}`);
  });
}

test("streams on one model are independent; reset equals a fresh stream", async () => {
  const model = await StreamingModel.load(modelDir, { runtime: runtimes.simd });
  const w = model.inputWidth;
  const a = reference.input.data.subarray(0, 50 * w);
  const b = reference.input.data.subarray(300 * w, 350 * w);
  const [alone, other] = [run(model, a, 5), run(model, b, 5)];
  const first = model.createStream();
  const second = model.createStream();
  const outA = [];
  const outB = [];
  for (let t = 0; t < 50; t += 5) {
    outA.push(...first.push(a.subarray(t * w, (t + 5) * w)));
    outB.push(...second.push(b.subarray(t * w, (t + 5) * w)));
  }
  assert.deepEqual(Float32Array.from(outA), alone);
  assert.deepEqual(Float32Array.from(outB), other);
  first.reset();
  assert.deepEqual(first.push(a), alone);
  assert.ok(first.getState().some((v) => v !== 0));
});

test("the frontend gives the manifest's reference features", async () => {
  const model = await StreamingModel.load(modelDir, { runtime: runtimes.simd });
  const pcm = readNpy(join(modelDir, "reference", "frontend_input.npy")).data;
  const want = readNpy(join(modelDir, "reference", "frontend_output.npy")).data;
  const frontend = new LogMelFrontend(model);
  const got = Float32Array.from([...frontend.push(pcm.subarray(0, 1234)), ...frontend.push(pcm.subarray(1234))]);
  assert.equal(got.length, want.length);
  let diff = 0;
  for (let i = 0; i < want.length; i++) diff = Math.max(diff, Math.abs(got[i] - want[i]));
  assert.ok(diff <= 1e-4, `max |wasm - numpy| feature difference ${diff}`);
});

test("keyword spotter: detections do not depend on how the audio is chunked, int16 or float", async () => {
  const pcm = decodeWav(readFileSync(process.env.LSTM_EDGE_DEMO_WAV ?? join(modelDir, "..", "demo.wav")), 16000);
  assert.ok(pcm instanceof Int16Array);
  const spotter = await KeywordSpotter.load(modelDir, { runtime: runtimes.simd });
  const detect = (chunk, asFloat) => {
    const stream = spotter.createStream();
    const audio = asFloat ? Float32Array.from(pcm, (v) => v / 32768) : pcm;
    const out = [];
    for (let i = 0; i < audio.length; i += chunk) out.push(...stream.push(audio.subarray(i, i + chunk)));
    out.push(...stream.flush());
    stream.free();
    return out;
  };
  const reference100ms = detect(1600, false);
  assert.ok(reference100ms.length >= 2, JSON.stringify(reference100ms));
  for (const d of reference100ms) {
    assert.deepEqual(Object.keys(d), ["label", "start", "end", "score"]);
    assert.ok(spotter.labels.includes(d.label) && !d.label.startsWith("_"));
  }
  assert.deepEqual(detect(333, false), reference100ms);
  assert.deepEqual(detect(16000, true), reference100ms);
});

test("bad input and a changed weight file are refused with what was expected", async () => {
  const model = await StreamingModel.load(modelDir, { runtime: runtimes.simd });
  const stream = model.createStream();
  assert.throws(() => stream.push(new Float32Array(model.inputWidth + 1)),
    (e) => e instanceof LstmEdgeError && /expected a multiple of \d+ values/.test(e.message));
  assert.throws(() => stream.push([1, 2, 3]), /expected a Float32Array, got Array/);
  const nan = new Float32Array(model.inputWidth).fill(Number.NaN);
  assert.throws(() => stream.push(nan), LstmEdgeError);
  const spotter = await KeywordSpotter.load(modelDir, { runtime: runtimes.simd });
  assert.throws(() => spotter.createStream().push(new Float64Array(10)), /expected an Int16Array or Float32Array/);
  await assert.rejects(StreamingModel.load(modelDir, { precision: "int4" }), /expected "int8" or "float"/);

  const copy = mkdtempSync(join(tmpdir(), "lstm-edge-wasm-"));
  copyFileSync(join(modelDir, "manifest.json"), join(copy, "manifest.json"));
  const weights = readFileSync(join(modelDir, "model.int8.lec"));
  weights[weights.length >> 1] ^= 0x40;
  writeFileSync(join(copy, "model.int8.lec"), weights);
  await assert.rejects(StreamingModel.load(copy, { runtime: runtimes.simd }),
    (e) => e instanceof LstmEdgeError && /expected sha256 [0-9a-f]{64} \(manifest.json\), got [0-9a-f]{64}/.test(e.message));
});
