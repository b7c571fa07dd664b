// RIFF WAV files for the page and the benchmark: 16-bit PCM or 32-bit float, any channel count and sample rate,
// turned into mono at the model's rate. A 16-bit mono file already at that rate stays Int16Array, untouched (what
// `lstm-edge listen` reads); anything else is downmixed (mean of the channels) and resampled (resample.mjs).
import { Resampler } from "./resample.mjs";

export class WavError extends Error {
  constructor(message) {
    super(message);
    this.name = "WavError";
  }
}

/** {format: {code, channels, rate, bits}, data: DataView over the samples} of a WAV file's bytes. */
export function parseWav(buffer) {
  const bytes = buffer instanceof Uint8Array ? buffer : new Uint8Array(buffer);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const tag = (at) => String.fromCharCode(...bytes.subarray(at, at + 4));
  if (bytes.length < 12 || tag(0) !== "RIFF" || tag(8) !== "WAVE") {
    throw new WavError("audio file: expected a RIFF WAVE file, got something else");
  }
  let format = null;
  for (let at = 12; at + 8 <= bytes.length;) {
    const size = view.getUint32(at + 4, true);
    if (tag(at) === "fmt ") {
      format = { code: view.getUint16(at + 8, true), channels: view.getUint16(at + 10, true),
        rate: view.getUint32(at + 12, true), bits: view.getUint16(at + 22, true) };
      if (format.code === 0xfffe && size >= 40) format.code = view.getUint16(at + 32, true); // WAVE_FORMAT_EXTENSIBLE
    } else if (tag(at) === "data") {
      if (format == null) throw new WavError("audio file: expected a fmt chunk before the data chunk, got none");
      const pcm16 = format.code === 1 && format.bits === 16;
      if (!pcm16 && !(format.code === 3 && format.bits === 32)) {
        throw new WavError(`audio file: expected 16-bit PCM or 32-bit float samples, got format ${format.code} with ${
          format.bits} bits`);
      }
      const length = Math.min(size, bytes.length - at - 8);
      return { format, data: new DataView(bytes.buffer, bytes.byteOffset + at + 8, length) };
    }
    at += 8 + size + (size & 1);
  }
  throw new WavError("audio file: expected a data chunk, got none");
}

/** The file's audio as mono samples at `sampleRate`: Int16Array when it already is 16-bit mono at that rate. */
export function decodeWav(buffer, sampleRate = 16000) {
  const { format, data } = parseWav(buffer);
  const pcm16 = format.bits === 16;
  const width = format.bits / 8;
  const frames = Math.floor(data.byteLength / (width * format.channels));
  const read = (i) => (pcm16 ? data.getInt16(i * 2, true) : data.getFloat32(i * 4, true));
  if (pcm16 && format.channels === 1 && format.rate === sampleRate) {
    return Int16Array.from({ length: frames }, (_, i) => read(i));
  }
  const scale = pcm16 ? 1 / 32768 : 1;
  const mono = Float32Array.from({ length: frames }, (_, i) => {
    let sum = 0;
    for (let c = 0; c < format.channels; c++) sum += read(i * format.channels + c);
    return (sum / format.channels) * scale;
  });
  if (format.rate === sampleRate) return mono;
  const resampler = new Resampler(format.rate, sampleRate);
  const head = resampler.push(mono);
  const tail = resampler.push(new Float32Array(resampler.halfWidth)); // the last input samples' outputs
  const out = new Float32Array(head.length + tail.length);
  out.set(head);
  out.set(tail, head.length);
  return out.subarray(0, Math.floor((frames * sampleRate) / format.rate));
}
