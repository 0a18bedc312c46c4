import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { discover, type CheckpointRef } from '../../src/checkpoints/discover.js';
import { checkConsistent, type LayoutTensor, type LoadedCheckpoint } from '../../src/checkpoints/load.js';
import { selectCheckpoints } from '../../src/checkpoints/select.js';
import { parseStep } from '../../src/checkpoints/step.js';
import type { DType } from '../../src/dtypes.js';
import { PmaError } from '../../src/errors.js';
import { rejected, thrownSync } from '../helpers/errors.js';
import { writeSafetensors } from '../helpers/safetensors.js';

const root = mkdtempSync(join(tmpdir(), 'pma-unit-ckpts-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

let counter = 0;
function freshRun(): string {
  counter += 1;
  const d = join(root, `run${counter}`);
  mkdirSync(d, { recursive: true });
  return d;
}

/** A checkpoint directory with a tiny model.safetensors. */
function ckDir(dir: string, file = 'model.safetensors'): string {
  writeSafetensors(join(dir, file), [{ name: 'w', dtype: 'F32', shape: [1], data: new Uint8Array(4) }]);
  return dir;
}

describe('parseStep', () => {
  it.each([
    ['checkpoint-1000', 1000],
    ['step-1000', 1000],
    ['step_1000', 1000],
    ['global_step1000', 1000],
    ['iter_0001000', 1000],
    ['ckpt.1000', 1000],
    ['1000', 1000],
    ['step-1000.safetensors', 1000],
    ['checkpoint-0', 0],
    ['checkpoint-10000', 10000],
  ])('%s -> %d', (name, step) => {
    expect(parseStep(name)).toBe(step);
  });

  it.each([
    ['model'],
    ['model.safetensors'],
    ['model-00001-of-00002'],
    ['model-00001-of-00002.safetensors'],
    ['checkpoint-1000.tmp'],
    ['run2-final'],
    ['checkpoint-last'],
    [''],
    ['checkpoint-'],
    ['-1000'],
    ['99999999999999999999'],
  ])('%j -> null', (name) => {
    expect(parseStep(name)).toBeNull();
  });
});

describe('discover: a run directory', () => {
  it('orders step directories numerically, ignores non-step entries and reports weightless step dirs', async () => {
    const run = freshRun();
    ckDir(join(run, 'checkpoint-2000'));
    ckDir(join(run, 'checkpoint-10000'));
    ckDir(join(run, 'checkpoint-500'), 'weights.safetensors');
    ckDir(join(run, 'logs'));
    ckDir(join(run, 'final'));
    mkdirSync(join(run, 'checkpoint-3000'));
    writeFileSync(join(run, 'checkpoint-3000', 'optimizer.pt'), 'x');
    ckDir(join(run, 'checkpoint-4000'), 'a.safetensors');
    ckDir(join(run, 'checkpoint-4000'), 'b.safetensors');
    writeFileSync(join(run, 'checkpoint-5000.tmp'), 'x');
    writeFileSync(join(run, '7000'), 'not a checkpoint');
    ckDir(join(run, 'tmp-checkpoint-20000'));

    const d = await discover([run]);
    expect(d.source).toBe('run');
    expect(d.checkpoints.map((c) => c.name)).toEqual(['checkpoint-500', 'checkpoint-2000', 'checkpoint-10000']);
    expect(d.checkpoints.map((c) => c.step)).toEqual([500, 2000, 10000]);
    expect(d.checkpoints[0]?.layout).toEqual({
      kind: 'single',
      file: join(run, 'checkpoint-500', 'weights.safetensors'),
    });
    expect(d.checkpoints[1]?.layout).toEqual({
      kind: 'single',
      file: join(run, 'checkpoint-2000', 'model.safetensors'),
    });
    expect(d.checkpoints[1]?.dir).toBe(join(run, 'checkpoint-2000'));
    expect(d.skipped).toEqual([
      { path: join(run, 'checkpoint-3000'), reason: 'no .safetensors file and no DCP .metadata' },
      {
        path: join(run, 'checkpoint-4000'),
        reason: expect.stringMatching(/2 \.safetensors files but no model\.safetensors\.index\.json/),
      },
      { path: join(run, 'tmp-checkpoint-20000'), reason: 'a temporary directory, still being saved' },
    ]);
  });

  it('takes step-named .safetensors files of a run directory as checkpoints', async () => {
    const run = freshRun();
    ckDir(run, 'step-300.safetensors');
    ckDir(run, 'step-20.safetensors');
    ckDir(run, 'notes.safetensors');
    const d = await discover([run]);
    expect(d.source).toBe('run');
    expect(d.checkpoints.map((c) => [c.name, c.step])).toEqual([
      ['step-20.safetensors', 20],
      ['step-300.safetensors', 300],
    ]);
    expect(d.checkpoints[0]?.dir).toBe(run);
  });

  it('refuses a run directory without checkpoints: E_NO_CHECKPOINTS', async () => {
    const run = freshRun();
    ckDir(join(run, 'final'));
    mkdirSync(join(run, 'logs'));
    const err = await rejected(discover([run]));
    expect(err.code).toBe('E_NO_CHECKPOINTS');
    expect(err.message).toContain(run);
    expect(err.message).toMatch(/no checkpoints found/);
  });

  it('refuses a run directory whose step dirs all lack weights, saying why', async () => {
    const run = freshRun();
    mkdirSync(join(run, 'checkpoint-100'));
    const err = await rejected(discover([run]));
    expect(err.code).toBe('E_NO_CHECKPOINTS');
    expect(err.message).toMatch(/checkpoint-100: no \.safetensors file/);
  });

  it('refuses two checkpoints of a run directory with the same step: E_INPUT', async () => {
    const run = freshRun();
    ckDir(join(run, 'checkpoint-1000'));
    ckDir(join(run, 'step_1000'));
    const err = await rejected(discover([run]));
    expect(err.code).toBe('E_INPUT');
    expect(err.message).toMatch(/two checkpoints carry step 1000/);
    expect(err.message).toContain(join(run, 'checkpoint-1000'));
    expect(err.message).toContain(join(run, 'step_1000'));
  });
});

describe('discover: checkpoints named one by one', () => {
  it('a single checkpoint directory is a list of one', async () => {
    const run = freshRun();
    const c = ckDir(join(run, 'checkpoint-42'));
    const d = await discover([c]);
    expect(d.source).toBe('list');
    expect(d.checkpoints.map((x) => [x.path, x.step])).toEqual([[c, 42]]);
  });

  it('a lone model.safetensors takes its step from its directory', async () => {
    const run = freshRun();
    const c = ckDir(join(run, 'checkpoint-77'));
    const d = await discover([join(c, 'model.safetensors')]);
    expect(d.checkpoints).toHaveLength(1);
    expect(d.checkpoints[0]).toMatchObject({
      path: join(c, 'model.safetensors'),
      dir: c,
      step: 77,
      layout: { kind: 'single' },
    });
  });

  it('orders an explicit list by step when every checkpoint has one', async () => {
    const run = freshRun();
    const a = ckDir(join(run, 'checkpoint-3000'));
    const b = ckDir(join(run, 'checkpoint-1000'));
    const c = ckDir(join(run, 'checkpoint-20000'));
    const d = await discover([c, a, b]);
    expect(d.source).toBe('list');
    expect(d.checkpoints.map((x) => x.path)).toEqual([b, a, c]);
  });

  it('keeps an explicit list as given when some checkpoint has no step', async () => {
    const run = freshRun();
    const a = ckDir(join(run, 'checkpoint-3000'));
    const b = ckDir(join(run, 'final'));
    const c = ckDir(join(run, 'checkpoint-1000'));
    const d = await discover([a, b, c]);
    expect(d.checkpoints.map((x) => x.path)).toEqual([a, b, c]);
    expect(d.checkpoints.map((x) => x.step)).toEqual([3000, null, 1000]);
  });

  it('refuses a duplicate step in an explicit list: E_INPUT', async () => {
    const run = freshRun();
    const a = ckDir(join(run, 'x', 'checkpoint-1000'));
    const b = ckDir(join(run, 'y', 'step-1000'));
    const err = await rejected(discover([a, b]));
    expect(err.code).toBe('E_INPUT');
    expect(err.message).toMatch(/two checkpoints carry step 1000/);
    expect(err.message).toContain(a);
    expect(err.message).toContain(b);
  });

  it('refuses a nonexistent single path: E_INPUT', async () => {
    const p = join(root, 'no-such-dir');
    const err = await rejected(discover([p]));
    expect(err.code).toBe('E_INPUT');
    expect(err.message).toContain(p);
    expect(err.message).toMatch(/does not exist/);
  });

  it('refuses a nonexistent path in a list: E_INPUT', async () => {
    const run = freshRun();
    const a = ckDir(join(run, 'checkpoint-1'));
    const p = join(run, 'checkpoint-2');
    const err = await rejected(discover([a, p]));
    expect(err.code).toBe('E_INPUT');
    expect(err.message).toContain(p);
    expect(err.message).toMatch(/not a checkpoint: does not exist/);
  });

  it('refuses a file that is not .safetensors: E_INPUT', async () => {
    const run = freshRun();
    const f = join(run, 'checkpoint-5.bin');
    writeFileSync(f, 'x');
    const err = await rejected(discover([f]));
    expect(err.code).toBe('E_INPUT');
    expect(err.message).toMatch(/not a \.safetensors file/);
  });
});

function refs(steps: (number | null)[]): CheckpointRef[] {
  return steps.map((s, i) => {
    const name = s === null ? `final${i}` : `checkpoint-${s}`;
    const path = `/run/${name}`;
    return { path, dir: path, name, step: s, layout: { kind: 'single', file: `${path}/model.safetensors` } };
  });
}
const stepsOf = (l: CheckpointRef[]) => l.map((c) => c.step);
const ten = refs([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);

describe('selectCheckpoints', () => {
  it('returns everything without filters', () => {
    expect(stepsOf(selectCheckpoints(ten, {}))).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  });

  it('--last keeps the N newest', () => {
    expect(stepsOf(selectCheckpoints(ten, { last: 3 }))).toEqual([8, 9, 10]);
    expect(stepsOf(selectCheckpoints(ten, { last: 1 }))).toEqual([10]);
    expect(stepsOf(selectCheckpoints(ten, { last: 50 }))).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  });

  it('--every counts back from the newest', () => {
    expect(stepsOf(selectCheckpoints(ten, { every: 3 }))).toEqual([1, 4, 7, 10]);
    expect(stepsOf(selectCheckpoints(ten, { every: 4 }))).toEqual([2, 6, 10]);
    expect(stepsOf(selectCheckpoints(ten, { every: 1 }))).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(stepsOf(selectCheckpoints(ten, { every: 20 }))).toEqual([10]);
  });

  it('applies --every before --last', () => {
    expect(stepsOf(selectCheckpoints(ten, { every: 3, last: 2 }))).toEqual([7, 10]);
    expect(stepsOf(selectCheckpoints(ten, { every: 2, last: 3 }))).toEqual([6, 8, 10]);
  });

  it('--from-step and --to-step are inclusive and applied first', () => {
    expect(stepsOf(selectCheckpoints(ten, { fromStep: 3, toStep: 6 }))).toEqual([3, 4, 5, 6]);
    expect(stepsOf(selectCheckpoints(ten, { fromStep: 9 }))).toEqual([9, 10]);
    expect(stepsOf(selectCheckpoints(ten, { toStep: 2 }))).toEqual([1, 2]);
    expect(stepsOf(selectCheckpoints(ten, { fromStep: 5, toStep: 5 }))).toEqual([5]);
    expect(stepsOf(selectCheckpoints(ten, { toStep: 9, every: 3 }))).toEqual([3, 6, 9]);
    expect(stepsOf(selectCheckpoints(ten, { fromStep: 2, toStep: 9, every: 2, last: 2 }))).toEqual([7, 9]);
  });

  it('refuses an empty selection: E_NO_CHECKPOINTS', () => {
    const err = thrownSync(() => selectCheckpoints(ten, { fromStep: 11 }));
    expect(err.code).toBe('E_NO_CHECKPOINTS');
    expect(err.message).toMatch(/no checkpoint left after selection \(10 found/);
    expect(thrownSync(() => selectCheckpoints(ten, { fromStep: 4, toStep: 3 })).code).toBe('E_NO_CHECKPOINTS');
    expect(thrownSync(() => selectCheckpoints([], {})).code).toBe('E_NO_CHECKPOINTS');
  });

  it('refuses step filters on checkpoints without steps: E_USAGE', () => {
    const err = thrownSync(() => selectCheckpoints(refs([1, null, 3]), { fromStep: 1 }));
    expect(err.code).toBe('E_USAGE');
    expect(err.message).toContain('/run/final1');
  });

  it('--last and --every work on checkpoints without steps', () => {
    expect(selectCheckpoints(refs([null, null, null]), { last: 2 }).map((c) => c.name)).toEqual(['final1', 'final2']);
  });
});

function loc(name: string, dtype: DType, shape: number[]): LayoutTensor {
  return { name, dtype, shape, shard: 0, begin: 0, bytes: 0 };
}

function loaded(path: string, tensors: [string, DType, number[]][]): LoadedCheckpoint {
  const file = `${path}/model.safetensors`;
  const list = tensors.map(([n, d, s]) => loc(n, d, s));
  return {
    path,
    dir: path,
    name: path.split('/').pop() as string,
    step: null,
    layout: { kind: 'single', file },
    files: [{ path: file, size: 0, dataStart: 8 }],
    contents: { tensors: list, byName: new Map(list.map((t) => [t.name, t])), totalBytes: 0 },
    others: [],
  };
}

const base: [string, DType, number[]][] = [
  ['embed', 'BF16', [10, 4]],
  ['norm', 'F32', [4]],
  ['ids', 'I64', [3]],
];

describe('checkConsistent', () => {
  const A = '/run/checkpoint-1';
  const B = '/run/checkpoint-2';
  const C = '/run/checkpoint-3';

  it('accepts checkpoints with the same tensors in any order', () => {
    expect(() => checkConsistent([loaded(A, [...base].reverse()), loaded(B, base), loaded(C, base)])).not.toThrow();
    expect(() => checkConsistent([loaded(A, base)])).not.toThrow();
    expect(() => checkConsistent([])).not.toThrow();
  });

  function mismatch(cks: LoadedCheckpoint[], re: RegExp, tensor: string, paths: string[]): PmaError {
    const err = thrownSync(() => checkConsistent(cks));
    expect(err.code).toBe('E_MISMATCH');
    expect(err.message).toMatch(re);
    expect(err.message).toContain(JSON.stringify(tensor));
    expect(err.tensor).toBe(tensor);
    for (const p of paths) expect(err.message).toContain(p);
    return err;
  }

  it('names a tensor missing from an older checkpoint', () => {
    mismatch(
      [loaded(A, base.slice(0, 2)), loaded(B, base)],
      /tensor "ids" is in \/run\/checkpoint-2 but not in \/run\/checkpoint-1/,
      'ids',
      [A, B],
    );
  });

  it('names a dtype mismatch', () => {
    const other: [string, DType, number[]][] = [
      base[0] as [string, DType, number[]],
      ['norm', 'BF16', [4]],
      base[2] as [string, DType, number[]],
    ];
    mismatch(
      [loaded(A, base), loaded(B, other), loaded(C, base)],
      /tensor "norm" is BF16 in \/run\/checkpoint-2 but F32 in \/run\/checkpoint-3/,
      'norm',
      [B, C],
    );
  });

  it('names a shape mismatch', () => {
    const other: [string, DType, number[]][] = [
      ['embed', 'BF16', [4, 10]],
      base[1] as [string, DType, number[]],
      base[2] as [string, DType, number[]],
    ];
    mismatch(
      [loaded(A, other), loaded(B, base)],
      /tensor "embed" has shape \[4, 10\] in \/run\/checkpoint-1 but \[10, 4\] in \/run\/checkpoint-2/,
      'embed',
      [A, B],
    );
  });

  it('names a shape mismatch of the same element count but different rank', () => {
    const other: [string, DType, number[]][] = [
      base[0] as [string, DType, number[]],
      ['norm', 'F32', [2, 2]],
      base[2] as [string, DType, number[]],
    ];
    mismatch(
      [loaded(A, base), loaded(B, other)],
      /tensor "norm" has shape \[4\] in \/run\/checkpoint-1 but \[2, 2\] in \/run\/checkpoint-2/,
      'norm',
      [A, B],
    );
  });

  it('names an extra tensor in an older checkpoint', () => {
    mismatch(
      [loaded(A, [...base, ['extra.bias', 'F32', [4]]]), loaded(B, base)],
      /tensor "extra\.bias" is in \/run\/checkpoint-1 but not in \/run\/checkpoint-2/,
      'extra.bias',
      [A, B],
    );
  });
});

describe('symlink loops', () => {
  it('are refused as bad input (E_INPUT, exit 2), naming the path', async () => {
    const root = mkdtempSync(join(tmpdir(), 'pma-loop-'));
    symlinkSync(join(root, 'checkpoint-2'), join(root, 'checkpoint-1'));
    symlinkSync(join(root, 'checkpoint-1'), join(root, 'checkpoint-2'));
    const err = await rejected(discover([root]));
    expect(err.code).toBe('E_INPUT');
    expect(err.message).toContain(join(root, 'checkpoint-1'));
    expect(err.message).toContain('ELOOP');
    rmSync(root, { recursive: true, force: true });
  });
});
