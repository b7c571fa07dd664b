// Unit tests of the JavaScript CTC decoder (asr.mjs) on hand-made log-probabilities, and of the recognizer on the
// model's reference input when LSTM_EDGE_ASR_DIR names a speech-recognizer model directory.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { readNpy } from "./npy.mjs";

const build = process.env.LSTM_EDGE_WASM_BUILD;
if (!build) throw new Error("expected LSTM_EDGE_WASM_BUILD in the environment");
const { Vocabulary, beamStep, bestText, disagreement } = await import(join(build, "asr.mjs"));
const { StreamingModel } = await import(join(build, "lstm-edge.mjs"));

const TOKENS = ["<blank>", " ", "a", "b", "c"];
const SETTINGS = { beam_size: 8, token_top_k: 5, token_min_log_prob: -12, keep_complete: true, incomplete_margin: null };

/** Frames whose most probable token spells `spelled` ("-" = blank), each at probability 0.9. */
function frames(spelled) {
  return [...spelled].map((ch) => {
    const hot = ch === "-" ? 0 : TOKENS.indexOf(ch);
    return TOKENS.map((_, i) => Math.log(i === hot ? 0.9 : 0.1 / (TOKENS.length - 1)));
  });
}

function decode(spelled, vocabulary, settings = SETTINGS) {
  let state = { beams: new Map([["", { blank: 0, token: -Infinity, total: 0, frames: [] }]]), frame: 0 };
  for (const row of frames(spelled)) state = beamStep(state, row, vocabulary, settings);
  return bestText(state, vocabulary, true, settings.incomplete_margin);
}

test("lexicon: only lexicon words are spelled, repeats need a blank between them", () => {
  const vocabulary = new Vocabulary(TOKENS, ["ab", "abb", "ca"]);
  assert.deepEqual(decode("aab-b ca", vocabulary), ["abb ca", [0, 2, 4, 5, 6, 7]]); // each character's first frame
  assert.equal(decode("aabb ca", vocabulary)[0], "ab ca");
  assert.equal(decode("cc", vocabulary)[0], "ca"); // "c" is no word: the most probable word the audio allows
});

test("grammar automaton: only its sentences are final results; keep_complete keeps one in a full beam", () => {
  const grammar = { states: 3, start: 0, final: [2], arcs: [[0, "ab", 1], [1, "ca", 2]] };
  const vocabulary = new Vocabulary(TOKENS, ["ab", "ca", "cab"], grammar);
  assert.equal(decode("ab-ca", vocabulary)[0], "ab ca");
  assert.equal(decode("ab", vocabulary)[0], ""); // not a sentence of the grammar
  assert.equal(decode("ab c", vocabulary)[0], "");
  assert.equal(decode("ab c", vocabulary, { ...SETTINGS, incomplete_margin: 5 })[0], "ab"); // its whole words
  assert.equal(decode("ab cab", vocabulary, { ...SETTINGS, beam_size: 1 })[0], "ab ca");
});

test("disagreement is the character edit distance over the longer text", () => {
  assert.equal(disagreement("play music", "play music"), 0);
  assert.equal(disagreement("abc", "abd"), 1 / 3);
  assert.equal(disagreement("", ""), 0);
});

test("the recognizer's model gives the reference output within the manifest's gates", async () => {
  const modelDir = process.env.LSTM_EDGE_ASR_DIR;
  if (!modelDir) throw new Error("expected LSTM_EDGE_ASR_DIR in the environment");
  const manifest = JSON.parse(readFileSync(join(modelDir, "manifest.json"), "utf8"));
  const input = readNpy(join(modelDir, "reference", "input.npy")).data;
  const want = readNpy(join(modelDir, "reference", "output.npy")).data;
  const model = await StreamingModel.load(modelDir, { precision: "float" });
  const got = model.createStream().push(input);
  let diff = 0;
  let peak = 0;
  for (let i = 0; i < want.length; i++) {
    diff = Math.max(diff, Math.abs(got[i] - want[i]));
    peak = Math.max(peak, Math.abs(want[i]));
  }
  assert.ok(diff <= manifest.tolerances.float_max_abs_diff * (1 + peak), `max |wasm - torch| ${diff}`);
});
