// The demo page: microphone (getUserMedia -> AudioWorklet -> 16 kHz) or a WAV file -> KeywordSpotter (WebAssembly)
// -> detections on the page and, one JSON line each as `lstm-edge listen --json` prints them, on the console; with a
// speech recognizer in the site (lstm-edge web --asr), the same audio also goes to it: partial transcripts on the
// page, final ones on the page and on the console as `lstm-edge transcribe --json` prints them.
//
// Query parameters: ?autostart listens without a click; ?file=URL streams a WAV file through the same path instead
// of the microphone; ?seconds=N stops listening after N seconds of audio; ?precision=float|int8 (default int8).
// When it stops, <body data-state="done" data-detections="K">.
import { SpeechRecognizer } from "./asr.mjs";
import { KeywordSpotter } from "./lstm-edge.mjs";
import { decodeWav } from "./wav.mjs";

const params = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);
const site = await (await fetch("site.json")).json();
let spotter = null;
let recognizer = null;
let session = null;
let count = 0;
let finals = 0;

function setState(state, text) {
  document.body.dataset.state = state;
  $("status").textContent = text ?? state;
}

function report(detection) {
  console.log(JSON.stringify(detection));
  count += 1;
  document.body.dataset.detections = String(count);
  $("last").textContent = detection.label;
  const item = document.createElement("li");
  item.textContent = `${detection.label} at ${detection.start.toFixed(2)}-${detection.end.toFixed(2)} s, ` +
    `score ${detection.score.toFixed(3)}`;
  $("detections").prepend(item);
  for (const chip of $("keywords").children) chip.classList.toggle("hit", chip.textContent === detection.label);
}

function transcript(result) {
  if (!("text" in result)) {
    $("partial").textContent = result.partial;
    return;
  }
  console.log(JSON.stringify(result));
  finals += 1;
  document.body.dataset.transcripts = String(finals);
  $("partial").textContent = "";
  const item = document.createElement("li");
  item.textContent = `${result.text} (${result.start.toFixed(2)}-${result.end.toFixed(2)} s)`;
  $("transcripts").prepend(item);
}

/** One run over an audio source: a fresh stream, an optional limit in samples, flushed at the end. */
class Session {
  constructor(limitSeconds) {
    this.stream = spotter.createStream();
    this.speech = recognizer ? recognizer.createStream() : null;
    this.limit = limitSeconds > 0 ? Math.round(limitSeconds * spotter.sampleRate) : Infinity;
    this.samples = 0;
    this.stopped = false;
    this.onStop = null;
  }

  push(chunk) {
    if (this.stopped) return;
    const room = this.limit - this.samples;
    const piece = chunk.length > room ? chunk.subarray(0, room) : chunk;
    this.samples += piece.length;
    document.body.dataset.samples = String(this.samples);
    this.stream.push(piece).forEach(report);
    if (this.speech) this.speech.push(piece).forEach(transcript);
    if (this.samples >= this.limit) this.stop();
  }

  stop() {
    if (this.stopped) return;
    this.stopped = true;
    this.stream.flush().forEach(report);
    this.stream.free();
    if (this.speech) this.speech.flush().forEach(transcript);
    if (this.onStop) this.onStop();
    setState("done", `stopped after ${(this.samples / spotter.sampleRate).toFixed(2)} s of audio`);
    $("listen").textContent = "Listen";
    $("listen").classList.remove("on");
  }
}

async function startMicrophone(limitSeconds) {
  const media = await navigator.mediaDevices.getUserMedia({
    audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false } });
  const context = new AudioContext();
  await context.audioWorklet.addModule("capture-worklet.js");
  const source = context.createMediaStreamSource(media);
  const capture = new AudioWorkletNode(context, "lstm-edge-capture",
    { numberOfOutputs: 1, processorOptions: { targetRate: spotter.sampleRate, chunkSamples: spotter.sampleRate / 10 } });
  const mute = context.createGain();
  mute.gain.value = 0; // keeps the graph pulling the worklet without playing the microphone back
  source.connect(capture).connect(mute).connect(context.destination);
  session = new Session(limitSeconds);
  session.onStop = () => {
    media.getTracks().forEach((track) => track.stop());
    context.close();
  };
  capture.port.onmessage = (event) => {
    if (event.data instanceof Float32Array) session.push(event.data);
    else $("engine").dataset.inputRate = event.data.inputRate;
  };
  await context.resume();
  setState("listening", `listening (microphone at ${context.sampleRate} Hz, resampled to ${spotter.sampleRate} Hz)`);
  $("listen").textContent = "Stop";
  $("listen").classList.add("on");
}

async function runFile(url, limitSeconds) {
  setState("listening", `streaming ${url} in 100 ms chunks`);
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: expected HTTP 200, got ${response.status}`);
  const audio = decodeWav(await response.arrayBuffer(), spotter.sampleRate);
  session = new Session(limitSeconds);
  const chunk = spotter.sampleRate / 10;
  for (let start = 0; start < audio.length && !session.stopped; start += chunk) {
    session.push(audio.subarray(start, start + chunk));
  }
  session.stop();
}

function fail(error) {
  console.error(`lstm-edge: ${error.message ?? error}`);
  setState("error", `error: ${error.message ?? error}`);
}

async function main() {
  const precision = params.get("precision") ?? "int8";
  spotter = await KeywordSpotter.load(site.kws, { precision });
  if (site.asr) {
    recognizer = await SpeechRecognizer.load(site.asr, { precision });
    $("speech").hidden = false;
    const vocabulary = recognizer.vocabulary;
    const first = [...vocabulary.followers(vocabulary.context("")[0])].sort();
    $("phrases").textContent = `${vocabulary.words.size} words${vocabulary.grammar ? " in a grammar" : ""}; ` +
      `a sentence starts with ${first.slice(0, 12).join(", ")}${first.length > 12 ? ", ..." : ""}`;
  }
  const keywords = spotter.labels.filter((label) => !label.startsWith("_"));
  for (const label of keywords) {
    const chip = document.createElement("li");
    chip.textContent = label;
    $("keywords").append(chip);
  }
  $("about").textContent = `${spotter.model.manifest.name}: ${keywords.length} keywords, runs entirely on this ` +
    "device; no audio leaves it.";
  const models = [spotter.model, ...(recognizer ? [recognizer.model] : [])];
  $("engine").textContent = models.map((m) => `${m.describe()}, ${(m.weightBytes / 1024).toFixed(0)} KB of weights`)
    .join("; ");
  setState("ready");
  const limit = Number(params.get("seconds") ?? 0);
  $("listen").disabled = false;
  $("listen").onclick = () => (session && !session.stopped ? session.stop() : startMicrophone(0).catch(fail));
  for (const [id, url] of [["demo", site.demo], ["asr-demo", site.asr_demo]]) {
    if (!url) continue;
    $(id).hidden = false;
    $(id).disabled = false;
    $(id).onclick = () => runFile(url, 0).catch(fail);
  }
  if (params.has("file")) await runFile(params.get("file"), limit);
  else if (params.has("autostart")) await startMicrophone(limit);
}

if ("serviceWorker" in navigator && !params.has("nosw")) {
  navigator.serviceWorker.register("sw.js").catch((error) => console.warn(`service worker: ${error.message}`));
}
main().catch(fail);
