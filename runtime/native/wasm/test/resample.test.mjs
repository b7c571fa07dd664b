// Unit tests of the page's resampler (node --test runtime/native/wasm/test/).
import assert from "node:assert/strict";
import { test } from "node:test";
import { Resampler } from "../resample.mjs";

const sine = (rate, hz, n, offset = 0) => Float32Array.from({ length: n }, (_, i) => Math.sin(2 * Math.PI * hz * (i + offset) / rate));

function pushAll(resampler, signal, chunk) {
  const out = [];
  for (let i = 0; i < signal.length; i += chunk) out.push(...resampler.push(signal.subarray(i, i + chunk)));
  return Float32Array.from(out);
}

for (const rate of [48000, 44100, 22050]) {
  test(`${rate} Hz -> 16 kHz keeps a 1 kHz tone (amplitude and phase: output n is at time n / 16000) and removes one above 8 kHz`, () => {
    const out = pushAll(new Resampler(rate, 16000), sine(rate, 1000, rate), 128);
    assert.ok(Math.abs(out.length - 16000) <= 40, `${out.length} samples for one second`);
    let error = 0;
    for (let n = 1000; n < out.length - 1000; n++) error = Math.max(error, Math.abs(out[n] - Math.sin(2 * Math.PI * 1000 * n / 16000)));
    assert.ok(error < 2e-3, `max error vs the ideal 16 kHz tone: ${error}`);
    if (rate > 20000) {
      const high = pushAll(new Resampler(rate, 16000), sine(rate, 9500, rate), 128);
      const peak = Math.max(...high.subarray(1000, high.length - 1000).map(Math.abs));
      assert.ok(peak < 0.01, `9.5 kHz leaks through at ${peak}`);
    }
  });
}

test("the output does not depend on the chunking; equal rates pass samples through", () => {
  const signal = sine(48000, 440, 48000);
  const whole = pushAll(new Resampler(48000, 16000), signal, signal.length);
  assert.deepEqual(pushAll(new Resampler(48000, 16000), signal, 128), whole);
  assert.deepEqual(pushAll(new Resampler(48000, 16000), signal, 1001), whole);
  const same = sine(16000, 440, 1000);
  assert.deepEqual(new Resampler(16000, 16000).push(same), same);
  assert.throws(() => new Resampler(0, 16000), /expected positive integers/);
});
