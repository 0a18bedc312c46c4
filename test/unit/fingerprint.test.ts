// The plan fingerprint is the SHA-256 of the plan's JSON, fed in pieces, less its notes, warnings
// and tensor list, with each output header entered as its SHA-256 (src/output/state.ts).
import { createHash } from 'node:crypto';

import { describe, expect, it } from 'vitest';

import { planFingerprint } from '../../src/output/state.js';
import type { MergePlan } from '../../src/plan/types.js';

const sha = (s: string) => createHash('sha256').update(s, 'utf8').digest('hex');

describe('planFingerprint', () => {
  it('is the SHA-256 of JSON.stringify of the plan less notes, warnings and tensors, headers by their SHA-256', () => {
    const big = Array.from({ length: 40_000 }, (_, i) => ({ name: `t.${i}`, shape: [i, 3], note: 'é"\\\u2028' }));
    const header = `{"a":${JSON.stringify('x'.repeat(3_000_000))}}`;
    const work = {
      version: 2,
      format: 'safetensors',
      alpha: null,
      schedule: undefined, // left out, as JSON.stringify leaves it out
      fn: () => 1, // left out too
      weights: { w64: [0.25, 0.75], w32: [0.25, 0.75] },
      holes: [undefined, () => 0, 1], // null, null, 1
      chunks: big,
    };
    const outputs = [
      { name: 'model.safetensors', size: 10, header, tensors: 1, crcs: [] },
      { name: 'x.distcp', size: 4, header: null, tensors: 0, crcs: [{ start: 0, end: 4, fields: [9] }] },
    ];
    const hashed = outputs.map((f) => ({ ...f, header: f.header === null ? null : sha(f.header) }));
    const want = sha(JSON.stringify({ ...work, outputs: hashed }));
    const plan = {
      ...work,
      outputs,
      tensors: big,
      notes: ['not hashed'],
      warnings: ['nor this'],
    } as unknown as MergePlan;
    expect(planFingerprint(plan)).toBe(want);
    // Notes, warnings and the tensor list change nothing; any other member does, a header's byte too.
    expect(planFingerprint({ ...plan, notes: [], warnings: ['x'], tensors: [] })).toBe(want);
    expect(planFingerprint({ ...plan, alpha: 0.5 })).not.toBe(want);
    const edited = [{ ...outputs[0], header: header.replace('"a"', '"b"') }, outputs[1]];
    expect(planFingerprint({ ...plan, outputs: edited } as unknown as MergePlan)).not.toBe(want);
  });
});
