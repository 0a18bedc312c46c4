import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import { beforeAll, describe, expect, it } from 'vitest';

import { merge, plan } from '../../src/index.js';
import { pma } from '../helpers/cli.js';
import { rejected } from '../helpers/errors.js';
import {
  readSafetensors,
  rng,
  writeCheckpoint,
  writeSafetensors,
  type RawTensor,
  type TensorSpec,
} from '../helpers/safetensors.js';
import { scratch } from '../helpers/scratch.js';

// A run whose step-300 checkpoint was saved during a loss spike: NaN in one tensor, Inf in another.
const { tmp, out } = scratch('pma-nonfinite-');
const SPECS: TensorSpec[] = [
  { name: 'a.weight', dtype: 'BF16', shape: [4096, 33] },
  { name: 'b.weight', dtype: 'F32', shape: [70001] },
  { name: 'c.bias', dtype: 'F16', shape: [999] },
];
const run = join(tmp, 'run');
const clean = join(tmp, 'clean');
const STEPS = [100, 200, 300, 400];
const SPIKE = join(run, 'checkpoint-300');

function poison(dir: string, seed: number): void {
  const tensors = writeCheckpoint(dir, SPECS, seed);
  const a = tensors.get('a.weight') as RawTensor;
  const b = tensors.get('b.weight') as RawTensor;
  const da = new DataView(a.data.buffer, a.data.byteOffset);
  for (const j of [5, 77, 4096 * 33 - 1]) da.setUint16(j * 2, 0x7fc1, true); // NaN (bf16)
  new DataView(b.data.buffer, b.data.byteOffset).setUint32(4 * 70000, 0xff800000, true); // -Inf (f32)
  writeSafetensors(join(dir, 'model.safetensors'), [...tensors.values()]);
}

beforeAll(() => {
  for (const [i, s] of STEPS.entries()) {
    if (s === 300) poison(join(run, `checkpoint-${s}`), i);
    else writeCheckpoint(join(run, `checkpoint-${s}`), SPECS, i);
    if (s !== 300) writeCheckpoint(join(clean, `checkpoint-${s}`), SPECS, i);
  }
});

describe('--on-nonfinite', () => {
  it('error (default): stops before the output exists, naming tensors, checkpoint and counts (exit 2)', async () => {
    const o = out();
    const err = await rejected(merge({ inputs: run, out: o, chunkSize: 32 * 1024 }));
    expect(err.code).toBe('E_NONFINITE');
    expect(err.message).toMatch(
      /^NaN or Inf values in the inputs: .*in (a\.weight|b\.weight) of .*checkpoint-300.*; the merge stopped before writing its output/,
    );
    expect(err.file).toBe(SPIKE);
    expect(existsSync(o)).toBe(false);
    const cli = pma(['merge', run, '--out', out()]);
    expect(cli.status).toBe(2);
    expect(cli.stderr).toMatch(
      /pma: error \[E_NONFINITE\]: NaN or Inf values in the inputs: \d+ in \S+ of .*checkpoint-300/,
    );
  });

  it('warn: merges, and reports every tensor with its count, also in pma.json', async () => {
    const o = out();
    const r = await merge({ inputs: run, out: o, onNonfinite: 'warn' });
    expect(r.nonfinite).toEqual([
      { tensor: 'a.weight', checkpoint: SPIKE, step: 300, count: 3 },
      { tensor: 'b.weight', checkpoint: SPIKE, step: 300, count: 1 },
    ]);
    const rec = JSON.parse(readFileSync(join(o, 'pma.json'), 'utf8')) as { nonfinite: unknown[] };
    expect(rec.nonfinite).toEqual(r.nonfinite);
    const cli = pma(['merge', run, '--on-nonfinite', 'warn', '--out', out()]);
    expect(cli.status).toBe(0);
    expect(cli.stderr).toContain(`warning: 3 NaN/Inf in a.weight of ${SPIKE} (merged anyway: --on-nonfinite warn)`);
  });

  it('skip-checkpoint: merges the others, with weights over them, exactly as if the spike was never there', async () => {
    const o = out();
    const r = await merge({ inputs: run, out: o, onNonfinite: 'skip-checkpoint', method: 'wma', chunkSize: 32 * 1024 });
    expect(r.leftOut).toEqual([
      {
        path: SPIKE,
        reason: expect.stringMatching(/^NaN or Inf values \(\d+ in [ab]\.weight(, \d+ in [ab]\.weight)?\)$/),
      },
    ]);
    expect(r.plan.checkpoints.map((c) => c.step)).toEqual([100, 200, 400]);
    const want = out();
    await merge({ inputs: clean, out: want, method: 'wma' });
    expect(readFileSync(join(o, 'model.safetensors')).equals(readFileSync(join(want, 'model.safetensors')))).toBe(true);
    const rec = JSON.parse(readFileSync(join(o, 'pma.json'), 'utf8')) as {
      leftOut: unknown[];
      inputs: { step: number }[];
    };
    expect(rec.leftOut).toEqual(r.leftOut);
    expect(rec.inputs.map((i) => i.step)).toEqual([100, 200, 400]);
  });

  it('counts on every path: mmap reads, one thread and tiny chunks', async () => {
    for (const extra of [{ io: 'mmap' as const }, { threads: 1, chunkSize: 4096 }]) {
      const r = await merge({ inputs: run, out: out(), onNonfinite: 'warn', ...extra });
      expect(r.nonfinite.map((f) => [f.tensor, f.count])).toEqual([
        ['a.weight', 3],
        ['b.weight', 1],
      ]);
    }
    expect(readSafetensors(join(run, 'checkpoint-100', 'model.safetensors')).tensors.size).toBe(3);
  });

  it('counts exactly in every float dtype, at lengths no vector width divides', async () => {
    // Random bit patterns: the exponent is all ones (NaN or Inf) about once in 2^(exponent bits).
    const rand = rng(5);
    const kinds = [
      ['BF16', 2, 0x7f80n],
      ['F16', 2, 0x7c00n],
      ['F32', 4, 0x7f800000n],
      ['F64', 8, 0x7ff0000000000000n],
    ] as const;
    const dir = join(tmp, 'random-bits');
    const expected: [string, string, number][] = [];
    for (const step of [1, 2]) {
      const tensors = kinds.map(([dtype, size, mask], t) => {
        const count = 20_011 + 64 * t;
        const data = Uint8Array.from({ length: count * size }, () => Math.floor(rand() * 256));
        let bad = 0;
        for (let i = 0; i < count; i++) {
          let bits = 0n;
          for (let b = size - 1; b >= 0; b--) bits = (bits << 8n) | BigInt(data[i * size + b] as number);
          if ((bits & mask) === mask) bad++;
        }
        if (bad > 0) expected.push([`t${t}.${dtype}`, join(dir, `step-${step}`), bad]);
        return { name: `t${t}.${dtype}`, dtype, shape: [count], data };
      });
      writeSafetensors(join(dir, `step-${step}`, 'model.safetensors'), tensors);
    }
    const r = await merge({ inputs: dir, out: out(), onNonfinite: 'warn', chunkSize: 16 * 1024 });
    const got = r.nonfinite.map((f) => [f.tensor, f.checkpoint, f.count]);
    const order = (a: (string | number)[], b: (string | number)[]) => String(a).localeCompare(String(b));
    expect(got.sort(order)).toEqual(expected.sort(order));
  });

  it('counts exactly where most blocks are finite up to the largest finite value', async () => {
    // The scan skips a block whose largest magnitude is finite: here blocks full of the largest
    // finite values (either sign) around a few NaN and Inf of either sign, at block edges too.
    const kinds = [
      ['BF16', 2, [0x7f7fn, 0xff7fn], [0x7f80n, 0xff80n, 0x7fc1n, 0xffffn]],
      ['F16', 2, [0x7bffn, 0xfbffn], [0x7c00n, 0xfc00n, 0x7e00n, 0x7c01n]],
      ['F32', 4, [0x7f7fffffn, 0xff7fffffn], [0x7f800000n, 0xff800000n, 0x7fc00000n, 0xffffffffn]],
      [
        'F64',
        8,
        [0x7fefffffffffffffn, 0xffefffffffffffffn],
        [0x7ff0000000000000n, 0xfff0000000000000n, 0x7ff8000000000001n],
      ],
    ] as const;
    const count = 3 * 32768 + 17; // past three of the engine's blocks
    const dir = join(tmp, 'edge-bits');
    const expected: [string, string, number][] = [];
    for (const step of [1, 2]) {
      const tensors = kinds.map(([dtype, size, finite, bad], t) => {
        const data = new Uint8Array(count * size);
        const put = (i: number, bits: bigint) => {
          for (let b = 0; b < size; b++) data[i * size + b] = Number((bits >> BigInt(8 * b)) & 0xffn);
        };
        for (let i = 0; i < count; i++) put(i, finite[i % 2] as bigint);
        // Checkpoint 1: none in the first block, one at the end of the second, several in the last.
        const at = step === 1 ? [2 * 32768 - 1, count - 1, count - 5] : [0, 32768, 40_000 + t];
        at.forEach((i, k) => put(i, bad[k % bad.length] as bigint));
        expected.push([`t${t}.${dtype}`, join(dir, `step-${step}`), at.length]);
        return { name: `t${t}.${dtype}`, dtype, shape: [count], data };
      });
      writeSafetensors(join(dir, `step-${step}`, 'model.safetensors'), tensors);
    }
    const order = (a: (string | number)[], b: (string | number)[]) => String(a).localeCompare(String(b));
    for (const io of ['pread', 'mmap'] as const) {
      const r = await merge({ inputs: dir, out: out(), onNonfinite: 'warn', io });
      const got = r.nonfinite.map((f) => [f.tensor, f.checkpoint, f.count]);
      expect(got.sort(order)).toEqual(expected.sort(order));
    }
  });

  it('names each tensor when one op averages many small ones', async () => {
    // Small tensors back to back in every checkpoint share an op (src/plan/chunks.ts); what the
    // engine finds in such an op is counted again tensor by tensor.
    const dir = join(tmp, 'small-tensors');
    const rand = rng(17);
    const specs = [
      ...Array.from({ length: 50 }, (_, i) => ({ name: `s.${String(i).padStart(2, '0')}`, dtype: 'BF16', size: 2 })),
      ...Array.from({ length: 30 }, (_, i) => ({ name: `f.${String(i).padStart(2, '0')}`, dtype: 'F32', size: 4 })),
    ];
    const poisoned: Record<number, [string, number, number][]> = {
      2: [
        ['s.07', 1, 0x7fc1],
        ['s.07', 6, 0xff80],
        ['s.33', 0, 0x7f80],
        ['f.04', 2, 0x7fc00000],
      ],
      3: [['s.49', 6, 0x7fc1]],
    };
    for (const step of [1, 2, 3]) {
      const tensors = specs.map((t) => {
        // Small finite values: the sign and exponent's top bit clear.
        const data = Uint8Array.from({ length: 7 * t.size }, (_, b) =>
          b % t.size === t.size - 1 ? Math.floor(rand() * 0x3f) : Math.floor(rand() * 256),
        );
        const view = new DataView(data.buffer);
        for (const [name, at, bits] of poisoned[step] ?? []) {
          if (name !== t.name) continue;
          if (t.size === 2) view.setUint16(at * 2, bits, true);
          else view.setUint32(at * 4, bits, true);
        }
        return { name: t.name, dtype: t.dtype, shape: [7], data };
      });
      writeSafetensors(join(dir, `step-${step}`, 'model.safetensors'), tensors);
    }
    const p = await plan({ inputs: dir });
    const ops = p.chunks.flatMap((c) => c.ops);
    expect(ops.length, 'the plan shares ops').toBeLessThan(specs.length / 10);
    const want = [
      ['f.04', 2, 1],
      ['s.07', 2, 2],
      ['s.33', 2, 1],
      ['s.49', 3, 1],
    ];
    const order = (a: unknown[], b: unknown[]) => String(a).localeCompare(String(b));
    for (const extra of [{}, { io: 'mmap' as const }, { threads: 1, chunkSize: 256 }]) {
      const r = await merge({ inputs: dir, out: out(), onNonfinite: 'warn', ...extra });
      expect(r.nonfinite.map((f) => [f.tensor, f.step, f.count]).sort(order)).toEqual(want);
    }
    const err = await rejected(merge({ inputs: dir, out: out() }));
    expect(err.code).toBe('E_NONFINITE');
    expect(err.message).toContain(`2 in s.07 of ${join(dir, 'step-2')}`);
  });

  it('a resumed merge keeps what the interrupted one found', async () => {
    const o = out();
    const ac = new AbortController();
    let k = 0;
    await rejected(
      merge({
        inputs: run,
        out: o,
        onNonfinite: 'warn',
        threads: 1,
        chunkSize: 32 * 1024,
        signal: ac.signal,
        onProgress: () => {
          if (++k === 12) ac.abort();
        },
      }),
    );
    const r = await merge({ inputs: run, out: o, onNonfinite: 'warn', threads: 1, chunkSize: 32 * 1024, resume: true });
    expect(r.resumedChunks).toBeGreaterThan(0);
    expect(r.nonfinite.map((f) => [f.tensor, f.count])).toEqual([
      ['a.weight', 3],
      ['b.weight', 1],
    ]);
  });
});
