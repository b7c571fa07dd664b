// A streaming resampler for microphone audio (e.g. 48 kHz or 44.1 kHz -> 16 kHz): Hann-windowed sinc interpolation
// from a table of filter phases, so the same input always gives the same output, whatever the chunking and the
// engine (plain float64 arithmetic in a fixed order). Used inside the page's AudioWorklet; no dependencies.
//
//   const r = new Resampler(48000, 16000);
//   const out = r.push(float32Chunk);   // the output samples this chunk completes (latency: `halfWidth` input samples)
//
// Equal rates pass the samples through unchanged. The low-pass cutoff is 0.95 of the lower Nyquist frequency
// (7.6 kHz for 16 kHz output: the keyword spotter's top mel edge).

function gcd(a, b) {
  while (b) [a, b] = [b, a % b];
  return a;
}

export class Resampler {
  constructor(inputRate, outputRate = 16000, { zeroCrossings = 12, cutoff = 0.95 } = {}) {
    if (!Number.isInteger(inputRate) || !Number.isInteger(outputRate) || inputRate <= 0 || outputRate <= 0) {
      throw new RangeError(`sample rates: expected positive integers, got ${inputRate} and ${outputRate}`);
    }
    this.inputRate = inputRate;
    this.outputRate = outputRate;
    const g = gcd(inputRate, outputRate);
    this.phases = outputRate / g; // output times fall on phases/phases-ths of an input sample
    if (this.phases > 4096) {
      throw new RangeError(`sample rates ${inputRate} -> ${outputRate}: expected at most 4096 filter phases, got ${
        this.phases}`);
    }
    const fc = cutoff * Math.min(1, outputRate / inputRate); // cycles per input sample, x2 (1 = input Nyquist)
    const reach = zeroCrossings / fc; // half width of the kernel in input samples
    this.halfWidth = Math.ceil(reach);
    const taps = 2 * this.halfWidth;
    this.table = new Float64Array(this.phases * taps);
    for (let p = 0; p < this.phases; p++) {
      const fraction = p / this.phases;
      let sum = 0;
      for (let j = 0; j < taps; j++) {
        const d = fraction - (j - this.halfWidth + 1); // output time minus input sample time
        const x = Math.PI * fc * d;
        const sinc = x === 0 ? 1 : Math.sin(x) / x;
        const window = Math.abs(d) < reach ? 0.5 + 0.5 * Math.cos(Math.PI * d / reach) : 0;
        this.table[p * taps + j] = sinc * window;
        sum += sinc * window;
      }
      for (let j = 0; j < taps; j++) this.table[p * taps + j] /= sum; // unit gain at 0 Hz
    }
    this.taps = taps;
    this.stepWhole = Math.floor(inputRate / outputRate);
    this.stepRest = inputRate % outputRate;
    this.reset();
  }

  reset() {
    // input sample i is history[i - this.start]; history begins with halfWidth zeros (the signal before time 0)
    this.history = new Float64Array(this.halfWidth);
    this.start = -this.halfWidth;
    this.base = 0; // the next output's time: base + rest / outputRate input samples
    this.rest = 0;
  }

  /** Float32Array in at inputRate -> Float32Array out at outputRate. */
  push(chunk) {
    if (this.inputRate === this.outputRate) return Float32Array.from(chunk);
    const joined = new Float64Array(this.history.length + chunk.length);
    joined.set(this.history);
    joined.set(chunk, this.history.length);
    const end = this.start + joined.length; // one past the last input sample held
    const out = [];
    const g = this.outputRate / this.phases;
    while (this.base + this.halfWidth < end) {
      const phase = this.rest / g;
      const row = phase * this.taps;
      const first = this.base - this.halfWidth + 1 - this.start;
      let acc = 0;
      for (let j = 0; j < this.taps; j++) acc += this.table[row + j] * joined[first + j];
      out.push(acc);
      this.base += this.stepWhole;
      this.rest += this.stepRest;
      if (this.rest >= this.outputRate) {
        this.rest -= this.outputRate;
        this.base += 1;
      }
    }
    const keep = this.base - this.halfWidth + 1; // the first sample a later output reads
    const from = Math.max(0, Math.min(joined.length, keep - this.start));
    this.history = joined.slice(from);
    this.start += from;
    return Float32Array.from(out);
  }
}
