import type { LocatedChunk } from '../checkpoints/contents.js';
import { locate, type LayoutTensor, type LoadedCheckpoint } from '../checkpoints/load.js';
import { DTYPE_BITS, type DType } from '../dtypes.js';

/**
 * A stretch of a tensor that is contiguous everywhere it lives: `count` elements from element
 * `element` of the whole tensor (row-major), at `sources[i]` in checkpoint i.
 */
export interface Run {
  element: number;
  count: number;
  sources: { file: string; offset: number }[];
  /**
   * Where the run goes in the output, when not at its element of one contiguous output tensor: a
   * DCP output writes each run over the newest checkpoint's copy of it (file relative to the output).
   */
  out?: { file: string; offset: number };
}

const volume = (s: number[]) => s.reduce((a, b) => a * b, 1);

/** Row-major index of `at` in a box of `sizes`. */
function linear(at: number[], sizes: number[]): number {
  let i = 0;
  for (let d = 0; d < sizes.length; d++) i = i * (sizes[d] as number) + (at[d] as number);
  return i;
}

/** The chunk of `chunks` that holds the element at `at`. */
function holder(chunks: LocatedChunk[], at: number[]): LocatedChunk {
  const c = chunks.find((k) =>
    k.offsets.every((o, d) => (at[d] as number) >= o && (at[d] as number) < o + (k.sizes[d] as number)),
  );
  if (!c) throw new Error(`no chunk holds element [${at.join(', ')}]`); // the metadata reader checked the tiling
  return c;
}

/**
 * Maps a tensor stored in chunks (one chunk list per checkpoint, each tiling the whole tensor, in
 * any layout: a job restarted on another node count cuts it differently) onto runs. The cuts of
 * every checkpoint together make a grid; each box of the grid lies in one chunk of each
 * checkpoint. A box is one run where it spans its chunks' and the tensor's inner dimensions (row
 * blocks: the common case), else one run per row of the dimensions it does not span (column
 * blocks). Runs that follow on everywhere are joined.
 */
export function tensorRuns(shape: number[], perCheckpoint: LocatedChunk[][], width: number): Run[] {
  const rank = shape.length;
  if (rank === 0) {
    return [
      {
        element: 0,
        count: 1,
        sources: perCheckpoint.map((cs) => ({
          file: (cs[0] as LocatedChunk).file,
          offset: (cs[0] as LocatedChunk).offset,
        })),
      },
    ];
  }
  const cuts = shape.map((n, d) => {
    const s = new Set([0, n]);
    for (const cs of perCheckpoint)
      for (const c of cs) s.add(c.offsets[d] as number).add((c.offsets[d] as number) + (c.sizes[d] as number));
    return [...s].sort((a, b) => a - b);
  });
  const runs: Run[] = [];
  const cell = new Array<number>(rank).fill(0);
  for (;;) {
    const origin = cell.map((i, d) => (cuts[d] as number[])[i] as number);
    const box = cell.map((i, d) => ((cuts[d] as number[])[i + 1] as number) - (origin[d] as number));
    if (box.every((n) => n > 0)) {
      const holders = perCheckpoint.map((cs) => holder(cs, origin));
      // The outermost dimension k from which on the box is contiguous in the tensor and every chunk.
      let k = rank - 1;
      while (k > 0 && box[k] === shape[k] && holders.every((h) => box[k] === h.sizes[k])) k--;
      const count = volume(box.slice(k));
      const outer = box.slice(0, k);
      const idx = new Array<number>(k).fill(0);
      for (let n = volume(outer); n > 0; n--) {
        const at = origin.map((o, d) => (d < k ? o + (idx[d] as number) : o));
        runs.push({
          element: linear(at, shape),
          count,
          sources: holders.map((h) => ({
            file: h.file,
            offset:
              h.offset +
              width *
                linear(
                  at.map((a, d) => a - (h.offsets[d] as number)),
                  h.sizes,
                ),
          })),
        });
        for (let d = k - 1; d >= 0; d--) {
          if (++(idx[d] as number) < (outer[d] as number)) break;
          idx[d] = 0;
        }
      }
    }
    let d = rank - 1;
    for (; d >= 0; d--) {
      if (++(cell[d] as number) < (cuts[d] as number[]).length - 1) break;
      cell[d] = 0;
    }
    if (d < 0) break;
  }
  runs.sort((a, b) => a.element - b.element);
  const joined: Run[] = [];
  for (const r of runs) {
    const last = joined[joined.length - 1];
    if (
      last &&
      last.element + last.count === r.element &&
      last.sources.every(
        (s, i) => s.file === r.sources[i]?.file && s.offset + width * last.count === r.sources[i]?.offset,
      )
    )
      last.count += r.count;
    else joined.push({ ...r, sources: [...r.sources] });
  }
  return joined;
}

/**
 * The runs of tensor `name` across `cks` (oldest first), where at least one stores it in DCP
 * chunks; a checkpoint that stores it whole counts as one chunk of the whole tensor.
 */
export function runsAcross(name: string, shape: number[], dtype: DType, cks: LoadedCheckpoint[]): Run[] {
  const pieces = cks.map((c): LocatedChunk[] => {
    const l = c.contents.byName.get(name) as LayoutTensor;
    return l.chunks ?? [{ offsets: shape.map(() => 0), sizes: shape, ...locate(c, l) }];
  });
  return tensorRuns(shape, pieces, DTYPE_BITS[dtype] / 8);
}
