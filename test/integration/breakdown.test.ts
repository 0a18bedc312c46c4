// Where a merge's time went (MergeResult.breakdown, `pma merge --json`): real merges on the real
// addon, each figure checked against what the merge did and against the others.
import { join } from 'node:path';

import { beforeAll, describe, expect, it } from 'vitest';

import { merge, type MergeBreakdown } from '../../src/index.js';
import { pma } from '../helpers/cli.js';
import { writeCheckpoint, type TensorSpec } from '../helpers/safetensors.js';
import { scratch } from '../helpers/scratch.js';

const { tmp, out } = scratch('pma-breakdown-');
const SPECS: TensorSpec[] = [
  { name: 'a.weight', dtype: 'BF16', shape: [1024, 513] },
  { name: 'b.weight', dtype: 'F32', shape: [200_003] },
  { name: 'c.bias', dtype: 'F16', shape: [999] },
];
const run = join(tmp, 'run');

beforeAll(() => {
  for (const step of [100, 200, 300]) writeCheckpoint(join(run, `checkpoint-${step}`), SPECS, step);
});

/** Every figure is a number of seconds, and the parts fit in their wholes. */
function checkConsistent(b: MergeBreakdown): void {
  const figures = [
    b.wall,
    b.plan,
    b.run,
    b.finish,
    b.fsync,
    b.disk,
    ...Object.values(b.engine),
    ...Object.values(b.hash),
  ];
  for (const x of figures) {
    expect(Number.isFinite(x)).toBe(true);
    expect(x).toBeGreaterThanOrEqual(0);
  }
  expect(b.plan + b.run + b.finish).toBeLessThanOrEqual(b.wall + 1e-5);
  const e = b.engine;
  expect(e.read + e.scan + e.compute + e.write).toBeCloseTo(e.total, 5);
  expect(b.hash.wait + b.fsync).toBeLessThanOrEqual(b.finish + 1e-5);
  // The disk's busy time is wall time within the run.
  expect(b.disk).toBeLessThanOrEqual(b.run + 1e-5);
}

describe('the breakdown of a merge', () => {
  it('times the phases, the engine and the hashing of a merge read with pread', async () => {
    const r = await merge({ inputs: run, out: out(), threads: 2, chunkSize: 256 * 1024 });
    const b = r.breakdown;
    checkConsistent(b);
    expect(b.wall).toBeCloseTo(r.elapsedMs / 1000, 5);
    // Every stage ran: chunks were read, scanned, merged and written; the output was hashed.
    expect(b.engine.read).toBeGreaterThan(0);
    expect(b.engine.scan).toBeGreaterThan(0);
    expect(b.engine.compute).toBeGreaterThan(0);
    expect(b.engine.write).toBeGreaterThan(0);
    expect(b.hash.update).toBeGreaterThan(0);
    expect(b.hash.read).toBeGreaterThan(0);
    expect(b.plan).toBeGreaterThan(0);
    expect(b.run).toBeGreaterThan(0);
  });

  it("times the disk's busy time with direct writes, and none with buffered ones", async () => {
    const direct = await merge({ inputs: run, out: out(), threads: 2, chunkSize: 256 * 1024, write: 'direct' });
    checkConsistent(direct.breakdown);
    expect(direct.breakdown.disk).toBeGreaterThan(0);
    const buffered = await merge({ inputs: run, out: out(), threads: 2, chunkSize: 256 * 1024, write: 'buffered' });
    checkConsistent(buffered.breakdown);
    expect(buffered.breakdown.disk).toBe(0);
  });

  it('counts reading through a mapping as part of the scan (the first touch of the pages)', async () => {
    // Tensors of 1 MiB and more (the engine reads smaller ones even under io 'mmap').
    const big = join(tmp, 'big-run');
    for (const step of [1, 2])
      writeCheckpoint(
        join(big, `step-${step}`),
        [
          { name: 'a.weight', dtype: 'BF16', shape: [1024, 1025] },
          { name: 'b.weight', dtype: 'F32', shape: [300_003] },
        ],
        step,
      );
    const r = await merge({ inputs: big, out: out(), io: 'mmap', threads: 1 });
    checkConsistent(r.breakdown);
    expect(r.breakdown.engine.read).toBe(0);
    expect(r.breakdown.engine.scan).toBeGreaterThan(0);
    // The small tensors of the other run are read, not mapped.
    const small = await merge({ inputs: run, out: out(), io: 'mmap', threads: 1 });
    expect(small.breakdown.engine.read).toBeGreaterThan(0);
  });

  it('is in pma merge --json, with the seconds before the merge began', () => {
    const res = pma(['merge', run, '--out', out(), '--json', '-q']);
    expect(res.status, res.stderr).toBe(0);
    const j = JSON.parse(res.stdout) as { seconds: number; breakdown: MergeBreakdown & { startup: number } };
    checkConsistent(j.breakdown);
    expect(j.breakdown.wall).toBeCloseTo(j.seconds, 5);
    // Node's start and the modules' loading take some time; not seconds.
    expect(j.breakdown.startup).toBeGreaterThan(0.01);
    expect(j.breakdown.startup).toBeLessThan(30);
  });

  it('is in a part of a merge in parts, which hashes only its own files', () => {
    const o = out();
    const parts = [0, 1].map((i) =>
      pma(['merge', run, '--out', o, '--part', `${i}/2`, '--max-shard-size', '500KB', '--json', '-q']),
    );
    for (const res of parts) {
      expect(res.status, res.stderr).toBe(0);
      const j = JSON.parse(res.stdout) as { bytes: number; status: string; breakdown: MergeBreakdown };
      expect(j.status).toBe('merged');
      checkConsistent(j.breakdown);
      expect(j.bytes).toBeGreaterThan(0);
      expect(j.breakdown.engine.total).toBeGreaterThan(0);
      expect(j.breakdown.hash.update).toBeGreaterThan(0);
    }
    // The second part found the first done and finalized the merge.
    expect((JSON.parse(parts[1]!.stdout) as { finalized: unknown }).finalized).not.toBeNull();
  });
});
