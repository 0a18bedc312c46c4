import { describe, expect, it } from 'vitest';

import { recommend } from '../../src/recommend.js';
import { thrownSync } from '../helpers/errors.js';

describe("recommend: the PMA paper's settings by scale", () => {
  it.each([
    ['0.7B/7B MoE', { totalParams: '7B', activeParams: '0.7B' }, 4e9, 10],
    ['1.3B/13B MoE', { totalParams: '13B', activeParams: '1.3B' }, 8e9, 10],
    ['10B/100B MoE', { totalParams: '100B', activeParams: '10B' }, 80e9, 10],
    ['411M dense', { totalParams: '411M' }, 2e9, 6],
    ['2B dense', { totalParams: 2e9 }, 5e9, 6],
    ['8B dense', { totalParams: '8B' }, 15e9, 10],
    ['70B dense', { totalParams: '70B', activeParams: '70B' }, 40e9, 10],
  ] as const)('%s: the reported interval and N', (_what, o, interval, n) => {
    const r = recommend(o);
    expect([r.intervalTokens, r.n, r.windowTokens, r.extrapolated]).toEqual([interval, n, interval * n, false]);
    expect(r.source).toContain('Model Merging in Pre-training of Large Language Models');
    expect(r.caveat).toContain('only the 1.3B/13B MoE was swept');
  });

  it('reads between the reported sizes on a log scale, and flags sizes beyond them', () => {
    const mid = recommend({ totalParams: '30B', activeParams: '3B' });
    expect(mid.intervalTokens).toBeGreaterThan(8e9);
    expect(mid.intervalTokens).toBeLessThan(80e9);
    expect(mid.extrapolated).toBe(false);
    const big = recommend({ totalParams: '400B', activeParams: '40B' });
    expect([big.intervalTokens, big.extrapolated]).toEqual([320e9, true]);
    expect(recommend({ totalParams: '100M' }).extrapolated).toBe(true);
  });

  it('gives the interval in steps and the merge options for the window', () => {
    const r = recommend({ totalParams: '13B', activeParams: '1.3B', tokensPerStep: '4M' });
    expect(r.intervalSteps).toBe(2000);
    expect(r.mergeArgs).toEqual(['--interval', '8B', '--window', '80B', '--tokens-per-step', '4M']);
  });

  it('refuses counts it cannot read, and more active than total parameters', () => {
    expect(thrownSync(() => recommend({ totalParams: 'big' })).message).toBe(
      'invalid totalParams: expected a count such as 8B, 500M or 1.3T, got "big"',
    );
    expect(thrownSync(() => recommend({ totalParams: '1B', activeParams: '2B' })).message).toBe(
      'invalid activeParams: expected at most the total parameter count (1B), got "2B"',
    );
  });
});
