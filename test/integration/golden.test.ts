import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { merge, type MergeOptions } from '../../src/index.js';
import { native } from '../../src/native.js';
import { GOLDEN, pma } from '../helpers/cli.js';
import { readSafetensors } from '../helpers/safetensors.js';

interface GoldenCase {
  case: string;
  method: 'sma' | 'ema' | 'wma' | 'weights';
  inputs_steps: number[];
  weights: number[];
  output_dtype: string;
  alpha?: number;
}

const cases = (JSON.parse(readFileSync(join(GOLDEN, 'expected', 'cases.json'), 'utf8')) as { cases: GoldenCase[] }).cases;
const tmp = mkdtempSync(join(tmpdir(), 'pma-golden-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function caseOptions(c: GoldenCase): Omit<MergeOptions, 'out'> {
  const o: Omit<MergeOptions, 'out'> = { inputs: c.inputs_steps.map((s) => join(GOLDEN, 'inputs', `checkpoint-${s}`)) };
  if (c.method === 'weights') o.weights = c.weights;
  else o.method = c.method;
  if (c.alpha !== undefined) o.alpha = c.alpha;
  if (c.output_dtype !== 'keep') o.dtype = c.output_dtype.toLowerCase() as MergeOptions['dtype'];
  return o;
}

function cliArgs(c: GoldenCase): string[] {
  const a = c.inputs_steps.map((s) => join(GOLDEN, 'inputs', `checkpoint-${s}`));
  if (c.method === 'weights') a.push('--weights', c.weights.join(','));
  else a.push('--method', c.method);
  if (c.alpha !== undefined) a.push('--alpha', String(c.alpha));
  if (c.output_dtype !== 'keep') a.push('--dtype', c.output_dtype.toLowerCase());
  return a;
}

/** Every tensor of the expected file, bit for bit: dtype, shape and bytes (NaNs included). */
function expectGolden(c: GoldenCase, outDir: string): void {
  const want = readSafetensors(join(GOLDEN, 'expected', c.case, 'model.safetensors'));
  const got = readSafetensors(join(outDir, 'model.safetensors'));
  expect(got.metadata).toEqual({ format: 'pt' });
  expect([...got.tensors.keys()].sort()).toEqual([...want.tensors.keys()].sort());
  for (const [name, w] of want.tensors) {
    const g = got.tensors.get(name);
    expect(g?.dtype, name).toBe(w.dtype);
    expect(g?.shape, name).toEqual(w.shape);
    if (Buffer.compare(Buffer.from(g?.data ?? []), Buffer.from(w.data)) !== 0) {
      expect.fail(`${c.case}: tensor ${name} differs from the golden bytes`);
    }
  }
}

let n = 0;
const outPath = () => join(tmp, `out-${n++}`);

describe('golden cases through the library', () => {
  const kernels = native().cpuFeatures().kernels;
  for (const c of cases) {
    it(`${c.case}: 1 thread, default chunks, every kernel`, async () => {
      for (const kernel of kernels) {
        const out = outPath();
        const r = await merge({ ...caseOptions(c), out, threads: 1, kernel });
        expect(r.plan.weights.w32).toEqual(c.weights.map(Math.fround));
        expectGolden(c, out);
      }
    });
    it(`${c.case}: 2 threads, tiny chunks, pread and mmap`, async () => {
      for (const io of ['pread', 'mmap'] as const) {
        const out = outPath();
        const r = await merge({ ...caseOptions(c), out, threads: 2, chunkSize: 37, io });
        expect(r.plan.chunks.length).toBeGreaterThan(50);
        expectGolden(c, out);
      }
    });
  }
});

describe('golden cases through the CLI', () => {
  for (const c of cases) {
    it(`${c.case}: --threads 1 and --threads 2 --chunk-size 64`, () => {
      for (const extra of [['--threads', '1'], ['--threads', '2', '--chunk-size', '64']]) {
        const out = outPath();
        const r = pma(['merge', ...cliArgs(c), '--out', out, '--quiet', ...extra]);
        expect(r.stderr).toBe('');
        expect(r.status).toBe(0);
        expect(r.stdout).toMatch(/^merged \d+ checkpoints/);
        expectGolden(c, out);
      }
    });
  }

  it('sma_last2 selected with --last 2 from the run directory', () => {
    const c = cases.find((x) => x.case === 'sma_last2-keep') as GoldenCase;
    const out = outPath();
    const r = pma(['merge', join(GOLDEN, 'inputs'), '--last', '2', '--out', out, '--quiet']);
    expect(r.status).toBe(0);
    expectGolden(c, out);
  });
});
