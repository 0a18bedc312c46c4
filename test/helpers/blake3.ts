/**
 * BLAKE3 (hash mode, 32-byte digest) from the specification's recursive definition of the tree,
 * independent of the addon's (a stack of subtrees, SIMD lanes): the model the native digests are
 * checked against. Slow (a few MB/s); for test-sized inputs.
 */
const IV = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];
const PERMUTATION = [2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8];
const CHUNK_START = 1;
const CHUNK_END = 2;
const PARENT = 4;
const ROOT = 8;
const CHUNK = 1024;

const rotr = (x: number, n: number) => ((x >>> n) | (x << (32 - n))) >>> 0;

function mix(v: number[], a: number, b: number, c: number, d: number, x: number, y: number): void {
  const s = (i: number) => v[i] as number;
  v[a] = (s(a) + s(b) + x) >>> 0;
  v[d] = rotr(s(d) ^ s(a), 16);
  v[c] = (s(c) + s(d)) >>> 0;
  v[b] = rotr(s(b) ^ s(c), 12);
  v[a] = (s(a) + s(b) + y) >>> 0;
  v[d] = rotr(s(d) ^ s(a), 8);
  v[c] = (s(c) + s(d)) >>> 0;
  v[b] = rotr(s(b) ^ s(c), 7);
}

/** The compression function's first 8 output words. */
function compress(cv: number[], block: Uint8Array, counter: number, len: number, flags: number): number[] {
  const padded = new Uint8Array(64);
  padded.set(block);
  const dv = new DataView(padded.buffer);
  let m = Array.from({ length: 16 }, (_, i) => dv.getUint32(4 * i, true));
  const v = [...cv, ...IV.slice(0, 4), counter >>> 0, Math.floor(counter / 2 ** 32) >>> 0, len, flags];
  for (let round = 0; round < 7; round++) {
    const w = (i: number) => m[i] as number;
    mix(v, 0, 4, 8, 12, w(0), w(1));
    mix(v, 1, 5, 9, 13, w(2), w(3));
    mix(v, 2, 6, 10, 14, w(4), w(5));
    mix(v, 3, 7, 11, 15, w(6), w(7));
    mix(v, 0, 5, 10, 15, w(8), w(9));
    mix(v, 1, 6, 11, 12, w(10), w(11));
    mix(v, 2, 7, 8, 13, w(12), w(13));
    mix(v, 3, 4, 9, 14, w(14), w(15));
    m = PERMUTATION.map((p) => m[p] as number);
  }
  return Array.from({ length: 8 }, (_, i) => ((v[i] as number) ^ (v[i + 8] as number)) >>> 0);
}

/** A node's last compression, not yet done: the root's is done with ROOT added. */
interface Node {
  cv: number[];
  block: Uint8Array;
  counter: number;
  len: number;
  flags: number;
}

const finish = (n: Node, extra = 0) => compress(n.cv, n.block, n.counter, n.len, n.flags | extra);

/** One chunk (up to 1024 bytes) with its index. */
function chunkNode(bytes: Uint8Array, index: number): Node {
  let cv = IV;
  const blocks = Math.max(1, Math.ceil(bytes.length / 64));
  for (let b = 0; b < blocks - 1; b++) {
    cv = compress(cv, bytes.subarray(64 * b, 64 * b + 64), index, 64, b === 0 ? CHUNK_START : 0);
  }
  const last = bytes.subarray(64 * (blocks - 1));
  return { cv, block: last, counter: index, len: last.length, flags: (blocks === 1 ? CHUNK_START : 0) | CHUNK_END };
}

/** The subtree over `bytes`, whose first chunk has index `first`: the left side takes the largest power of two chunks that leaves the right side at least a byte. */
function subtree(bytes: Uint8Array, first: number): Node {
  if (bytes.length <= CHUNK) return chunkNode(bytes, first);
  let leftChunks = 1;
  while (2 * leftChunks * CHUNK < bytes.length) leftChunks *= 2;
  const left = finish(subtree(bytes.subarray(0, leftChunks * CHUNK), first));
  const right = finish(subtree(bytes.subarray(leftChunks * CHUNK), first + leftChunks));
  const block = new Uint8Array(64);
  const dv = new DataView(block.buffer);
  [...left, ...right].forEach((w, i) => dv.setUint32(4 * i, w, true));
  return { cv: IV, block, counter: 0, len: 64, flags: PARENT };
}

/** The BLAKE3 digest of `bytes`, hex: what `b3sum` prints. */
export function blake3Hex(bytes: Uint8Array): string {
  const out = finish(subtree(bytes, 0), ROOT);
  const b = Buffer.alloc(32);
  out.forEach((w, i) => b.writeUInt32LE(w, 4 * i));
  return b.toString('hex');
}
