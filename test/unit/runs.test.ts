import { describe, expect, it } from 'vitest';

import type { LocatedChunk } from '../../src/checkpoints/contents.js';
import { tensorRuns } from '../../src/plan/runs.js';
import { rng } from '../helpers/safetensors.js';

/** Chunks cutting `shape` at the given cuts per dimension, each stored at its own place in file `f`. */
function grid(shape: number[], cuts: number[][], f: string): LocatedChunk[] {
  const bounds = shape.map((n, d) => [0, ...(cuts[d] ?? []), n]);
  const chunks: LocatedChunk[] = [];
  let offset = 1000;
  const walk = (d: number, offsets: number[], sizes: number[]) => {
    if (d === shape.length) {
      chunks.push({ offsets, sizes, file: f, offset });
      offset += sizes.reduce((a, b) => a * b, 1) * 4 + 64;
      return;
    }
    const b = bounds[d] as number[];
    for (let i = 0; i + 1 < b.length; i++)
      walk(d + 1, [...offsets, b[i] as number], [...sizes, (b[i + 1] as number) - (b[i] as number)]);
  };
  walk(0, [], []);
  return chunks.reverse(); // any order
}

/** Where element `at` of the tensor lives in a chunk list (the ground truth, element by element). */
function where(chunks: LocatedChunk[], at: number[]): { file: string; offset: number } {
  const c = chunks.find((k) =>
    k.offsets.every((o, d) => (at[d] as number) >= o && (at[d] as number) < o + (k.sizes[d] as number)),
  );
  if (!c) throw new Error('untiled');
  let i = 0;
  for (let d = 0; d < at.length; d++) i = i * (c.sizes[d] as number) + (at[d] as number) - (c.offsets[d] as number);
  return { file: c.file, offset: c.offset + 4 * i };
}

function check(shape: number[], layouts: LocatedChunk[][]): number {
  const runs = tensorRuns(shape, layouts, 4);
  const total = shape.reduce((a, b) => a * b, 1);
  let next = 0;
  for (const r of runs) {
    expect(r.element).toBe(next);
    for (let e = 0; e < r.count; e++) {
      const at: number[] = [];
      let rest = r.element + e;
      for (let d = shape.length - 1; d >= 0; d--) {
        at.unshift(rest % (shape[d] as number));
        rest = Math.floor(rest / (shape[d] as number));
      }
      for (const [i, l] of layouts.entries())
        expect({ file: r.sources[i]?.file, offset: (r.sources[i]?.offset as number) + 4 * e }).toEqual(where(l, at));
    }
    next += r.count;
  }
  expect(next).toBe(total);
  return runs.length;
}

describe('tensorRuns', () => {
  it('one run per row block when every checkpoint cuts by rows the same way', () => {
    const l = (f: string) => grid([8, 6], [[2, 5]], f);
    expect(check([8, 6], [l('a'), l('b')])).toBe(3);
  });

  it('a window whose layouts differ (2 ranks, then 3, then 1): the common refinement', () => {
    expect(check([6, 10], [grid([6, 10], [[3]], 'a'), grid([6, 10], [[2, 4]], 'b'), grid([6, 10], [], 'c')])).toBe(4);
  });

  it('column blocks (tensor parallel) become runs row by row', () => {
    const n = check([5, 8], [grid([5, 8], [[], [3]], 'a'), grid([5, 8], [[], [3]], 'b')]);
    expect(n).toBe(10);
  });

  it('random grids in 1 to 4 dimensions, element by element', () => {
    const rand = rng(7);
    for (let trial = 0; trial < 60; trial++) {
      const rank = 1 + Math.floor(rand() * 4);
      const shape = Array.from({ length: rank }, () => 1 + Math.floor(rand() * 5));
      const layouts = Array.from({ length: 1 + Math.floor(rand() * 3) }, (_, k) =>
        grid(
          shape,
          shape.map((n) =>
            [...new Set(Array.from({ length: Math.floor(rand() * 3) }, () => 1 + Math.floor(rand() * (n - 1))))]
              .filter((c) => c > 0 && c < n)
              .sort((a, b) => a - b),
          ),
          `f${k}`,
        ),
      );
      check(shape, layouts);
    }
  });

  it('a scalar is one run', () => {
    expect(tensorRuns([], [[{ offsets: [], sizes: [], file: 'a', offset: 9 }]], 4)).toEqual([
      { element: 0, count: 1, sources: [{ file: 'a', offset: 9 }] },
    ]);
  });
});
