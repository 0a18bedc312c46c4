import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { merge } from '../../src/index.js';
import { writeCheckpoint, type TensorSpec } from '../helpers/safetensors.js';

// fincore (util-linux) reports how much of a file sits in the page cache; on tmpfs the page
// cache is the storage itself and cannot be dropped, so the test needs a disk filesystem.
const hasFincore = spawnSync('fincore', ['--version']).status === 0;
const fsType = spawnSync('stat', ['-f', '-c', '%T', tmpdir()], { encoding: 'utf8' }).stdout.trim();
const canDrop = hasFincore && fsType !== 'tmpfs' && fsType !== 'ramfs';

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

describe.skipIf(!canDrop)('page cache', () => {
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
