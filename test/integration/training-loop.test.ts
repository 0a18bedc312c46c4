import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { decayWeights, merge } from '../../src/index.js';
import { pma } from '../helpers/cli.js';
import { mergeTensor } from '../helpers/reference.js';
import { readSafetensors, writeCheckpoint, type RawTensor, type TensorSpec } from '../helpers/safetensors.js';

// Issue 6: what a training run needs on top of the merge engine, on generated runs.
const tmp = mkdtempSync(join(tmpdir(), 'pma-training-loop-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
let n = 0;
const out = () => join(tmp, `out-${n++}`);

const SPECS: TensorSpec[] = [
  { name: 'embed.weight', dtype: 'BF16', shape: [97, 33] },
  { name: 'layers.0.weight', dtype: 'F32', shape: [301] },
  { name: 'layers.0.bias', dtype: 'F16', shape: [77] },
];
const run = join(tmp, 'run');
const STEPS = [1000, 2000, 3000, 4000, 5000, 6000];
const data = new Map<number, Map<string, RawTensor>>();

beforeAll(() => {
  for (const [i, s] of STEPS.entries()) data.set(s, writeCheckpoint(join(run, `checkpoint-${s}`), SPECS, 300 + i));
});

describe('--method decay', () => {
  it('merges with the schedule\'s weights, to the contract\'s bytes, and prints them', async () => {
    const o = out();
    const r = pma(['merge', run, '--last', '5', '--method', 'decay', '--schedule', 'cosine', '--out', o]);
    expect(r.status, r.stderr).toBe(0);
    const w = decayWeights('cosine', 5);
    expect(r.stderr).toContain('merging 5 checkpoint(s) with decay, cosine schedule');
    for (const [i, s] of STEPS.slice(1).entries()) expect(r.stderr).toMatch(new RegExp(`${s}  weight ${(w[i] as number).toFixed(6)}  `));
    const w32 = w.map((x) => Math.fround(x / w.reduce((a, b) => a + b, 0)));
    const got = readSafetensors(join(o, 'model.safetensors'));
    for (const spec of SPECS) {
      const inputs = STEPS.slice(1).map((s) => (data.get(s)?.get(spec.name) as RawTensor).data);
      const want = mergeTensor(spec.dtype, spec.dtype, inputs, w32);
      expect(Buffer.from(got.tensors.get(spec.name)?.data ?? []).equals(Buffer.from(want))).toBe(true);
    }
    const meta = JSON.parse(readFileSync(join(o, 'pma.json'), 'utf8')) as { method: string; schedule: string; weights: number[] };
    expect([meta.method, meta.schedule]).toEqual(['decay', 'cosine']);
  });

  it('linear decay gives the same bytes as the simple average', async () => {
    const a = await merge({ inputs: run, out: out(), method: 'decay', schedule: 'linear' });
    const b = await merge({ inputs: run, out: out() });
    expect(readFileSync(join(a.out, 'model.safetensors')).equals(readFileSync(join(b.out, 'model.safetensors')))).toBe(true);
  });
});
