// A reader for the .npy files of a model directory's reference/ folder (version 1, little-endian, C order).
import { readFileSync } from "node:fs";

const TYPES = { "<f4": Float32Array, "<i2": Int16Array, "<i4": Int32Array };

export function readNpy(path) {
  const bytes = readFileSync(path);
  if (bytes.toString("latin1", 1, 6) !== "NUMPY") throw new Error(`${path}: expected a .npy file`);
  const headerLength = bytes.readUInt16LE(8);
  const header = bytes.toString("latin1", 10, 10 + headerLength);
  const descr = /'descr': '([^']+)'/.exec(header)[1];
  if (/'fortran_order': True/.test(header) || !(descr in TYPES)) {
    throw new Error(`${path}: expected a C-order ${Object.keys(TYPES).join("/")} array, got ${header}`);
  }
  const shape = /'shape': \(([^)]*)\)/.exec(header)[1].split(",").filter((s) => s.trim()).map(Number);
  const start = 10 + headerLength;
  const data = new TYPES[descr](bytes.buffer.slice(bytes.byteOffset + start, bytes.byteOffset + bytes.length));
  return { data, shape };
}
