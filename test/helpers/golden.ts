import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { expect } from 'vitest';

import type { MergeOptions } from '../../src/index.js';
import { GOLDEN } from './cli.js';
import { readSafetensors } from './safetensors.js';

// The golden fixtures (test/fixtures/golden, vendored with their README): the cases, how to ask for each, and the check.
export interface GoldenCase {
  case: string;
  method: 'sma' | 'ema' | 'wma' | 'weights';
  inputs_steps: number[];
  weights: number[];
  output_dtype: string;
  alpha?: number;
}

export const cases = (
  JSON.parse(readFileSync(join(GOLDEN, 'expected', 'cases.json'), 'utf8')) as { cases: GoldenCase[] }
).cases;
export function caseOptions(c: GoldenCase): Omit<MergeOptions, 'out'> {
  // The fixtures hold NaN and Inf on purpose (canonical NaN, overflow): merged anyway.
  const o: Omit<MergeOptions, 'out'> = {
    inputs: c.inputs_steps.map((s) => join(GOLDEN, 'inputs', `checkpoint-${s}`)),
    onNonfinite: 'warn',
  };
  if (c.method === 'weights') o.weights = c.weights;
  else o.method = c.method;
  if (c.alpha !== undefined) o.alpha = c.alpha;
  if (c.output_dtype !== 'keep') o.dtype = c.output_dtype.toLowerCase() as MergeOptions['dtype'];
  return o;
}

export function cliArgs(c: GoldenCase): string[] {
  const a = [...c.inputs_steps.map((s) => join(GOLDEN, 'inputs', `checkpoint-${s}`)), '--on-nonfinite', 'warn'];
  if (c.method === 'weights') a.push('--weights', c.weights.join(','));
  else a.push('--method', c.method);
  if (c.alpha !== undefined) a.push('--alpha', String(c.alpha));
  if (c.output_dtype !== 'keep') a.push('--dtype', c.output_dtype.toLowerCase());
  return a;
}

/** Every tensor of the expected file, bit for bit: dtype, shape and bytes (NaNs included). */
export function expectGolden(c: GoldenCase, outDir: string): void {
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
