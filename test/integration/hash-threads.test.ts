import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { native } from '../../src/native.js';
import { HashThreads, hashThreadCount } from '../../src/output/hash-threads.js';
import type { Checksum } from '../../src/plan/types.js';
import { PACKAGE_ROOT } from '../../src/util/package.js';
import { blake3Hex } from '../helpers/blake3.js';
import { rejected } from '../helpers/errors.js';
import { scratch } from '../helpers/scratch.js';

const { tmp } = scratch('pma-hash-threads-');

function file(name: string, bytes: Buffer): { path: string; bytes: Buffer } {
  const path = join(tmp, name);
  writeFileSync(path, bytes);
  return { path, bytes };
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
/** Each file its own checksum: BLAKE3 for even numbers, SHA-256 for odd, so states never mix. */
const CHECKSUM = ['blake3', 'sha256'] as const;
const digestOf = (i: number, b: Buffer) => (i % 2 === 0 ? blake3Hex(b) : sha(b));

describe('hash threads', () => {
  it('hash several files at once, each from its ranges in turn, whichever thread takes each', async () => {
    // Sizes that are not multiples of the 256 KiB read block, ranges that cut through blocks.
    const files = [700_001, 1_300_000, 5].map((n, i) => file(`f${i}`, randomBytes(n)));
    const threads = new HashThreads(2);
    try {
      const cuts = files.map((f) =>
        [0, 3, 262_144, 262_145, 600_000, f.bytes.length].filter((c) => c <= f.bytes.length),
      );
      // Interleaved: a request of file 0, then of file 1, ... Each file's state is kept under its
      // number whichever thread takes a request, so a request that reached another file's state,
      // or a fresh one, would make a digest wrong.
      for (let step = 0; step < 5; step++) {
        await Promise.all(
          files.map(async (f, i) => {
            const c = cuts[i] as number[];
            if (step + 1 >= c.length) return;
            const r = await threads.request({
              file: i,
              path: f.path,
              writable: false,
              checksum: CHECKSUM[i % 2] as Checksum,
              op: 'update',
              from: c[step] as number,
              to: c[step + 1] as number,
              crcs: [],
              drop: false,
            });
            expect(r.read).toBeGreaterThanOrEqual(0);
          }),
        );
      }
      const digests = await Promise.all(
        files.map((f, i) =>
          threads.request({
            file: i,
            path: f.path,
            writable: false,
            checksum: CHECKSUM[i % 2] as Checksum,
            op: 'digest',
          }),
        ),
      );
      expect(digests.map((d) => d.hex)).toEqual(files.map((f, i) => digestOf(i, f.bytes)));
    } finally {
      await threads.close();
    }
  });

  it('feed the CRC-32 of the members a range overlaps, compute one alone, and write a field', async () => {
    const f = file('crc', randomBytes(600_000));
    const threads = new HashThreads(1);
    const about = { file: 0, path: f.path, writable: true, checksum: 'sha256' as const };
    try {
      const members = [
        { start: 10, end: 300_000, crc: 0 },
        { start: 300_000, end: 300_001, crc: 0 },
        { start: 400_000, end: 599_000, crc: 0 },
      ];
      const r = await threads.request({ ...about, op: 'update', from: 0, to: 500_000, crcs: members, drop: false });
      const crcOf = (a: number, b: number) => native().crc32(f.bytes.subarray(a, b), 0);
      // The third member is fed only as far as the range goes.
      expect(r.crcs).toEqual([crcOf(10, 300_000), crcOf(300_000, 300_001), crcOf(400_000, 500_000)]);
      const alone = await threads.request({ ...about, op: 'crc', start: 123, end: 456_789 });
      expect(alone.crc).toBe(crcOf(123, 456_789));
      await threads.request({ ...about, op: 'put', at: 500_000, value: 0xdeadbeef });
      const rest = await threads.request({ ...about, op: 'update', from: 500_000, to: 600_000, crcs: [], drop: true });
      expect(rest.update).toBeGreaterThanOrEqual(0);
      const written = Buffer.from(f.bytes);
      written.writeUInt32LE(0xdeadbeef, 500_000);
      expect((await threads.request({ ...about, op: 'digest' })).hex).toBe(sha(written));
    } finally {
      await threads.close();
    }
  });

  it('report a missing file and a file shorter than the range as PmaErrors naming it', async () => {
    const threads = new HashThreads(1);
    try {
      const missing = join(tmp, 'missing');
      const gone = await rejected(
        threads.request({
          file: 0,
          path: missing,
          writable: false,
          checksum: 'blake3',
          op: 'update',
          from: 0,
          to: 10,
          crcs: [],
          drop: false,
        }),
      );
      expect(gone.code).toBe('E_INPUT');
      expect(gone.file).toBe(missing);
      const short = file('short', randomBytes(1000));
      const err = await rejected(
        threads.request({
          file: 1,
          path: short.path,
          writable: false,
          checksum: 'blake3',
          op: 'update',
          from: 0,
          to: 4096,
          crcs: [],
          drop: false,
        }),
      );
      expect(err.code).toBe('E_IO');
      expect(err.message).toBe(`cannot hash the output ${short.path}: it ends at 1000, expected 4096 bytes`);
    } finally {
      await threads.close();
    }
  });

  it('never keep a process alive once idle, closed or not', () => {
    const f = file('idle', randomBytes(5000));
    // Built JavaScript, as a user's process runs it; it ends only if the idle thread lets it.
    const script = `
      import { HashThreads } from ${JSON.stringify(join(PACKAGE_ROOT, 'dist', 'output', 'hash-threads.js'))};
      const t = new HashThreads(2);
      const r = await t.request({ file: 0, path: ${JSON.stringify(f.path)}, writable: false, checksum: 'sha256', op: 'digest' });
      console.log(r.hex);
    `;
    const c = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 20_000 });
    expect(c.error).toBeUndefined();
    expect(c.status).toBe(0);
    expect(c.stdout.trim()).toBe(sha(Buffer.alloc(0)));
  });

  it('number a quarter of the cores, at least one, at most eight, never more than the files', () => {
    expect(hashThreadCount(1)).toBe(1);
    expect(hashThreadCount(0)).toBe(1);
    const many = hashThreadCount(1000);
    expect(many).toBeGreaterThanOrEqual(1);
    expect(many).toBeLessThanOrEqual(8);
    expect(hashThreadCount(2)).toBeLessThanOrEqual(2);
  });
});
