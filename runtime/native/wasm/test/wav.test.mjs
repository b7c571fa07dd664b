// Unit tests of wav.mjs: how the page and the benchmark read recordings (node --test runtime/native/wasm/test/).
import assert from "node:assert/strict";
import { test } from "node:test";
import { decodeWav, parseWav } from "../wav.mjs";

/** A WAV file's bytes: `samples` interleaved, 16-bit PCM (code 1) or 32-bit float (code 3). */
function wav(samples, { channels = 1, rate = 16000, code = 1, extra = false } = {}) {
  const bits = code === 1 ? 16 : 32;
  const data = samples.length * (bits / 8);
  const chunks = extra ? 12 : 0; // a LIST chunk before the data, as many recorders write
  const bytes = new DataView(new ArrayBuffer(44 + chunks + data));
  const put = (at, text) => [...text].forEach((ch, i) => bytes.setUint8(at + i, ch.charCodeAt(0)));
  put(0, "RIFF");
  bytes.setUint32(4, 36 + chunks + data, true);
  put(8, "WAVE");
  put(12, "fmt ");
  bytes.setUint32(16, 16, true);
  bytes.setUint16(20, code, true);
  bytes.setUint16(22, channels, true);
  bytes.setUint32(24, rate, true);
  bytes.setUint32(28, (rate * channels * bits) / 8, true);
  bytes.setUint16(32, (channels * bits) / 8, true);
  bytes.setUint16(34, bits, true);
  let at = 36;
  if (extra) {
    put(at, "LIST");
    bytes.setUint32(at + 4, 4, true);
    put(at + 8, "INFO");
    at += 12;
  }
  put(at, "data");
  bytes.setUint32(at + 4, data, true);
  samples.forEach((v, i) => (code === 1 ? bytes.setInt16(at + 8 + 2 * i, v, true)
    : bytes.setFloat32(at + 8 + 4 * i, v, true)));
  return bytes.buffer;
}

test("16-bit mono at the model's rate stays int16, untouched; other chunks are skipped", () => {
  const samples = [0, 1, -1, 32767, -32768, 1234];
  const got = decodeWav(wav(samples, { extra: true }), 16000);
  assert.ok(got instanceof Int16Array);
  assert.deepEqual([...got], samples);
});

test("stereo is averaged; float files are read as they are; other rates are resampled to length", () => {
  const stereo = decodeWav(wav([1000, 3000, -2000, 0], { channels: 2 }), 16000);
  assert.deepEqual([...stereo], [2000 / 32768, -1000 / 32768]);
  assert.deepEqual([...decodeWav(wav([0.5, -0.25], { code: 3 }), 16000)], [0.5, -0.25]);
  const rate = 48000;
  const tone = Array.from({ length: rate }, (_, i) => Math.round(8000 * Math.sin((2 * Math.PI * 440 * i) / rate)));
  const out = decodeWav(wav(tone, { rate }), 16000);
  assert.equal(out.length, 16000);
  let error = 0;
  for (let n = 500; n < 15500; n++) {
    error = Math.max(error, Math.abs(out[n] - (8000 / 32768) * Math.sin((2 * Math.PI * 440 * n) / 16000)));
  }
  assert.ok(error < 1e-3, `resampled tone off by ${error}`);
});

test("other files are refused with what was expected", () => {
  assert.throws(() => parseWav(new TextEncoder().encode("ID3 not a wav file")), /expected a RIFF WAVE file/);
  const mulaw = wav([1, 2]);
  new DataView(mulaw).setUint16(20, 7, true);
  assert.throws(() => decodeWav(mulaw), /expected 16-bit PCM or 32-bit float samples, got format 7/);
});
