import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { native, type KernelName } from '../../src/native.js';
import { HashThreads } from '../../src/output/hash-threads.js';
import { blake3Hex } from '../helpers/blake3.js';
import { rng } from '../helpers/safetensors.js';
import { scratch } from '../helpers/scratch.js';

const { tmp } = scratch('pma-blake3-');

const vectors = (
  JSON.parse(readFileSync(new URL('../fixtures/blake3/vectors.json', import.meta.url), 'utf8')) as {
    cases: { input_len: number; hash: string }[];
  }
).cases;

/** The published vectors' input: 0, 1, ..., 250, 0, 1, ... */
const pattern = (n: number) => Uint8Array.from({ length: n }, (_, i) => i % 251);

const cpu = native().cpuFeatures();
const KERNELS: { kernel: KernelName; why: string | null }[] = [
  { kernel: 'scalar', why: null },
  { kernel: 'avx2', why: cpu.kernels.includes('avx2') ? null : 'this CPU has no AVX2' },
  { kernel: 'avx512', why: cpu.kernels.includes('avx512') ? null : 'this CPU has no AVX-512' },
];

describe('BLAKE3', () => {
  it('the independent model gives the published test vectors', () => {
    for (const v of vectors) expect(blake3Hex(pattern(v.input_len)), `length ${v.input_len}`).toBe(v.hash);
  });

  for (const { kernel, why } of KERNELS) {
    it.skipIf(why !== null)(
      `the ${kernel} path: the published vectors, and the model's digest at lane, subtree and stack edges${why ? ` (skipped: ${why})` : ''}`,
      () => {
        for (const v of vectors)
          expect(native().blake3(pattern(v.input_len), kernel), `length ${v.input_len}`).toBe(v.hash);
        const rand = rng(3);
        // Chunk counts around the 8 and 16 lanes and the 256-chunk subtrees, a byte either side.
        const chunks = [7, 8, 9, 15, 16, 17, 31, 33, 255, 256, 257, 511, 513, 1500];
        for (const c of chunks) {
          for (const d of [-1, 0, 1]) {
            const b = Uint8Array.from({ length: c * 1024 + d }, () => Math.floor(rand() * 256));
            expect(native().blake3(b, kernel), `${c} chunks ${d >= 0 ? '+' : ''}${d} bytes`).toBe(blake3Hex(b));
          }
        }
      },
    );
  }

  it("on the hash threads: a file hashed whole, or in ranges that cut through chunks and read blocks, is the model's digest", async () => {
    const rand = rng(11);
    const bytes = Uint8Array.from({ length: 3 * 2 ** 20 + 4321 }, () => Math.floor(rand() * 256));
    const path = join(tmp, 'f');
    writeFileSync(path, bytes);
    const want = blake3Hex(bytes);
    const threads = new HashThreads(2);
    try {
      expect(await threads.hashFile(path, 'blake3')).toBe(want);
      const cuts = [0, 1, 1023, 1025, 262_144 + 7, 1_000_000, 2_500_001, bytes.length];
      for (let i = 0; i + 1 < cuts.length; i++) {
        await threads.request({
          file: 0,
          path,
          writable: false,
          checksum: 'blake3',
          op: 'update',
          from: cuts[i] as number,
          to: cuts[i + 1] as number,
          crcs: [],
          drop: false,
        });
      }
      const r = await threads.request({ file: 0, path, writable: false, checksum: 'blake3', op: 'digest' });
      expect(r.hex).toBe(want);
    } finally {
      await threads.close();
    }
  });
});
