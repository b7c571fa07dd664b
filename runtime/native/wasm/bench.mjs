// Speed of the WebAssembly runtime, the same code in a browser (bench.html) and in Node.js (benchmarks/bench_wasm.py):
// model pushes of 1 and 10 frames (microseconds per push) and whole pipelines over a recording in 100 ms pushes
// (keyword spotter: frontend + model + detector; recognizer: frontend + model + JavaScript decoder) as real-time
// factor (processing time / audio duration). Medians over rounds, after one warm-up round.
import { SpeechRecognizer } from "./asr.mjs";
import { KeywordSpotter, StreamingModel } from "./lstm-edge.mjs";
import { decodeWav } from "./wav.mjs";

async function bytesOf(url) {
  if (typeof process !== "undefined" && process.versions?.node && !/^https?:/.test(String(url))) {
    const { readFile } = await import("node:fs/promises");
    return new Uint8Array(await readFile(url));
  }
  return new Uint8Array(await (await fetch(url)).arrayBuffer());
}

/** The samples of a recording as the page reads them (wav.mjs) at 16 kHz. */
export async function readWav16(url) {
  return decodeWav(await bytesOf(url), 16000);
}

const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[sorted.length >> 1];
};

function pushMicroseconds(model, frames, repeats, rounds) {
  const stream = model.createStream({ maxChunk: frames });
  const x = new Float32Array(frames * model.inputWidth).map((_, i) => Math.sin(i * 0.37));
  for (let i = 0; i < 200; i++) stream.push(x);
  const samples = [];
  for (let r = 0; r < rounds; r++) {
    const began = performance.now();
    for (let i = 0; i < repeats; i++) stream.push(x);
    samples.push(((performance.now() - began) * 1000) / repeats);
  }
  stream.free();
  return median(samples);
}

function pipelineRtf(create, pcm, sampleRate, rounds) {
  const chunk = sampleRate / 10;
  const times = [];
  for (let r = 0; r <= rounds; r++) {
    const stream = create();
    const began = performance.now();
    for (let i = 0; i < pcm.length; i += chunk) stream.push(pcm.subarray(i, i + chunk));
    stream.flush();
    if (r > 0) times.push((performance.now() - began) / 1000);
  }
  return median(times) / (pcm.length / sampleRate);
}

/** {kws: {...}, asr: {...}}: push_us {int8|float: {T=1, T=10}}, rtf {int8, float}, us_per_100ms_push */
export async function benchmark({ kws, asr, kwsAudio, asrAudio, rounds = 9, repeats = 300, simd } = {}) {
  const out = { engine: typeof navigator !== "undefined" ? navigator.userAgent : `node ${process.version}` };
  for (const [name, url, audio, App] of [["kws", kws, kwsAudio, KeywordSpotter], ["asr", asr, asrAudio, SpeechRecognizer]]) {
    if (!url) continue;
    const pcm = await readWav16(audio);
    const entry = { push_us: {}, rtf: {}, us_per_100ms_push: {} };
    for (const precision of ["int8", "float"]) {
      const model = await StreamingModel.load(url, { precision, simd });
      entry.kernel = model.kernel;
      entry.push_us[precision] = { "T=1": pushMicroseconds(model, 1, repeats, rounds),
        "T=10": pushMicroseconds(model, 10, Math.max(repeats / 10, 10), rounds) };
      const app = new App(model);
      const rtf = pipelineRtf(() => app.createStream(), pcm, app.sampleRate, Math.max(3, rounds >> 1));
      entry.rtf[precision] = rtf;
      entry.us_per_100ms_push[precision] = rtf * 1e5;
    }
    entry.audio_seconds = pcm.length / 16000;
    out[name] = entry;
  }
  return out;
}
