import { describe, expect, it } from 'vitest';

import { DTYPE_BITS, isAveraged, type DType, type FloatDType } from '../../src/dtypes.js';
import { CUT_ALIGN, cutChunks, type TensorSources } from '../../src/plan/chunks.js';
import type { PlanChunk, PlanOp, PlanTensor } from '../../src/plan/types.js';
import { rng } from '../helpers/safetensors.js';

interface Spec {
  name: string;
  inDtype: DType;
  outDtype?: DType;
  shape: number[];
}

const CHECKPOINTS = 3;
const OUT_FILES = ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'];

/**
 * Builds a synthetic plan: output tensors laid out contiguously per output file (split into two
 * files), and for each checkpoint a source file where the tensor sits at some scattered offset.
 */
function build(specs: Spec[]): TensorSources[] {
  const rand = rng(99);
  const outPos = [64, 64];
  const inPos = Array.from({ length: CHECKPOINTS }, () => 128);
  return specs.map((s, i) => {
    const f = i < specs.length / 2 ? 0 : 1;
    const { tensor, inBytes } = planTensor(s, OUT_FILES[f] as string, outPos[f] as number);
    outPos[f] = (outPos[f] as number) + tensor.bytes;
    const sources = inPos.map((p, c) => {
      const gap = Math.floor(rand() * 3) * 8;
      const offset = p + gap;
      inPos[c] = offset + inBytes;
      // Shard the inputs too: even tensors in one file, odd in another.
      return { file: `/ckpt-${c}/model-0000${(i % 2) + 1}.safetensors`, offset };
    });
    return { tensor, sources };
  });
}

/** The plan tensor of `s` at `offset` of output file `file`, and its bytes in each checkpoint. */
function planTensor(s: Spec, file: string, offset: number): { tensor: PlanTensor; inBytes: number } {
  const merge = isAveraged(s.inDtype);
  const outDtype = merge ? (s.outDtype ?? s.inDtype) : s.inDtype;
  const elements = s.shape.reduce((a, b) => a * b, 1);
  const bytes = (elements * DTYPE_BITS[outDtype]) / 8;
  const tensor: PlanTensor = {
    name: s.name,
    action: merge ? 'merge' : 'copy',
    inDtype: s.inDtype,
    outDtype,
    shape: s.shape,
    file,
    offset,
    bytes,
  };
  return { tensor, inBytes: (elements * DTYPE_BITS[s.inDtype]) / 8 };
}

const specs: Spec[] = [
  { name: 'embed', inDtype: 'BF16', shape: [17, 5] },
  { name: 'norm', inDtype: 'F32', shape: [13] },
  { name: 'empty', inDtype: 'F32', shape: [0, 16] },
  { name: 'ids', inDtype: 'I64', shape: [3] },
  { name: 'up', inDtype: 'F16', outDtype: 'F32', shape: [9, 3] },
  { name: 'scalar', inDtype: 'F32', shape: [] },
  { name: 'mask', inDtype: 'BOOL', shape: [11] },
  { name: 'empty.copy', inDtype: 'U8', shape: [0] },
  { name: 'down', inDtype: 'F32', outDtype: 'BF16', shape: [7, 4] },
  { name: 'd64', inDtype: 'F64', outDtype: 'F32', shape: [5] },
  { name: 'q', inDtype: 'F4', shape: [6] },
  { name: 'lm_head', inDtype: 'BF16', shape: [31] },
];

const items = build(specs);

function opBytes(op: PlanOp, t: PlanTensor): { out: number; cost: number; elements: number } {
  if (op.kind === 'copy') return { out: op.bytes, cost: 2 * op.bytes, elements: op.bytes };
  if (op.kind === 'fp8') throw new Error('these tensors hold no FP8');
  const inSize = DTYPE_BITS[op.inDtype] / 8;
  const outSize = DTYPE_BITS[op.outDtype] / 8;
  expect(op.outDtype).toBe(t.outDtype);
  return { out: op.count * outSize, cost: op.count * (inSize * op.inputs.length + outSize), elements: op.count };
}

interface Resolved {
  chunk: number;
  op: PlanOp;
  outFile: string;
  begin: number;
  end: number;
}

function check(chunks: PlanChunk[], limit: number, list: TensorSources[] = items): void {
  const byName = new Map(list.map((x) => [x.tensor.name, x]));
  const resolved: Resolved[] = [];
  for (const [ci, c] of chunks.entries()) {
    expect(c.ops.length, `chunk ${ci} has ops`).toBeGreaterThan(0);
    expect(new Set(c.inputs).size).toBe(c.inputs.length);
    expect(new Set(c.outputs).size).toBe(c.outputs.length);
    let cost = 0;
    let lastElements = 0;
    for (const op of c.ops) {
      const src = byName.get(op.tensor);
      expect(src, op.tensor).toBeDefined();
      if (!src) continue;
      const t = src.tensor;
      expect(t.bytes).toBeGreaterThan(0);
      expect(op.kind).toBe(t.action);
      const outFile = c.outputs[op.outFile] as string;
      expect(outFile).toBe(t.file);
      const { out, cost: k, elements } = opBytes(op, t);
      expect(out).toBeGreaterThan(0);
      expect(Number.isInteger(elements)).toBe(true);
      cost += k;
      lastElements = elements;
      resolved.push({ chunk: ci, op, outFile, begin: op.outOffset, end: op.outOffset + out });

      // Inputs advance with the output: the same element index in every source.
      const rel = op.outOffset - t.offset;
      if (op.kind === 'merge') {
        const outSize = DTYPE_BITS[op.outDtype] / 8;
        const inSize = DTYPE_BITS[op.inDtype] / 8;
        expect(op.inDtype).toBe(t.inDtype);
        expect(rel % outSize).toBe(0);
        expect(op.inputs).toHaveLength(src.sources.length);
        for (const [j, inp] of op.inputs.entries()) {
          const s = src.sources[j] as { file: string; offset: number };
          expect(c.inputs[inp.file]).toBe(s.file);
          expect(inp.offset).toBe(s.offset + (rel / outSize) * inSize);
        }
      } else {
        // Copies read only from the newest checkpoint.
        const newest = src.sources[src.sources.length - 1] as { file: string; offset: number };
        expect(op.inputs).toHaveLength(1);
        expect(c.inputs[op.inputs[0].file]).toBe(newest.file);
        expect(op.inputs[0].offset).toBe(newest.offset + rel);
      }
    }
    expect(c.bytes).toBe(cost);
    // A chunk stays within the limit unless it is a single element too large for any chunk.
    if (c.bytes > limit) {
      expect(c.ops, `chunk ${ci}: ${c.bytes} bytes > limit ${limit}`).toHaveLength(1);
      expect(lastElements, `chunk ${ci}: ${c.bytes} bytes > limit ${limit}`).toBe(1);
    }
  }

  // Every output byte of every non-empty tensor is written exactly once.
  for (const { tensor: t } of list) {
    const parts = resolved.filter((r) => r.op.tensor === t.name).sort((a, b) => a.begin - b.begin);
    if (t.bytes === 0) {
      expect(parts, `${t.name} is empty`).toEqual([]);
      continue;
    }
    let pos = t.offset;
    for (const p of parts) {
      expect(p.outFile).toBe(t.file);
      expect(p.begin, `${t.name}: no hole or overlap`).toBe(pos);
      pos = p.end;
    }
    expect(pos, `${t.name} fully covered`).toBe(t.offset + t.bytes);
  }
  for (const f of OUT_FILES) {
    const ranges = resolved.filter((r) => r.outFile === f).sort((a, b) => a.begin - b.begin);
    for (let i = 1; i < ranges.length; i++)
      expect((ranges[i] as Resolved).begin).toBeGreaterThanOrEqual((ranges[i - 1] as Resolved).end);
    const expected = list.filter((x) => x.tensor.file === f).reduce((s, x) => s + x.tensor.bytes, 0);
    expect(ranges.reduce((s, r) => s + (r.end - r.begin), 0)).toBe(expected);
  }
}

describe('cutChunks', () => {
  it.each([[1], [7], [100], [1e6]])('covers every output byte exactly once with chunk size %d', (limit) => {
    const chunks = cutChunks(items, limit);
    check(chunks, limit);
  });

  it('puts everything in one chunk per output file when the limit is large', () => {
    const chunks = cutChunks(items, 1e6);
    // A chunk writes one file: the parts of a merge in parts own whole files, so whole chunks.
    expect(chunks.map((c) => c.outputs)).toEqual(OUT_FILES.map((f) => [f]));
    // One op per non-empty tensor.
    expect(chunks.flatMap((c) => c.ops.map((o) => o.tensor))).toEqual(
      specs.map((s) => s.name).filter((n) => !n.startsWith('empty')),
    );
  });

  it('with a limit of 1 byte, every op holds a single element and is a chunk of its own', () => {
    const chunks = cutChunks(items, 1);
    for (const c of chunks) {
      expect(c.ops).toHaveLength(1);
      const op = c.ops[0] as PlanOp;
      expect(op.kind === 'copy' ? op.bytes : op.kind === 'merge' ? op.count : op.rows * op.cols).toBe(1);
    }
    const total = items.reduce(
      (s, { tensor: t }) => s + (t.action === 'merge' ? t.bytes / (DTYPE_BITS[t.outDtype] / 8) : t.bytes),
      0,
    );
    expect(chunks).toHaveLength(total);
  });

  it('covers every byte for many random limits', () => {
    const rand = rng(5);
    for (let i = 0; i < 40; i++) {
      const limit = 1 + Math.floor(rand() * 400);
      check(cutChunks(items, limit), limit);
    }
  });

  it('never writes two output files in one chunk, whatever the limit (a part owns whole files)', () => {
    const rand = rng(9);
    for (let i = 0; i < 40; i++) {
      for (const c of cutChunks(items, 1 + Math.floor(rand() * 4000))) expect(c.outputs).toHaveLength(1);
    }
  });

  it('copy ops read only from the newest source', () => {
    const chunks = cutChunks(items, 13);
    const copies = chunks.flatMap((c) => c.ops.filter((o) => o.kind === 'copy').map((o) => c.inputs[o.inputs[0].file]));
    expect(copies.length).toBeGreaterThan(0);
    for (const f of copies) expect(f).toMatch(/^\/ckpt-2\//);
  });

  it('zero-byte tensors produce no ops, and a list of only those produces no chunks', () => {
    const empties = items.filter((x) => x.tensor.bytes === 0);
    expect(empties).toHaveLength(2);
    expect(cutChunks(empties, 100)).toEqual([]);
    expect(cutChunks([], 100)).toEqual([]);
    for (const limit of [1, 7, 100]) {
      const ops = cutChunks(items, limit).flatMap((c) => c.ops);
      expect(ops.some((o) => o.tensor.startsWith('empty'))).toBe(false);
    }
  });

  it('chunk bytes count reads from every source plus the write', () => {
    const one = build([{ name: 'w', inDtype: 'BF16', outDtype: 'F32', shape: [10] }]);
    const chunks = cutChunks(one, 1e9);
    expect(chunks).toHaveLength(1);
    expect(chunks[0]?.bytes).toBe(10 * (2 * CHECKPOINTS + 4));
    const op = chunks[0]?.ops[0];
    expect(op).toMatchObject({ kind: 'merge', count: 10, inDtype: 'BF16', outDtype: 'F32' });
  });

  it('splits a large tensor on element boundaries', () => {
    const one = build([{ name: 'w', inDtype: 'F32', shape: [100] }]);
    const perUnit = 4 * CHECKPOINTS + 4;
    const chunks = cutChunks(one, perUnit * 30);
    expect(chunks.map((c) => c.ops.map((o) => (o as { count: number }).count))).toEqual([[30], [30], [30], [10]]);
    expect(chunks.map((c) => c.bytes)).toEqual([480, 480, 480, 160]);

    // A limit that is not a multiple of the per-element cost: ops still hold whole elements,
    // consecutive, and add up to the tensor.
    const odd = cutChunks(one, perUnit * 30 + 5);
    const counts = odd.flatMap((c) => c.ops.map((o) => (o as { count: number }).count));
    expect(counts.reduce((a, b) => a + b, 0)).toBe(100);
    let next = (one[0] as TensorSources).tensor.offset;
    for (const op of odd.flatMap((c) => c.ops)) {
      expect(op.outOffset).toBe(next);
      next += (op as { count: number }).count * 4;
    }
    check(odd, perUnit * 30 + 5, one);
  });

  it.each([
    ['F32', 'F32'],
    ['BF16', 'F32'],
    ['F32', 'BF16'],
    ['U8', 'U8'],
  ] as const)(
    'cuts a large %s tensor (output %s) on 4 KiB boundaries of the output, so that direct writes need no page cache',
    (inDtype, outDtype) => {
      const one = build([{ name: 'w', inDtype, outDtype, shape: [400_000] }]);
      const t = (one[0] as TensorSources).tensor;
      expect(t.offset % CUT_ALIGN).not.toBe(0); // the tensor itself starts unaligned (after a header)
      for (const limit of [40_000, 100_003, 262_144]) {
        const chunks = cutChunks(one, limit);
        check(chunks, limit, one);
        expect(chunks.length).toBeGreaterThan(2);
        const ends = chunks.map((c) => {
          const op = c.ops[c.ops.length - 1] as PlanOp;
          return op.outOffset + opBytes(op, t).out;
        });
        // Every chunk but the last ends on a 4 KiB boundary of the output file; the last ends with the tensor.
        for (const end of ends.slice(0, -1)) expect(end % CUT_ALIGN).toBe(0);
        expect(ends[ends.length - 1]).toBe(t.offset + t.bytes);
        // Aligning costs a chunk less than 4 KiB of output.
        for (const c of chunks.slice(0, -1)) {
          const op = c.ops[0] as PlanOp;
          expect(c.bytes).toBeGreaterThanOrEqual(limit - (CUT_ALIGN / opBytes(op, t).out) * opBytes(op, t).cost);
        }
      }
    },
  );

  it('leaves a cut unaligned where no 4 KiB boundary falls in the chunk', () => {
    const one = build([{ name: 'w', inDtype: 'F32', shape: [100] }]);
    const perUnit = 4 * CHECKPOINTS + 4;
    expect(cutChunks(one, perUnit * 30).map((c) => c.bytes)).toEqual([480, 480, 480, 160]);
  });

  it('is deterministic', () => {
    expect(cutChunks(items, 37)).toEqual(cutChunks(items, 37));
  });

  it('keeps float dtypes of the plan (sanity of the fixture)', () => {
    for (const { tensor: t } of items) {
      if (t.action === 'merge') {
        expect(isAveraged(t.inDtype)).toBe(true);
        expect(isAveraged(t.outDtype as FloatDType)).toBe(true);
      }
    }
  });
});

/**
 * Tensors laid out back to back everywhere: in the output file and in one file per checkpoint,
 * as a run's checkpoints written by one trainer are. `gapAfter` leaves 8 bytes after a tensor in
 * the middle checkpoint only.
 */
function contiguous(list: Spec[], gapAfter?: string): TensorSources[] {
  let out = 64;
  const at = Array.from({ length: CHECKPOINTS }, () => 128);
  return list.map((s) => {
    const { tensor, inBytes } = planTensor(s, 'model.safetensors', out);
    out += tensor.bytes;
    const sources = at.map((p, c) => {
      at[c] = p + inBytes + (c === 1 && s.name === gapAfter ? 8 : 0);
      return { file: `/ckpt-${c}/model.safetensors`, offset: p };
    });
    return { tensor, sources };
  });
}

/** Tensors an op covers. */
const covered = (o: PlanOp): number => (o.kind === 'fp8' ? 1 : (o.tensors ?? 1));

describe('cutChunks: one op for consecutive tensors', () => {
  const tiny: Spec[] = [
    ...Array.from({ length: 6 }, (_, i) => ({ name: `a.${i}`, inDtype: 'BF16' as const, shape: [3] })),
    { name: 'empty', inDtype: 'BF16', shape: [0] },
    ...Array.from({ length: 4 }, (_, i) => ({ name: `b.${i}`, inDtype: 'BF16' as const, shape: [2, 2] })),
    { name: 'steps', inDtype: 'I64', shape: [2] },
    { name: 'ids', inDtype: 'I32', shape: [3] },
    { name: 'w', inDtype: 'F32', outDtype: 'BF16', shape: [5] },
    { name: 'v', inDtype: 'F32', outDtype: 'BF16', shape: [5] },
    { name: 'u', inDtype: 'F16', shape: [5] },
  ];

  it('averages tensors that follow each other everywhere, of the same dtypes, with one op', () => {
    const ops = cutChunks(contiguous(tiny), 1e6).flatMap((c) => c.ops);
    expect(ops.map((o) => [o.kind, o.tensor, covered(o)])).toEqual([
      ['merge', 'a.0', 10], // the empty tensor between them holds no bytes: no gap
      ['copy', 'steps', 2],
      ['merge', 'w', 2],
      ['merge', 'u', 1],
    ]);
    expect(ops[0]).toMatchObject({ count: 6 * 3 + 4 * 4, outOffset: 64 });
    expect(ops[1]).toMatchObject({ bytes: 16 + 12 });
  });

  it('starts a new op where any one checkpoint leaves a gap', () => {
    const ops = cutChunks(contiguous(tiny, 'a.2'), 1e6).flatMap((c) => c.ops);
    expect(ops.slice(0, 2).map((o) => [o.tensor, covered(o)])).toEqual([
      ['a.0', 3],
      ['a.3', 7],
    ]);
  });

  it('gives one op per tensor when asked (pma analyze), and the same bytes either way', () => {
    const items = contiguous(tiny);
    const per = cutChunks(items, 1e6, { opPerTensor: true }).flatMap((c) => c.ops);
    expect(per.map((o) => o.tensor)).toEqual(tiny.map((s) => s.name).filter((n) => n !== 'empty'));
    expect(per.every((o) => o.kind === 'fp8' || o.tensors === undefined)).toBe(true);
    // Each limit: the shared ops write exactly the ranges the per-tensor ops write, and read the
    // same ranges of every input.
    const ranges = (chunks: PlanChunk[]) =>
      chunks
        .flatMap((c) =>
          c.ops.flatMap((o) => {
            if (o.kind === 'fp8') throw new Error('no FP8 here');
            const units = o.kind === 'merge' ? o.count : o.bytes;
            const inSize = o.kind === 'merge' ? DTYPE_BITS[o.inDtype] / 8 : 1;
            const outSize = o.kind === 'merge' ? DTYPE_BITS[o.outDtype] / 8 : 1;
            return Array.from({ length: units }, (_, e) => [
              o.outOffset + e * outSize,
              ...o.inputs.map((r) => `${c.inputs[r.file]}@${r.offset + e * inSize}`),
            ]);
          }),
        )
        .map((x) => x.join(' '))
        .sort();
    for (const limit of [1, 9, 40, 1e6]) {
      const shared = cutChunks(items, limit);
      const per = cutChunks(items, limit, { opPerTensor: true });
      expect(ranges(shared)).toEqual(ranges(per));
      // The same work in chunks of the same bytes: sharing an op never moves a chunk's boundary.
      expect(shared.map((c) => c.bytes)).toEqual(per.map((c) => c.bytes));
    }
  });
});
