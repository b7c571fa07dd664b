// The speech recognizer in JavaScript over the WebAssembly model: the manifest's extra.asr settings, frame stacking,
// the lexicon- and grammar-constrained CTC prefix beam search, endpoint rules, the idle reset and the best-path
// rejection rule, step for step as lstm_edge.runtime.asr / lstm_edge.runtime.ctc do them (same float64 arithmetic,
// same order), so `transcribe --json` and this module give the same results on the same model outputs.
//
//   const recognizer = await SpeechRecognizer.load("models/asr/");
//   const stream = recognizer.createStream();
//   for (const r of stream.push(pcm)) console.log(JSON.stringify(r));  // {partial} or {text, start, end, words}
//   stream.flush();                                                   // the utterance in progress
import { LogMelFrontend, LstmEdgeError, StreamingModel } from "./lstm-edge.mjs";

const NEG_INF = -Infinity;
const CHUNK_SECONDS = 0.1;
const DEAD = Symbol("dead"); // the context after a word the grammar does not allow there: nothing may follow
const DEFAULT_ENDPOINT_RULES = [
  { name: "silence", must_contain_speech: false, min_trailing_silence: 2.0, min_utterance_length: 0.0 },
  { name: "after_speech", must_contain_speech: true, min_trailing_silence: 0.5, min_utterance_length: 0.0 },
  { name: "max_length", must_contain_speech: false, min_trailing_silence: 0.0, min_utterance_length: 15.0 },
];
const DECODER_DEFAULTS = { beam_size: 8, token_top_k: 6, token_min_log_prob: -12.0, keep_complete: true,
  incomplete_margin: null, rejection: null };

const round = (x, digits) => Number(x.toFixed(digits));

/** Python's round(x) (ties to even), for the frame counts derived from seconds */
function roundHalfEven(x) {
  const floor = Math.floor(x);
  const rest = x - floor;
  return rest > 0.5 || (rest === 0.5 && floor % 2 !== 0) ? floor + 1 : floor;
}

function logaddexp(a, b) {
  if (a < b) [a, b] = [b, a];
  if (b === NEG_INF) return a;
  return a + Math.log1p(Math.exp(b - a));
}

/** Tokens, lexicon and the optional word grammar (successor lists or a deterministic word automaton). */
export class Vocabulary {
  constructor(tokens, lexicon, grammar = null, blank = 0, separator = " ") {
    this.tokens = tokens;
    if (!tokens.includes(separator)) {
      throw new LstmEdgeError(`tokens: expected a list containing the word separator ${JSON.stringify(separator)}`);
    }
    this.blank = blank;
    this.separator = tokens.indexOf(separator);
    this.tokenIndex = new Map();
    tokens.forEach((token, i) => { if (!this.tokenIndex.has(token)) this.tokenIndex.set(token, i); });
    this.words = new Set(lexicon);
    this.grammar = grammar;
    this.prefixCache = new Map();
    this.followerMap = new Map();
    this.arcs = new Map(); // context -> Map(word -> context after it)
    this.finals = new Set();
    this.contexts = new Map([["", null]]);
    if (grammar == null) return;
    if ("arcs" in grammar) {
      this.contexts.set("", grammar.start);
      for (const [from, word, to] of grammar.arcs) {
        if (!this.arcs.has(from)) this.arcs.set(from, new Map());
        this.arcs.get(from).set(word, to);
        if (!this.followerMap.has(from)) this.followerMap.set(from, new Set());
        this.followerMap.get(from).add(word);
      }
      this.finals = new Set(grammar.final);
    } else {
      this.followerMap.set(null, new Set(grammar.start));
      for (const [word, nexts] of Object.entries(grammar.next)) this.followerMap.set(word, new Set(nexts));
      for (const [previous, nexts] of this.followerMap) {
        for (const word of nexts) {
          if (!this.arcs.has(previous)) this.arcs.set(previous, new Map());
          this.arcs.get(previous).set(word, word);
        }
      }
      this.finals = new Set(grammar.final);
    }
  }

  arc(context, word) {
    const out = this.arcs.get(context);
    return out != null && out.has(word) ? out.get(word) : DEAD;
  }

  /** [what the complete words of text allow next, the word being spelled] */
  context(text) {
    const cut = text.lastIndexOf(" ");
    const done = text.slice(0, cut + 1);
    const partial = text.slice(cut + 1);
    let context = this.contexts.has(done) ? this.contexts.get(done) : DEAD;
    if (context === DEAD) {
      const [before, word] = this.context(done.slice(0, -1));
      context = this.grammar == null ? null : this.arc(before, word);
      if (this.contexts.size >= 65536) this.contexts = new Map([["", this.contexts.get("")]]);
      this.contexts.set(done, context);
    }
    return [context, partial];
  }

  followers(context) {
    if (this.grammar == null) return this.words;
    return this.followerMap.get(context) ?? new Set();
  }

  prefixes(context) {
    const key = this.grammar == null ? null : context;
    if (!this.prefixCache.has(key)) {
      const set = new Set();
      for (const w of this.followers(context)) for (let i = 1; i <= w.length; i++) set.add(w.slice(0, i));
      this.prefixCache.set(key, set);
    }
    return this.prefixCache.get(key);
  }

  canEnd(context, word) {
    if (!this.followers(context).has(word)) return false;
    return this.grammar == null || this.finals.has(this.arc(context, word));
  }
}

class Beam {
  constructor(blank, token, frames) {
    this.blank = blank;
    this.token = token;
    this.frames = frames;
    this.total = logaddexp(blank, token);
  }
}

function add(beams, text, blankScore, tokenScore, frames) {
  const beam = beams.get(text);
  if (beam === undefined) beams.set(text, new Beam(blankScore, tokenScore, frames));
  else {
    beam.blank = logaddexp(beam.blank, blankScore);
    beam.token = logaddexp(beam.token, tokenScore);
  }
}

const rstrip = (text) => text.replace(/ +$/, "");

function isComplete(text, vocabulary) {
  const stripped = rstrip(text);
  if (!stripped) return false;
  const [context, last] = vocabulary.context(stripped);
  return vocabulary.canEnd(context, last);
}

/** The k most probable token indices of a frame (the set numpy's argpartition gives; order does not matter). */
function topK(values, k) {
  const order = values.map((_, i) => i).sort((a, b) => values[b] - values[a] || a - b);
  return order.slice(0, k);
}

/** One frame of the constrained prefix beam search (ctc.beam_step for one row). */
export function beamStep(state, values, vocabulary, settings) {
  const { tokens, blank, separator, tokenIndex } = vocabulary;
  const k = Math.min(settings.token_top_k, values.length);
  const constrained = settings.keep_complete && vocabulary.grammar != null;
  const candidates = topK(values, k).filter((c) => c !== blank && values[c] >= settings.token_min_log_prob);
  const blankScore = values[blank];
  const next = new Map();
  for (const [text, beam] of state.beams) {
    const total = beam.total;
    add(next, text, total + blankScore, NEG_INF, beam.frames);
    const last = text ? text[text.length - 1] : null;
    if (last !== null) add(next, text, NEG_INF, beam.token + values[tokenIndex.get(last)], beam.frames);
    const [context, partial] = vocabulary.context(text);
    const spellable = vocabulary.prefixes(context);
    for (const c of candidates) {
      let extended;
      if (c === separator) {
        if (!partial || !vocabulary.followers(context).has(partial)) continue;
        extended = `${text} `;
      } else {
        if (!spellable.has(partial + tokens[c])) continue;
        extended = text + tokens[c];
      }
      const score = tokens[c] === last ? beam.blank + values[c] : total + values[c];
      add(next, extended, NEG_INF, score, [...beam.frames, state.frame]);
    }
  }
  for (const beam of next.values()) beam.total = logaddexp(beam.blank, beam.token);
  const ranked = [...next].sort((a, b) => (b[1].total > a[1].total ? 1 : b[1].total < a[1].total ? -1 : 0));
  let beams;
  if (ranked.length > settings.beam_size) {
    beams = new Map(ranked.slice(0, settings.beam_size));
    if (constrained && ![...beams.keys()].some((text) => isComplete(text, vocabulary))) {
      const kept = ranked.slice(settings.beam_size).find(([text]) => isComplete(text, vocabulary));
      if (kept) beams.set(kept[0], kept[1]);
    }
  } else {
    beams = new Map(ranked);
  }
  return { beams, frame: state.frame + 1 };
}

const newBeamState = () => ({ beams: new Map([["", new Beam(0.0, NEG_INF, [])]]), frame: 0 });

/** [text, token frames] of the best prefix (final: the best complete utterance, see ctc.best_text). */
export function bestText(state, vocabulary, final = false, incompleteMargin = null) {
  let bestOpen = null;
  for (const [text, beam] of state.beams) {
    const stripped = rstrip(text);
    if (!final) return [stripped, beam.frames.slice(0, stripped.length)];
    if (!stripped) break;
    const [context, partial] = vocabulary.context(stripped);
    if (vocabulary.canEnd(context, partial)) {
      if (bestOpen !== null && incompleteMargin !== null && bestOpen[1].total - beam.total > incompleteMargin) break;
      return [stripped, beam.frames.slice(0, stripped.length)];
    }
    if (bestOpen === null) bestOpen = [text, beam];
  }
  if (bestOpen !== null && incompleteMargin !== null) {
    const [text, beam] = bestOpen;
    const done = rstrip(text.slice(0, text.lastIndexOf(" ") + 1));
    return [done, beam.frames.slice(0, done.length)];
  }
  return ["", []];
}

function editDistance(a, b) {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current.push(Math.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] !== b[j - 1] ? 1 : 0)));
    }
    previous = current;
  }
  return previous[b.length];
}

export function disagreement(text, bestPath) {
  const longest = Math.max(text.length, bestPath.length);
  return longest ? editDistance(text, bestPath) / longest : 0.0;
}

function wordsOf(text, frames, frameSeconds, offsetSeconds) {
  const words = [];
  let start = null;
  const padded = `${text} `;
  for (let i = 0; i < padded.length; i++) {
    const ch = padded[i];
    if (ch !== " " && start === null) start = i;
    else if (ch === " " && start !== null) {
      words.push({ word: text.slice(start, i), start: offsetSeconds + frames[start] * frameSeconds,
        end: offsetSeconds + (frames[i - 1] + 1) * frameSeconds });
      start = null;
    }
  }
  return words;
}

function argmax(values) {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}

/** A loaded CTC model and the manifest's decoding settings (extra.asr). */
export class SpeechRecognizer {
  static async load(modelUrl, options = {}) {
    return new SpeechRecognizer(await StreamingModel.load(modelUrl, options));
  }

  constructor(model) {
    const asr = model.manifest.extra?.asr;
    if (asr == null) {
      throw new LstmEdgeError("manifest: expected an extra.asr block (a speech recognizer), got none");
    }
    if ((asr.output ?? "log_probabilities") !== "log_probabilities") {
      throw new LstmEdgeError(`extra.asr.output: expected "log_probabilities", got ${JSON.stringify(asr.output)}`);
    }
    const decoder = { ...DECODER_DEFAULTS, ...(asr.decoder ?? {}) };
    if ((decoder.method ?? "beam_search") !== "beam_search") {
      throw new LstmEdgeError(`extra.asr.decoder.method: expected "beam_search", got ${JSON.stringify(decoder.method)}`);
    }
    this.model = model;
    this.tokens = asr.tokens;
    this.blank = asr.blank;
    this.decoder = decoder;
    this.endpoint = asr.endpoint?.rules ?? DEFAULT_ENDPOINT_RULES;
    this.frameStack = asr.frame_stack ?? 1;
    this.vocabulary = new Vocabulary(asr.tokens, asr.lexicon, asr.grammar ?? null, asr.blank);
    const f = model.manifest.frontend;
    this.sampleRate = f.sample_rate;
    this.nMels = f.n_mels;
    if (this.nMels * this.frameStack !== model.inputWidth) {
      throw new LstmEdgeError(`manifest: expected n_mels x frame_stack = ${model.inputWidth} (the weight file's ${
        ""}input width), got ${this.nMels} x ${this.frameStack}`);
    }
    this.frameSeconds = this.frameStack * f.hop_length / this.sampleRate;
    const idle = "idle_reset" in asr ? asr.idle_reset : { after_seconds: 0.75, lookback_seconds: 0.25 };
    this.idleFrames = idle ? roundHalfEven(idle.after_seconds / this.frameSeconds) : 0;
    this.lookbackFrames = idle ? roundHalfEven(idle.lookback_seconds / this.frameSeconds) : 0;
  }

  createStream() {
    return new RecognizerStream(this);
  }
}

class Utterance {
  constructor(startFrame) {
    this.startFrame = startFrame;
    this.beams = newBeamState();
    this.lastSpeechFrame = -1;
    this.partial = "";
    this.greedy = { tokens: [], previous: -1 };
  }
}

/** One audio stream: push PCM (Int16Array or Float32Array at 16 kHz), get partial and final results. */
export class RecognizerStream {
  constructor(recognizer) {
    this.recognizer = recognizer;
    this.frontend = new LogMelFrontend(recognizer.model, Math.round(recognizer.sampleRate * CHUNK_SECONDS));
    this.modelStream = recognizer.model.createStream({ maxChunk: 16 });
    this.reset();
  }

  reset() {
    this.frontend.reset();
    this.modelStream.reset();
    this.pending = new Float32Array(0); // features of a frame group not yet complete
    this.recent = []; // the last model inputs (rows), for an idle reset's lookback
    this.frame = 0;
    this.utterance = new Utterance(0);
  }

  /** Feed audio; returns the results it completed ({partial} when the best hypothesis changed, finals). */
  push(pcm) {
    const features = this.frontend.push(pcm);
    if (features.length === 0) return [];
    const r = this.recognizer;
    const all = new Float32Array(this.pending.length + features.length);
    all.set(this.pending);
    all.set(features, this.pending.length);
    const width = r.model.inputWidth;
    const usable = Math.floor(all.length / width) * width;
    this.pending = all.slice(usable);
    let rows = [];
    for (let at = 0; at < usable; at += width) rows.push(all.subarray(at, at + width));
    const results = [];
    while (rows.length) {
      const input = new Float32Array(rows.length * width);
      rows.forEach((row, i) => input.set(row, i * width));
      const logProbs = this.modelStream.push(input);
      const [used, idle] = this._decode(logProbs, rows.length, results);
      this._remember(rows.slice(0, used));
      rows = rows.slice(used); // after an endpoint or an idle reset, the rest runs again from the initial state
      if (idle) {
        if (this.recent !== null && this.recent.length) {
          rows = [...this.recent, ...rows];
          this.frame -= this.recent.length;
          this.recent = null;
        }
        this.utterance = new Utterance(this.frame);
      }
    }
    return results;
  }

  _remember(consumed) {
    const keep = this.recognizer.lookbackFrames;
    if (keep === 0 || consumed.length === 0) return;
    if (consumed.length >= keep || this.recent === null) this.recent = consumed.slice(-keep);
    else this.recent = [...this.recent, ...consumed].slice(-keep);
  }

  flush() {
    return this._finish("end_of_input").filter((result) => "text" in result);
  }

  _finalText(u) {
    const r = this.recognizer;
    return bestText(u.beams, r.vocabulary, true, r.decoder.incomplete_margin ?? null);
  }

  _decode(logProbs, n, results) {
    const r = this.recognizer;
    const width = r.tokens.length;
    const fs = r.frameSeconds;
    for (let index = 0; index < n; index++) {
      const values = Array.from(logProbs.subarray(index * width, (index + 1) * width));
      const u = this.utterance;
      const best = argmax(values);
      u.beams = beamStep(u.beams, values, r.vocabulary, r.decoder);
      if (r.decoder.rejection != null) {
        if (best !== r.blank && best !== u.greedy.previous) u.greedy.tokens.push(best);
        u.greedy.previous = best;
      }
      if (best !== r.blank) u.lastSpeechFrame = this.frame;
      this.frame += 1;
      const text = bestText(u.beams, r.vocabulary)[0];
      if (text !== u.partial) {
        u.partial = text;
        results.push({ partial: text });
      }
      const silenceFrom = u.lastSpeechFrame >= 0 ? u.lastSpeechFrame + 1 : u.startFrame;
      const trailing = (this.frame - silenceFrom) * fs;
      const hasSpeech = Boolean(u.partial) && trailing > 0 && Boolean(this._finalText(u)[0]);
      const utteranceSeconds = (this.frame - u.startFrame) * fs;
      const rule = r.endpoint.find((rule) => !(rule.must_contain_speech && !hasSpeech)
        && trailing >= rule.min_trailing_silence && utteranceSeconds >= (rule.min_utterance_length ?? 0.0));
      if (rule !== undefined) {
        this.modelStream.reset();
        results.push(...this._finish(rule.name));
        return [index + 1, false];
      }
      const silentSoFar = u.lastSpeechFrame < 0 && !u.partial;
      if (r.idleFrames && silentSoFar && this.frame - u.startFrame >= r.idleFrames) {
        this.modelStream.reset();
        return [index + 1, true];
      }
    }
    return [n, false];
  }

  _finish(reason) { // reason: the endpoint rule's name, or end_of_input (not part of the result, as in Python)
    const r = this.recognizer;
    const u = this.utterance;
    const [text, frames] = this._finalText(u);
    this.utterance = new Utterance(this.frame);
    if (!text) return [];
    const rule = r.decoder.rejection;
    if (rule != null) {
      const bestPath = u.greedy.tokens.map((t) => r.tokens[t]).join("").split(/\s+/).filter(Boolean).join(" ");
      if (disagreement(text, bestPath) > rule.max_disagreement) return u.partial ? [{ partial: "" }] : [];
    }
    const words = wordsOf(text, frames, r.frameSeconds, u.startFrame * r.frameSeconds);
    return [{ text, start: round(words[0].start, 3), end: round(words[words.length - 1].end, 3),
      words: words.map((w) => ({ word: w.word, start: round(w.start, 3), end: round(w.end, 3) })) }];
  }
}
