// The page's AudioWorklet: microphone frames (the context's rate, 128 at a time) -> mono -> 16 kHz (the deterministic
// resampler of resample.mjs) -> 100 ms Float32Array chunks posted to the page, which runs the model.
import { Resampler } from "./resample.mjs";

class CaptureProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const { targetRate = 16000, chunkSamples = 1600 } = options.processorOptions ?? {};
    this.resampler = new Resampler(sampleRate, targetRate); // sampleRate: the AudioWorkletGlobalScope's
    this.chunkSamples = chunkSamples;
    this.chunk = new Float32Array(chunkSamples);
    this.filled = 0;
    this.port.postMessage({ inputRate: sampleRate, targetRate });
  }

  process(inputs) {
    const channels = inputs[0];
    if (channels == null || channels.length === 0) return true;
    const mono = new Float32Array(channels[0].length);
    for (const channel of channels) for (let i = 0; i < mono.length; i++) mono[i] += channel[i] / channels.length;
    for (const sample of this.resampler.push(mono)) {
      this.chunk[this.filled++] = sample;
      if (this.filled === this.chunkSamples) {
        this.port.postMessage(this.chunk, [this.chunk.buffer]); // transferred: the next chunk is a new array
        this.chunk = new Float32Array(this.chunkSamples);
        this.filled = 0;
      }
    }
    return true;
  }
}

registerProcessor("lstm-edge-capture", CaptureProcessor);
