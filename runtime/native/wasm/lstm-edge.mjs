// lstm-edge in the browser and Node.js: the C runtime compiled to WebAssembly (lstm_edge.wasm), behind the shape of
// the Python API. No framework, no network beyond the model directory's own files.
//
//   import { StreamingModel, KeywordSpotter } from "./lstm-edge.mjs";
//   const model = await StreamingModel.load("model/");           // manifest.json + model.int8.lec, sha256 checked
//   const stream = model.createStream();                          // owns the state; many per model
//   const y = stream.push(features);                              // Float32Array [T * inputWidth] -> [T * outputWidth]
//   const spotter = await KeywordSpotter.load("model/");
//   const ks = spotter.createStream();
//   for (const d of ks.push(int16OrFloat32Pcm)) console.log(JSON.stringify(d)); // {label, start, end, score}
//   ks.flush();                                                   // a detection still open at the end of the audio
//
// A model is one WebAssembly instance (its own memory); streams allocate inside it and must be free()d when a page
// makes many. Errors are LstmEdgeError with what was expected and what came.

export class LstmEdgeError extends Error {
  constructor(message) {
    super(message);
    this.name = "LstmEdgeError";
  }
}

const isNode = typeof process !== "undefined" && process.versions != null && process.versions.node != null;
// lstm_edge.runtime.kws.DetectorConfig's defaults, used for the fields a manifest's detector section leaves out
const DETECTOR_DEFAULTS = { threshold: 0.6, smoothing_frames: 8, refractory_s: 0.6, max_event_s: 1.0,
  onset_level: 0.2, lookback_s: 1.2 };
const CHUNK_SECONDS = 0.1;

async function readBytes(url) {
  const text = String(url);
  if (isNode && !/^https?:/.test(text)) {
    const { readFile } = await import("node:fs/promises");
    const { fileURLToPath } = await import("node:url");
    return new Uint8Array(await readFile(text.startsWith("file:") ? fileURLToPath(text) : text));
  }
  const response = await fetch(text);
  if (!response.ok) throw new LstmEdgeError(`${text}: expected HTTP 200, got ${response.status}`);
  return new Uint8Array(await response.arrayBuffer());
}

function join(base, name) {
  const text = String(base);
  return text.endsWith("/") ? text + name : `${text}/${name}`;
}

async function sha256Hex(bytes) {
  if (globalThis.crypto?.subtle == null && isNode) { // Node.js 18 (Debian 12's) has no global Web Crypto
    const { createHash } = await import("node:crypto");
    return createHash("sha256").update(bytes).digest("hex");
  }
  if (globalThis.crypto?.subtle == null) {
    throw new LstmEdgeError("checking the weight file: expected Web Crypto (a secure context: https:// or localhost), "
      + "got none");
  }
  const digest = await globalThis.crypto.subtle.digest("SHA-256", bytes);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** SIMD128 in this engine: a one-function module using an i8x16 instruction validates. */
export function hasSimd128() {
  const probe = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 10, 1, 8, 0,
    65, 0, 253, 15, 253, 98, 11]);
  return WebAssembly.validate(probe);
}

// The module is a WASI reactor that never reads files, the clock or the environment on these paths; the imports it
// still names (libc's stdio, getenv) get an empty environment and "not supported".
function wasiImports(memory) {
  const ENOSYS = 52;
  return new Proxy({
    environ_sizes_get: (count, size) => {
      const view = new DataView(memory().buffer);
      view.setUint32(count, 0, true);
      view.setUint32(size, 0, true);
      return 0;
    },
    environ_get: () => 0,
    proc_exit: (code) => { throw new LstmEdgeError(`the WebAssembly module exited with status ${code}`); },
  }, { get: (target, name) => target[name] ?? (() => ENOSYS) });
}

/** The compiled module (SIMD128 where the engine has it) from a folder, instantiated once per model. */
export class Runtime {
  static async load(baseUrl = new URL(".", import.meta.url), { simd = hasSimd128() } = {}) {
    const bytes = await readBytes(join(baseUrl, simd ? "lstm_edge.wasm" : "lstm_edge_portable.wasm"));
    return new Runtime(await WebAssembly.compile(bytes));
  }

  constructor(module) {
    this.module = module;
  }

  /** A fresh instance: its own memory, heap and kernels. */
  async instantiate() {
    let instance = null;
    instance = await WebAssembly.instantiate(this.module,
      { wasi_snapshot_preview1: wasiImports(() => instance.exports.memory) });
    instance.exports._initialize();
    return new Heap(instance.exports);
  }
}

/** Calls into one instance, with its memory seen through fresh views (memory.grow detaches the old ones). */
class Heap {
  constructor(exports) {
    this.c = exports;
  }

  get buffer() { return this.c.memory.buffer; }

  alloc(bytes) {
    const ptr = this.c.lew_malloc(Math.max(bytes, 8));
    if (ptr === 0) throw new LstmEdgeError(`out of WebAssembly memory: expected ${bytes} free bytes`);
    return ptr;
  }

  free(ptr) { this.c.lew_free(ptr); }

  string(ptr) {
    const bytes = new Uint8Array(this.buffer, ptr);
    const end = bytes.indexOf(0);
    return new TextDecoder().decode(bytes.subarray(0, end));
  }

  cString(text) {
    const encoded = new TextEncoder().encode(text);
    const ptr = this.alloc(encoded.length + 1);
    new Uint8Array(this.buffer, ptr, encoded.length + 1).set([...encoded, 0]);
    return ptr;
  }

  f32(ptr, n) { return new Float32Array(this.buffer, ptr, n); }

  i32(ptr) { return new Int32Array(this.buffer, ptr, 1)[0]; }
}

function fileEntry(manifest, precision) {
  const entry = (manifest.files || []).find((f) => f.format === "c" && f.precision === precision);
  if (entry == null) {
    const have = (manifest.files || []).filter((f) => f.format === "c").map((f) => f.precision);
    throw new LstmEdgeError(`manifest: expected a C weight file of precision ${precision}, got ${
      have.length ? have.join(", ") : "none (add them with: lstm-edge add-c MODEL_DIR)"}`);
  }
  return entry;
}

/** A loaded model: immutable, shared by its streams (lem_model). */
export class StreamingModel {
  /**
   * Load a model directory (a URL in the browser, a path or file: URL in Node.js): its manifest.json and C weight
   * file of `precision` ("int8", the default, or "float"), checked against the manifest's sha256.
   */
  static async load(modelUrl, { precision = "int8", runtime = null, simd } = {}) {
    if (precision !== "int8" && precision !== "float") {
      throw new LstmEdgeError(`precision: expected "int8" or "float", got ${JSON.stringify(precision)}`);
    }
    const manifest = JSON.parse(new TextDecoder().decode(await readBytes(join(modelUrl, "manifest.json"))));
    const entry = fileEntry(manifest, precision);
    const weights = await readBytes(join(modelUrl, entry.path));
    const digest = await sha256Hex(weights);
    if (entry.sha256 && digest !== entry.sha256) {
      throw new LstmEdgeError(`${entry.path}: expected sha256 ${entry.sha256} (manifest.json), got ${digest}`);
    }
    const loaded = runtime ?? await Runtime.load(undefined, simd === undefined ? {} : { simd });
    return new StreamingModel(await loaded.instantiate(), manifest, weights, precision);
  }

  constructor(heap, manifest, weights, precision) {
    this.heap = heap;
    this.manifest = manifest;
    this.precision = precision;
    const c = heap.c;
    const data = heap.alloc(weights.length);
    new Uint8Array(heap.buffer, data, weights.length).set(weights);
    const status = heap.alloc(4);
    this.ptr = c.lem_model_from_memory(data, weights.length, status);
    const code = heap.i32(status);
    heap.free(data);
    heap.free(status);
    if (this.ptr === 0) {
      throw new LstmEdgeError(`${precision} weight file: ${heap.string(c.lem_status_string(code))} (${
        heap.string(c.lem_last_error())})`);
    }
    this.inputWidth = c.lem_model_input_width(this.ptr);
    this.outputWidth = c.lem_model_output_width(this.ptr);
    this.stateSize = c.lem_model_state_size(this.ptr);
    this.kernel = heap.string(c.lem_kernel_name());
    this.weightBytes = c.lem_model_bytes(this.ptr);
  }

  /** A stream at the initial state that takes up to maxChunk frames per internal step. */
  createStream({ maxChunk = 16 } = {}) {
    return new ModelStream(this, maxChunk);
  }

  describe() {
    return `${this.manifest.name} (${this.precision}, C runtime in WebAssembly, ${this.kernel} kernels)`;
  }
}

/** One stream over a model: owns the recurrent state (lem_stream). */
export class ModelStream {
  constructor(model, maxChunk) {
    const { heap } = model;
    this.model = model;
    this.maxChunk = maxChunk;
    const status = heap.alloc(4);
    this.ptr = heap.c.lem_stream_create(model.ptr, maxChunk, status);
    const code = heap.i32(status);
    heap.free(status);
    if (this.ptr === 0) throw new LstmEdgeError(`stream: ${heap.string(heap.c.lem_status_string(code))}`);
    this.capacity = 0;
    this.x = 0;
    this.y = 0;
  }

  _reserve(frames) {
    if (frames <= this.capacity) return;
    const { heap } = this.model;
    if (this.x) heap.free(this.x);
    if (this.y) heap.free(this.y);
    this.x = heap.alloc(frames * this.model.inputWidth * 4);
    this.y = heap.alloc(frames * this.model.outputWidth * 4);
    this.capacity = frames;
  }

  /** features: Float32Array of T * inputWidth values (row-major [T, inputWidth]); returns [T * outputWidth]. */
  push(features) {
    const { inputWidth, outputWidth, heap } = this.model;
    if (!(features instanceof Float32Array)) {
      throw new LstmEdgeError(`features: expected a Float32Array, got ${features?.constructor?.name ?? typeof features}`);
    }
    if (features.length % inputWidth !== 0) {
      throw new LstmEdgeError(`features: expected a multiple of ${inputWidth} values (frames x features), got ${
        features.length}`);
    }
    const frames = features.length / inputWidth;
    if (frames === 0) return new Float32Array(0);
    this._reserve(frames);
    heap.f32(this.x, features.length).set(features);
    const status = heap.c.lem_stream_push(this.ptr, this.x, frames, this.y);
    if (status !== 0) throw new LstmEdgeError(`push: ${heap.string(heap.c.lem_status_string(status))}`);
    return heap.f32(this.y, frames * outputWidth).slice();
  }

  /** The state as one Float32Array (the manifest's states concatenated in order). */
  getState() {
    const { heap, stateSize } = this.model;
    const ptr = heap.alloc(stateSize * 4);
    heap.c.lem_stream_get_state(this.ptr, ptr);
    const state = heap.f32(ptr, stateSize).slice();
    heap.free(ptr);
    return state;
  }

  reset() { this.model.heap.c.lem_stream_reset(this.ptr); }

  free() {
    const { heap } = this.model;
    heap.c.lem_stream_free(this.ptr);
    if (this.x) heap.free(this.x);
    if (this.y) heap.free(this.y);
    this.ptr = 0;
  }
}

function round(value, digits) {
  return Number(value.toFixed(digits));
}

function checkFrontend(frontend) {
  if (frontend == null || frontend.type !== "log_mel") {
    throw new LstmEdgeError(`manifest: expected a log_mel frontend (an audio model), got ${
      JSON.stringify(frontend?.type ?? null)}`);
  }
  if (frontend.window !== "hann_periodic" || frontend.mel_scale !== "htk") {
    throw new LstmEdgeError(`frontend: expected window hann_periodic and mel_scale htk, got ${frontend.window} and ${
      frontend.mel_scale}`);
  }
}

/**
 * The manifest's log-mel frontend (lstm_edge.runtime.frontend.LogMelFrontend) inside a model's instance: PCM in,
 * [frames * n_mels] features out; leftover samples are kept, so features do not depend on the chunking.
 */
export class LogMelFrontend {
  constructor(model, maxSamples = 1600) {
    const f = model.manifest.frontend;
    checkFrontend(f);
    const { heap } = model;
    const c = heap.c;
    const status = heap.alloc(4);
    this.ptr = c.lew_frontend_create(f.sample_rate, f.n_fft, f.win_length, f.hop_length, f.n_mels, f.f_min,
      f.f_max, f.log_floor, status);
    const code = heap.i32(status);
    heap.free(status);
    if (this.ptr === 0) {
      throw new LstmEdgeError(`frontend: ${heap.string(c.le_status_string(code))} (${
        heap.string(c.le_last_config_error())})`);
    }
    this.heap = heap;
    this.nMels = f.n_mels;
    this.sampleRate = f.sample_rate;
    this.maxSamples = maxSamples;
    this.maxFrames = c.le_frontend_max_frames(this.ptr, maxSamples);
    this.pcm = heap.alloc(maxSamples * 4);
    this.features = heap.alloc(this.maxFrames * f.n_mels * 4); // the last piece's features, in the instance
  }

  static checkPcm(pcm, sampleRate) {
    if (!(pcm instanceof Int16Array) && !(pcm instanceof Float32Array)) {
      throw new LstmEdgeError(`pcm: expected an Int16Array or Float32Array of mono samples at ${sampleRate} Hz, got ${
        pcm?.constructor?.name ?? typeof pcm}`);
    }
  }

  /** At most maxSamples samples -> the number of frames now at this.features (inside the instance). */
  pushPiece(piece) {
    const { heap } = this;
    const c = heap.c;
    const int16 = piece instanceof Int16Array;
    if (int16) new Int16Array(heap.buffer, this.pcm, piece.length).set(piece);
    else heap.f32(this.pcm, piece.length).set(piece);
    const push = int16 ? c.le_frontend_push_int16 : c.le_frontend_push_float;
    const frames = push(this.ptr, this.pcm, piece.length, this.features, this.maxFrames);
    if (frames < 0) {
      throw new LstmEdgeError(`pcm: ${heap.string(c.le_status_string(frames))}${
        frames === -5 ? " (expected finite samples)" : ""}`);
    }
    return frames;
  }

  /** Any number of samples -> Float32Array of [frames * n_mels] features. */
  push(pcm) {
    LogMelFrontend.checkPcm(pcm, this.sampleRate);
    const pieces = [];
    for (let start = 0; start < pcm.length; start += this.maxSamples) {
      const frames = this.pushPiece(pcm.subarray(start, start + this.maxSamples));
      pieces.push(this.heap.f32(this.features, frames * this.nMels).slice());
    }
    const out = new Float32Array(pieces.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of pieces) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }

  reset() { this.heap.c.le_frontend_reset(this.ptr); }

  free() {
    this.heap.c.le_frontend_free(this.ptr);
    this.heap.free(this.pcm);
    this.heap.free(this.features);
  }
}

/** A keyword spotter: the model plus the manifest's frontend, labels and detector (lstm_edge.runtime.kws). */
export class KeywordSpotter {
  static async load(modelUrl, options = {}) {
    return new KeywordSpotter(await StreamingModel.load(modelUrl, options), options.detector ?? {});
  }

  constructor(model, detectorOverrides = {}) {
    const { manifest } = model;
    const frontend = manifest.frontend;
    checkFrontend(frontend);
    const labels = manifest.labels ?? [];
    if (labels.length !== model.outputWidth || frontend.n_mels !== model.inputWidth) {
      throw new LstmEdgeError(`manifest: expected ${model.outputWidth} labels and ${model.inputWidth} mels (the weight ${
        ""}file's widths), got ${labels.length} and ${frontend.n_mels}`);
    }
    this.model = model;
    this.labels = labels;
    this.frontend = frontend;
    this.sampleRate = frontend.sample_rate;
    this.config = { ...DETECTOR_DEFAULTS, ...(manifest.detector ?? {}), ...detectorOverrides };
    const semantics = manifest.outputs?.[0]?.semantics ?? "logits";
    this.scoresAreLogits = semantics !== "probabilities";
  }

  createStream() {
    return new KeywordStream(this);
  }
}

/** One audio stream through frontend -> model -> detector, all in WebAssembly. */
export class KeywordStream {
  constructor(spotter) {
    const { model, frontend: f, config: d, labels } = spotter;
    const { heap } = model;
    const c = heap.c;
    this.spotter = spotter;
    this.heap = heap;
    this.frontend = new LogMelFrontend(model, Math.round(f.sample_rate * CHUNK_SECONDS));
    const names = labels.map((label) => heap.cString(label));
    const table = heap.alloc(4 * names.length);
    new Uint32Array(heap.buffer, table, names.length).set(names);
    const status = heap.alloc(4);
    this.detector = c.lew_detector_create(labels.length, table, spotter.scoresAreLogits ? 1 : 0, d.threshold,
      d.smoothing_frames, d.refractory_s, d.max_event_s, d.onset_level, d.lookback_s, f.sample_rate, f.win_length,
      f.hop_length, status);
    const code = heap.i32(status);
    names.forEach((ptr) => heap.free(ptr));
    heap.free(table);
    heap.free(status);
    if (this.detector === 0) {
      throw new LstmEdgeError(`detector: ${heap.string(c.le_status_string(code))} (${
        heap.string(c.le_last_config_error())})`);
    }
    this.modelStream = model.createStream({ maxChunk: this.frontend.maxFrames });
    this.scores = heap.alloc(this.frontend.maxFrames * labels.length * 4);
    this.found = heap.alloc(64 * 4 * 8);
    this.frames = 0;
  }

  /**
   * pcm: Int16Array (scaled by 1/32768) or Float32Array at the model's sample rate, any length. Returns the
   * detections completed by this audio, each {label, start, end, score} as `lstm-edge listen --json` prints them.
   */
  push(pcm) {
    LogMelFrontend.checkPcm(pcm, this.spotter.sampleRate);
    const out = [];
    const step = this.frontend.maxSamples;
    for (let start = 0; start < pcm.length; start += step) out.push(...this._pushPiece(pcm.subarray(start, start + step)));
    return out;
  }

  _pushPiece(piece) {
    const c = this.heap.c;
    const frames = this.frontend.pushPiece(piece);
    if (frames === 0) return [];
    const status = c.lem_stream_push(this.modelStream.ptr, this.frontend.features, frames, this.scores);
    if (status !== 0) throw new LstmEdgeError(`model: ${this.heap.string(c.lem_status_string(status))}`);
    this.frames += frames;
    const count = c.lew_detector_push(this.detector, this.scores, frames, this.found, 64);
    if (count < 0) throw new LstmEdgeError(`detector: ${this.heap.string(c.le_status_string(count))}`);
    return this._read(count);
  }

  _read(count) {
    const values = new Float64Array(this.heap.buffer, this.found, 4 * count);
    const out = [];
    for (let k = 0; k < count; k++) {
      const [index, start, end, score] = values.subarray(4 * k, 4 * k + 4);
      out.push({ label: this.spotter.labels[index], start: round(start, 3), end: round(end, 3),
        score: round(score, 4) });
    }
    return out;
  }

  /** The detection still open at the end of the audio, if any (as a list, like the Python stream's flush). */
  flush() {
    return this.heap.c.lew_detector_flush(this.detector, this.found) ? this._read(1) : [];
  }

  reset() {
    this.frontend.reset();
    this.heap.c.le_detector_reset(this.detector);
    this.modelStream.reset();
    this.frames = 0;
  }

  /** Seconds of audio turned into frames so far. */
  get seconds() {
    const f = this.spotter.frontend;
    return this.frames * f.hop_length / f.sample_rate;
  }

  free() {
    const { heap } = this;
    this.frontend.free();
    heap.c.le_detector_free(this.detector);
    this.modelStream.free();
    heap.free(this.scores);
    heap.free(this.found);
  }
}
