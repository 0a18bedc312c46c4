import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setImmediate as tick } from 'node:timers/promises';
import { crc32 } from 'node:zlib';

import { describe, expect, it } from 'vitest';

import { OutputHasher } from '../../src/output/hasher.js';
import type { MergePlan, PlanChunk } from '../../src/plan/types.js';

// The output hasher rewrites the CRC-32 fields of zip members a DCP merge replaced, in the same
// pass that hashes the file: a field after the member's bytes as the pass goes, one before them
// (a local header) once they are all written.
const copy = (outOffset: number, bytes: number): PlanChunk => ({
  inputs: ['in'],
  outputs: ['f'],
  ops: [{ kind: 'copy', tensor: 'x', outFile: 0, outOffset, bytes, inputs: [{ file: 0, offset: outOffset }] }],
  bytes,
});

describe('CRC-32 fields of replaced zip members', () => {
  it('are written before the pass hashes them, whichever order the ranges finish in', async () => {
    for (const order of [
      [0, 1, 2],
      [0, 2, 1],
      [2, 0, 1],
      [1, 2, 0],
    ]) {
      const dir = mkdtempSync(join(tmpdir(), 'pma-hasher-'));
      const file = Buffer.alloc(64);
      for (let i = 16; i < 48; i++) file[i] = (i * 37) & 0xff;
      writeFileSync(join(dir, 'f'), file);
      const plan = {
        checksum: 'sha256',
        outputs: [{ name: 'f', size: 64, header: null, tensors: 0, crcs: [{ start: 16, end: 48, fields: [4, 52] }] }],
      } as unknown as MergePlan;
      const h = new OutputHasher(dir, plan, false);
      const chunks = [copy(0, 16), copy(16, 32), copy(48, 16)];
      for (const i of order) {
        h.chunkDone(chunks[i] as PlanChunk);
        await tick(); // the pass runs between chunks, as during a merge; it must wait, not spin
        await new Promise((r) => setTimeout(r, 5));
      }
      const sums = await h.digests();
      const done = readFileSync(join(dir, 'f'));
      const want = crc32(file.subarray(16, 48)) >>> 0;
      expect([done.readUInt32LE(4), done.readUInt32LE(52)], order.join()).toEqual([want, want]);
      expect(sums.f).toBe(createHash('sha256').update(done).digest('hex'));
    }
  });
});
