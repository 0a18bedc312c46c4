import { describe, expect, it } from 'vitest';

import { withReadSlot } from '../../src/util/read-slots.js';

describe('withReadSlot', () => {
  it('runs at most 16 reads at once, and every one of them', async () => {
    let now = 0;
    let most = 0;
    const done = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        withReadSlot(async () => {
          most = Math.max(most, ++now);
          await new Promise((r) => setTimeout(r, 1 + (i % 3)));
          now--;
          return i;
        }),
      ),
    );
    expect(most).toBe(16);
    expect(done).toEqual(Array.from({ length: 50 }, (_, i) => i));
  });

  it('reuses a buffer once its read is over, the smallest that fits', async () => {
    const first = await withReadSlot(async (buffer) => [buffer(100_000), buffer(3_000_000)]);
    const again = await withReadSlot(async (buffer) => buffer(90_000));
    expect(again).toBe(first[0]);
    const big = await withReadSlot(async (buffer) => buffer(2_000_000));
    expect(big).toBe(first[1]);
  });

  it('gives a failed read its error and frees its slot', async () => {
    const failures = await Promise.all(
      Array.from({ length: 20 }, () =>
        withReadSlot(async () => {
          throw new Error('disk on fire');
        }).catch((e: unknown) => (e as Error).message),
      ),
    );
    expect(new Set(failures)).toEqual(new Set(['disk on fire']));
    await expect(withReadSlot(async () => 'still works')).resolves.toBe('still works');
  });
});
