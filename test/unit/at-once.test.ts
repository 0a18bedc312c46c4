import { describe, expect, it } from 'vitest';

import { eachAtOnce } from '../../src/util/at-once.js';

const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('eachAtOnce', () => {
  it('runs every item, never more than the limit at once', async () => {
    let running = 0;
    let most = 0;
    const seen: number[] = [];
    await eachAtOnce([...Array(20).keys()], 3, async (i) => {
      running++;
      most = Math.max(most, running);
      await tick(1 + (i % 4));
      seen.push(i);
      running--;
    });
    expect(most).toBe(3);
    expect(seen.sort((a, b) => a - b)).toEqual([...Array(20).keys()]);
  });

  it('throws the first failure only once the items in flight have settled, and starts no more', async () => {
    const started: number[] = [];
    const settled: number[] = [];
    const err = await eachAtOnce([0, 1, 2, 3, 4, 5, 6, 7], 3, async (i) => {
      started.push(i);
      await tick(i === 1 ? 1 : 20);
      settled.push(i);
      if (i === 1) throw new Error('item 1 failed');
    }).catch((e: unknown) => e);
    expect((err as Error).message).toBe('item 1 failed');
    // 0 and 2 were in flight when 1 failed: both settled before the call did; nothing after them began.
    expect(started.sort()).toEqual([0, 1, 2]);
    expect(settled.sort()).toEqual([0, 1, 2]);
  });

  it('does nothing for no items', async () => {
    await eachAtOnce([], 4, () => Promise.reject(new Error('never')));
  });
});
