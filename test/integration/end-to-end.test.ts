import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { merge, PmaError } from '../../src/index.js';
import { pma } from '../helpers/cli.js';
import { mergeTensor } from '../helpers/reference.js';
import { readSafetensors, writeCheckpoint, type RawTensor, type TensorSpec } from '../helpers/safetensors.js';

const SPECS: TensorSpec[] = [
  { name: 'model.embed_tokens.weight', dtype: 'BF16', shape: [67, 33] },
  { name: 'model.layers.0.mlp.experts.0.up_proj.weight', dtype: 'BF16', shape: [2053] },
  { name: 'model.layers.0.mlp.experts.1.up_proj.weight', dtype: 'F16', shape: [31, 17] },
  { name: 'model.layers.0.input_layernorm.weight', dtype: 'F32', shape: [129] },
  { name: 'model.layers.0.attn.scale', dtype: 'F64', shape: [9] },
  { name: 'model.norm.weight', dtype: 'F32', shape: [] },
  { name: 'model.empty', dtype: 'BF16', shape: [0, 16] },
  { name: 'model.position_ids', dtype: 'I64', shape: [7] },
  { name: 'model.mask', dtype: 'BOOL', shape: [5] },
  { name: 'model.codes', dtype: 'U8', shape: [3, 3] },
];
const STEPS = [500, 1000, 2000, 10000];

let tmp: string;
let run: string;
const data = new Map<number, Map<string, RawTensor>>();
let outN = 0;
const out = () => join(tmp, `out-${outN++}`);

function hashTree(dir: string): string {
  const h = createHash('sha256');
  for (const e of readdirSync(dir, { recursive: true, withFileTypes: true }).sort((a, b) =>
    join(a.parentPath, a.name).localeCompare(join(b.parentPath, b.name)),
  )) {
    if (e.isFile()) h.update(join(e.parentPath, e.name)).update(readFileSync(join(e.parentPath, e.name)));
  }
  return h.digest('hex');
}

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'pma-e2e-'));
  run = join(tmp, 'run');
  for (const [i, step] of STEPS.entries()) {
    data.set(step, writeCheckpoint(join(run, `checkpoint-${step}`), SPECS, step, { shards: i % 2 === 0 ? 1 : 3 }));
  }
  mkdirSync(join(run, 'checkpoint-20000')); // being written: no weights yet
  mkdirSync(join(run, 'logs'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** The expected merged tensors, computed by the tests' own model of the contract. */
function expected(steps: number[], w32: number[], dtype: string): Map<string, { dtype: string; data: Uint8Array }> {
  const m = new Map<string, { dtype: string; data: Uint8Array }>();
  for (const s of SPECS) {
    const ins = steps.map((st) => (data.get(st)?.get(s.name) as RawTensor).data);
    if (['BF16', 'F16', 'F32', 'F64'].includes(s.dtype)) {
      const od = dtype === 'keep' ? s.dtype : dtype.toUpperCase();
      m.set(s.name, { dtype: od, data: mergeTensor(s.dtype, od, ins, w32) });
    } else {
      m.set(s.name, { dtype: s.dtype, data: ins[ins.length - 1] as Uint8Array });
    }
  }
  return m;
}

function readAll(dir: string): Map<string, RawTensor> {
  const idx = join(dir, 'model.safetensors.index.json');
  const files = existsSync(idx)
    ? [
        ...new Set(
          Object.values((JSON.parse(readFileSync(idx, 'utf8')) as { weight_map: Record<string, string> }).weight_map),
        ),
      ]
    : ['model.safetensors'];
  const all = new Map<string, RawTensor>();
  for (const f of files) for (const [k, v] of readSafetensors(join(dir, f)).tensors) all.set(k, v);
  return all;
}

function expectTensors(dir: string, want: Map<string, { dtype: string; data: Uint8Array }>): void {
  const got = readAll(dir);
  expect([...got.keys()].sort()).toEqual([...want.keys()].sort());
  for (const [name, w] of want) {
    const g = got.get(name) as RawTensor;
    expect(g.dtype, name).toBe(w.dtype);
    expect(Buffer.from(g.data).equals(Buffer.from(w.data)), `${name} bytes`).toBe(true);
  }
}

describe('merging a generated run', () => {
  it('orders checkpoints by step, skips incomplete ones, and merges bit-exactly (SMA)', async () => {
    const before = hashTree(run);
    const o = out();
    const r = await merge({ inputs: run, out: o });
    expect(r.plan.checkpoints.map((c) => c.step)).toEqual(STEPS);
    expect(r.skipped.map((s) => s.path)).toEqual([join(run, 'checkpoint-20000')]);
    expectTensors(o, expected(STEPS, r.plan.weights.w32, 'keep'));
    expect(hashTree(run)).toBe(before);
  });

  it('selects with --last, --every, --from-step and --to-step', async () => {
    const pick = async (sel: object) =>
      (await merge({ inputs: run, out: out(), ...sel })).plan.checkpoints.map((c) => c.step);
    expect(await pick({ last: 2 })).toEqual([2000, 10000]);
    expect(await pick({ every: 2 })).toEqual([1000, 10000]);
    expect(await pick({ fromStep: 1000, toStep: 2000 })).toEqual([1000, 2000]);
    expect(await pick({ every: 2, last: 1 })).toEqual([10000]);
  });

  it('merges explicit checkpoints in step order with EMA and a dtype change', async () => {
    const o = out();
    const r = await merge({
      inputs: [join(run, 'checkpoint-2000'), join(run, 'checkpoint-500'), join(run, 'checkpoint-1000')],
      out: o,
      method: 'ema',
      alpha: 0.3,
      dtype: 'bf16',
    });
    expect(r.plan.checkpoints.map((c) => c.step)).toEqual([500, 1000, 2000]);
    expectTensors(o, expected([500, 1000, 2000], r.plan.weights.w32, 'bf16'));
  });

  it('takes single .safetensors files as checkpoints, with steps from their names or directories', async () => {
    const flat = join(tmp, 'flat-run');
    mkdirSync(flat);
    for (const step of [10000, 2000])
      writeFileSync(
        join(flat, `step-${step}.safetensors`),
        readFileSync(join(run, `checkpoint-${step === 2000 ? 500 : 2000}`, 'model.safetensors')),
      );
    const fromRun = await merge({ inputs: flat, out: out() });
    expect(fromRun.plan.checkpoints.map((c) => [c.name, c.step])).toEqual([
      ['step-2000.safetensors', 2000],
      ['step-10000.safetensors', 10000],
    ]);
    // Files named model.safetensors take the step of their directory: given newest first, merged oldest first.
    const o = out();
    const files = [join(run, 'checkpoint-2000', 'model.safetensors'), join(run, 'checkpoint-500', 'model.safetensors')];
    const r = await merge({ inputs: files, out: o });
    expect(r.plan.checkpoints.map((c) => c.step)).toEqual([500, 2000]);
    expectTensors(o, expected([500, 2000], r.plan.weights.w32, 'keep'));
  });

  it('shards the output above --max-shard-size with an index transformers can read', async () => {
    const o = out();
    const r = await merge({ inputs: run, out: o, maxShardSize: 3000, dtype: 'f32', threads: 2, chunkSize: 500 });
    const idx = JSON.parse(readFileSync(join(o, 'model.safetensors.index.json'), 'utf8')) as {
      metadata: { total_size: number };
      weight_map: Record<string, string>;
    };
    const shards = [...new Set(Object.values(idx.weight_map))].sort();
    expect(shards.length).toBeGreaterThan(1);
    expect(shards[0]).toBe(`model-00001-of-${String(shards.length).padStart(5, '0')}.safetensors`);
    expect(existsSync(join(o, 'model.safetensors'))).toBe(false);
    expect(Object.keys(idx.weight_map).sort()).toEqual(SPECS.map((s) => s.name).sort());
    const sum = [...readAll(o).values()].reduce((s, t) => s + t.data.length, 0);
    expect(idx.metadata.total_size).toBe(sum);
    expectTensors(o, expected(STEPS, r.plan.weights.w32, 'f32'));
  });

  it('copies the model-description files and writes pma.json, never training state', async () => {
    const o = out();
    await merge({ inputs: run, out: o, last: 3, method: 'wma', commandLine: ['pma', 'test'] });
    const files = readdirSync(o).sort();
    expect(files).toEqual(['config.json', 'model.safetensors', 'pma.json', 'tokenizer_config.json']);
    expect(JSON.parse(readFileSync(join(o, 'config.json'), 'utf8'))).toEqual({ model_type: 'test', seed: 10000 });
    const meta = JSON.parse(readFileSync(join(o, 'pma.json'), 'utf8'));
    expect(meta).toMatchObject({
      tool: 'pma',
      method: 'wma',
      alpha: null,
      accumulate: 'f32',
      dtype: 'keep',
      commandLine: ['pma', 'test'],
    });
    expect(meta.weights).toEqual([1 / 6, 2 / 6, 3 / 6]);
    expect(meta.inputs.map((i: { step: number }) => i.step)).toEqual([1000, 2000, 10000]);
  });

  it('gives the same bytes with mmap, with one or two threads, with any chunk size', async () => {
    const ref = out();
    await merge({ inputs: run, out: ref, threads: 1 });
    const want = readFileSync(join(ref, 'model.safetensors'));
    for (const o of [{ io: 'mmap' as const }, { threads: 2, chunkSize: 77 }, { threads: 2, chunkSize: 1 }]) {
      const d = out();
      await merge({ inputs: run, out: d, ...o });
      expect(readFileSync(join(d, 'model.safetensors')).equals(want), JSON.stringify(o)).toBe(true);
    }
  });

  it('gives the same bytes through mappings of large tensors: windows, their edges, unaligned offsets', async () => {
    // --io mmap maps each input 8 MiB at a time from 2 MiB file offsets, and reads ops under 1 MiB
    // per input: tensors across several windows, one after a small tensor that leaves the next
    // unaligned, in chunks cut mid-window.
    const big = join(tmp, 'big-run');
    const specs: TensorSpec[] = [
      { name: 'a.small', dtype: 'F16', shape: [12_345] },
      { name: 'b.weight', dtype: 'BF16', shape: [4_500_001] },
      { name: 'c.weight', dtype: 'F32', shape: [2_200_003] },
      { name: 'd.weight', dtype: 'F16', shape: [1024, 1023] },
    ];
    for (const step of [1, 2, 3])
      writeCheckpoint(join(big, `step-${step}`), specs, 40 + step, { shards: step === 2 ? 2 : 1 });
    const ref = out();
    await merge({ inputs: big, out: ref, io: 'pread', threads: 1 });
    const want = readFileSync(join(ref, 'model.safetensors'));
    for (const o of [
      // Chunks of more than a window of each input (4Mi bf16 elements at 8 bytes of work each).
      { threads: 1, chunkSize: '64MiB' },
      { threads: 2, chunkSize: '40MB' },
      { threads: 2 },
      { threads: 2, chunkSize: '5MiB' },
    ]) {
      const d = out();
      await merge({ inputs: big, out: d, io: 'mmap', ...o });
      expect(readFileSync(join(d, 'model.safetensors')).equals(want), JSON.stringify(o)).toBe(true);
    }
  });

  it('accumulates in f64 with --accumulate f64', async () => {
    const o = out();
    const r = await merge({ inputs: run, out: o, accumulate: 'f64', dtype: 'f32' });
    const got = readAll(o).get('model.layers.0.input_layernorm.weight') as RawTensor;
    const ins = STEPS.map((s) => data.get(s)?.get('model.layers.0.input_layernorm.weight') as RawTensor);
    const dv = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength);
    for (let j = 0; j < 129; j++) {
      const exact = ins.reduce(
        (s, t, i) => s + (r.plan.weights.w64[i] as number) * dv(t.data).getFloat32(j * 4, true),
        0,
      );
      expect(Math.abs(dv(got.data).getFloat32(j * 4, true) - exact)).toBeLessThanOrEqual(Math.abs(exact) * 2 ** -23);
    }
  });
});

describe('refusals leave nothing behind', () => {
  const leftovers = () => readdirSync(tmp).filter((n) => n.endsWith('.partial'));

  it('refuses an existing output unless --force; --force replaces only what pma wrote', async () => {
    const o = out();
    mkdirSync(o);
    writeFileSync(join(o, 'keep.txt'), 'mine');
    await expect(merge({ inputs: run, out: o })).rejects.toMatchObject({ code: 'E_OUTPUT' });
    // Not pma's (no pma.json): even --force leaves it alone.
    await expect(merge({ inputs: run, out: o, force: true })).rejects.toMatchObject({ code: 'E_OUTPUT', file: o });
    expect(readdirSync(o)).toEqual(['keep.txt']);
    const mine = out();
    await merge({ inputs: run, last: 1, out: mine });
    writeFileSync(join(mine, 'stale.txt'), 'from the last merge');
    await merge({ inputs: run, out: mine, force: true });
    expect(readdirSync(mine)).toContain('model.safetensors');
    expect(readdirSync(mine)).not.toContain('stale.txt');
  });

  it('refuses an output inside an input checkpoint, or one that contains the inputs', async () => {
    await expect(merge({ inputs: run, out: join(run, 'checkpoint-500', 'merged') })).rejects.toMatchObject({
      code: 'E_OUTPUT',
    });
    await expect(merge({ inputs: run, out: run, force: true })).rejects.toMatchObject({ code: 'E_OUTPUT' });
    expect(existsSync(join(run, 'checkpoint-500', 'merged'))).toBe(false);
  });

  it('refuses checkpoints that disagree, naming the tensor and both checkpoints (exit 2)', () => {
    const bad = join(tmp, 'bad-run');
    writeCheckpoint(join(bad, 'step-1'), SPECS, 1);
    writeCheckpoint(
      join(bad, 'step-2'),
      SPECS.map((s) => (s.name === 'model.layers.0.input_layernorm.weight' ? { ...s, shape: [128] } : s)),
      2,
    );
    const o = out();
    const r = pma(['merge', bad, '--out', o]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(
      /E_MISMATCH.*model\.layers\.0\.input_layernorm\.weight.*shape \[129\].*step-1.*\[128\].*step-2/,
    );
    expect(existsSync(o)).toBe(false);
    expect(leftovers()).toEqual([]);
  });

  it('refuses a truncated input shard with an error naming the file (exit 2)', () => {
    const bad = join(tmp, 'trunc-run');
    writeCheckpoint(join(bad, 'step-1'), SPECS, 1);
    writeCheckpoint(join(bad, 'step-2'), SPECS, 2);
    const f = join(bad, 'step-2', 'model.safetensors');
    writeFileSync(f, readFileSync(f).subarray(0, -3));
    const o = out();
    const r = pma(['merge', bad, '--out', o]);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain(f);
    expect(r.stderr).toMatch(/E_SAFETENSORS.*truncated/);
    expect(existsSync(o)).toBe(false);
  });

  it('takes a weights path that is a directory (EISDIR) as bad input: exit 2, naming it', () => {
    const bad = join(tmp, 'eisdir-run');
    writeCheckpoint(join(bad, 'step-1'), SPECS, 1);
    mkdirSync(join(bad, 'step-2', 'model.safetensors'), { recursive: true });
    const o = out();
    const r = pma(['merge', bad, '--out', o]);
    expect(r.stderr).toMatch(/^pma: error \[E_INPUT\]: cannot read .*step-2\/model\.safetensors: EISDIR: /m);
    expect(r.status).toBe(2);
    expect(existsSync(o)).toBe(false);
    // An output file the user names that is a directory: the same.
    const report = pma(['analyze', run, '--last', '2', '--report', tmp]);
    expect(report.stderr).toMatch(/^pma: error \[E_INPUT\]: cannot write the report .*: EISDIR: /m);
    expect(report.status).toBe(2);
  });

  it('maps usage errors to exit 2 and prints help with examples', () => {
    expect(pma(['merge', run, '--out', out(), '--bogus']).status).toBe(2);
    const bad = pma(['merge', run, '--out', out(), '--last', '0']);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain('invalid --last: expected an integer >= 1, got "0"');
    expect(pma(['frobnicate']).status).toBe(2);
    const help = pma(['merge', '--help']);
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/Examples:[\s\S]*--last 8/);
    expect(pma(['merge', join(tmp, 'nope'), '--out', out()]).status).toBe(2);
  });

  it('aborts on an AbortSignal and leaves no output, only its partial', async () => {
    const o = out();
    const ac = new AbortController();
    let calls = 0;
    const p = merge({
      inputs: run,
      out: o,
      chunkSize: 64,
      threads: 1,
      signal: ac.signal,
      onProgress: () => {
        if (++calls === 3) ac.abort();
      },
    });
    await expect(p).rejects.toBeInstanceOf(PmaError);
    await expect(p).rejects.toMatchObject({ code: 'E_ABORTED' });
    expect(existsSync(o)).toBe(false);
    // What was written stays for --resume (test/integration/resume.test.ts).
    expect(leftovers()).toEqual([`${o.split('/').pop()}.partial`]);
    rmSync(`${o}.partial`, { recursive: true });
  });
});

describe('the CLI reports', () => {
  it('--dry-run prints the plan and writes nothing', () => {
    const o = out();
    const r = pma(['merge', run, '--last', '2', '--out', o, '--dry-run']);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/merging 2 checkpoint\(s\) with sma/);
    expect(r.stdout).toMatch(/2000 +weight 0\.500000/);
    expect(r.stdout).toMatch(/model\.safetensors/);
    expect(r.stdout).toMatch(/copied from the newest checkpoint \(checkpoint-10000\)/);
    expect(existsSync(o)).toBe(false);
    const j = pma(['merge', run, '--dry-run', '--json']);
    const plan = JSON.parse(j.stdout);
    expect(plan.checkpoints).toHaveLength(4);
    expect(plan.chunks.length).toBeGreaterThan(0);
  });

  it('--json prints a machine-readable summary', () => {
    const o = out();
    const r = pma(['merge', run, '--out', o, '--json', '--method', 'wma']);
    expect(r.status).toBe(0);
    const s = JSON.parse(r.stdout);
    expect(s).toMatchObject({ out: o, method: 'wma', dtype: 'keep' });
    expect(s.checkpoints.map((c: { step: number }) => c.step)).toEqual(STEPS);
    expect(s.files).toEqual([{ name: 'model.safetensors', size: expect.any(Number) }]);
    expect(r.stderr).toMatch(/merging 4 checkpoint/);
  });

  it('inspect lists checkpoints, steps, dtypes and skipped directories', () => {
    const r = pma(['inspect', run]);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/4 checkpoint\(s\)/);
    expect(r.stdout.indexOf('checkpoint-2000')).toBeLessThan(r.stdout.indexOf('checkpoint-10000'));
    expect(r.stdout).toMatch(/3 shards/);
    expect(r.stdout).toMatch(/skipped .*checkpoint-20000: no \.safetensors file/);
    const j = JSON.parse(pma(['inspect', run, '--json']).stdout);
    expect(j.tensors).toHaveLength(SPECS.length);
    expect(j.mismatch).toBeNull();
  });
});
