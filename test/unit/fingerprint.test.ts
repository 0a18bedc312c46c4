// The plan fingerprint is the SHA-256 of the plan's JSON, fed in pieces: the same digest as
// hashing JSON.stringify of the whole, which partial outputs made before recorded.
import { createHash } from 'node:crypto';

import { describe, expect, it } from 'vitest';

import { planFingerprint } from '../../src/output/state.js';
import type { MergePlan } from '../../src/plan/types.js';

const whole = (work: object) => createHash('sha256').update(JSON.stringify(work), 'utf8').digest('hex');

describe('planFingerprint', () => {
  it('is the SHA-256 of JSON.stringify of the plan less its notes and warnings', () => {
    const big = Array.from({ length: 40_000 }, (_, i) => ({ name: `t.${i}`, shape: [i, 3], note: 'é"\\\u2028' }));
    const work = {
      version: 2,
      format: 'safetensors',
      alpha: null,
      schedule: undefined, // left out, as JSON.stringify leaves it out
      fn: () => 1, // left out too
      weights: { w64: [0.25, 0.75], w32: [0.25, 0.75] },
      tensors: big,
      holes: [undefined, () => 0, 1], // null, null, 1
      chunks: [],
      header: `{"a":${JSON.stringify('x'.repeat(3_000_000))}}`,
    };
    const plan = { ...work, notes: ['not hashed'], warnings: ['nor this'] } as unknown as MergePlan;
    expect(planFingerprint(plan)).toBe(whole(work));
    // Notes and warnings change nothing; any other member does.
    expect(planFingerprint({ ...plan, notes: [], warnings: ['x'] })).toBe(whole(work));
    expect(planFingerprint({ ...plan, alpha: 0.5 })).not.toBe(whole(work));
  });
});
