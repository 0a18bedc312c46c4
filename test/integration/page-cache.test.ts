import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { merge, verify } from '../../src/index.js';
import { describeNeeds, hasCommand } from '../helpers/requires.js';
import { writeCheckpoint, type TensorSpec } from '../helpers/safetensors.js';

// fincore (util-linux) reports how much of a file sits in the page cache; on tmpfs the page
// cache is the storage itself and cannot be dropped, so the test needs a disk filesystem.
const fsType = spawnSync('stat', ['-f', '-c', '%T', tmpdir()], { encoding: 'utf8' }).stdout.trim();
const cannotDrop = !hasCommand('fincore')
  ? 'needs fincore (util-linux)'
  : fsType === 'tmpfs' || fsType === 'ramfs'
    ? `needs a disk filesystem for ${tmpdir()}, not ${fsType}`
    : null;

function residentBytes(file: string): number {
  const out = execFileSync('fincore', ['--bytes', '--noheadings', '--output', 'RES', file], { encoding: 'utf8' });
  return Number(out.trim());
}

const SPECS: TensorSpec[] = [
  { name: 'a.weight', dtype: 'BF16', shape: [1024, 1024] },
  { name: 'b.weight', dtype: 'F32', shape: [512, 1024] },
];

let tmp: string;
let run: string;
const inputFiles = () => readdirSync(run).map((d) => join(run, d, 'model.safetensors'));

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'pma-cache-'));
  run = join(tmp, 'run');
  for (const s of [1, 2, 3]) writeCheckpoint(join(run, `step-${s}`), SPECS, s);
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describeNeeds(cannotDrop, 'page cache', () => {
  it('keep leaves the inputs cached; drop evicts what the merge read and wrote, same bytes', async () => {
    for (const f of inputFiles()) readFileSync(f); // warm
    await merge({ inputs: run, out: join(tmp, 'keep'), pageCache: 'keep' });
    for (const f of inputFiles()) expect(residentBytes(f)).toBeGreaterThanOrEqual(statSync(f).size);

    // One thread: no other reader can bring back a page after its drop, so nothing stays.
    const r = await merge({ inputs: run, out: join(tmp, 'drop'), pageCache: 'drop', threads: 1, chunkSize: '1MiB' });
    expect(r.droppedCache).toBe(true);
    for (const f of inputFiles()) expect(residentBytes(f), f).toBeLessThan(64 * 1024);
    const out = join(tmp, 'drop', 'model.safetensors');
    expect(residentBytes(out)).toBeLessThan(64 * 1024);
    const want = readFileSync(join(tmp, 'keep', 'model.safetensors'));
    expect(readFileSync(out).equals(want)).toBe(true);

    // Two threads: a drop can race a neighbour's read, so only most of it is guaranteed gone.
    for (const f of inputFiles()) readFileSync(f);
    await merge({ inputs: run, out: join(tmp, 'drop2'), pageCache: 'drop', threads: 2, chunkSize: '1MiB' });
    for (const f of inputFiles()) expect(residentBytes(f), f).toBeLessThan(statSync(f).size / 2);
    expect(readFileSync(join(tmp, 'drop2', 'model.safetensors')).equals(want)).toBe(true);
  });
});

describe('direct and buffered writes', () => {
  it('give the same bytes when one run of output outgrows the 8 MiB write buffer', async () => {
    const big = join(tmp, 'big-run');
    const specs: TensorSpec[] = [
      { name: 'odd', dtype: 'F16', shape: [333] },
      { name: 'big', dtype: 'BF16', shape: [5_000_003] },
      { name: 'after', dtype: 'F32', shape: [70_001] },
    ];
    for (const s of [1, 2]) writeCheckpoint(join(big, `step-${s}`), specs, 10 + s);
    const outs = [];
    for (const [i, o] of [
      { write: 'buffered' as const },
      { write: 'direct' as const },
      { write: 'direct' as const, dtype: 'f32' as const },
    ].entries()) {
      const out = join(tmp, `big-${i}`);
      await merge({ inputs: big, out, threads: 1, chunkSize: '256MiB', ...o });
      outs.push(readFileSync(join(out, 'model.safetensors')));
      expect((await verify(out)).problems).toEqual([]);
    }
    expect(outs[1]?.equals(outs[0] as Buffer)).toBe(true);
    const f32 = join(tmp, 'big-f32-buffered');
    await merge({ inputs: big, out: f32, threads: 1, chunkSize: '256MiB', write: 'buffered', dtype: 'f32' });
    expect(outs[2]?.equals(readFileSync(join(f32, 'model.safetensors')))).toBe(true);
  });

  it('give the same bytes for any chunk size, thread count and read mode', async () => {
    const ref = join(tmp, 'buffered');
    await merge({ inputs: run, out: ref, write: 'buffered', threads: 1 });
    const want = readFileSync(join(ref, 'model.safetensors'));
    const cases = [
      { threads: 1 },
      { threads: 2, chunkSize: 2 ** 20 + 13 },
      { threads: 2, chunkSize: 5000 },
      { threads: 2, io: 'mmap' as const, chunkSize: 3 * 2 ** 20 + 1 },
      { threads: 2, pageCache: 'drop' as const },
      // The default, write 'auto', writes direct when the page cache is dropped.
      { threads: 2, pageCache: 'drop' as const, write: 'auto' as const },
    ];
    for (const [i, c] of cases.entries()) {
      const out = join(tmp, `direct-${i}`);
      await merge({ inputs: run, out, write: 'direct', ...c });
      expect(readFileSync(join(out, 'model.safetensors')).equals(want), JSON.stringify(c)).toBe(true);
      // pma.json's SHA-256, taken from the bytes the writer thread kept, is the file's.
      expect((await verify(out)).problems, JSON.stringify(c)).toEqual([]);
    }
  });
});
