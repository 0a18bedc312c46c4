import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';

import { beforeAll, describe, expect, it } from 'vitest';

import { readDcpMetadata, type DcpItem } from '../../src/dcp/metadata.js';
import { metadataPickle, type MetadataItem } from '../../src/dcp/writer.js';
import type { DType } from '../../src/dtypes.js';
import { PmaError, merge, verify, type MergePlan } from '../../src/index.js';
import { writeSyntheticDcp } from '../../src/synthetic/dcp.js';
import { encode } from '../../src/synthetic/values.js';
import { writeSyntheticCheckpoint, type SyntheticTensor } from '../../src/synthetic/writer.js';
import { pma } from '../helpers/cli.js';
import { DCP_FIXTURES } from '../helpers/dcp.js';
import { rejected } from '../helpers/errors.js';
import { itNeeds } from '../helpers/requires.js';
import { readSafetensors, rng, SIZE } from '../helpers/safetensors.js';
import { scratch } from '../helpers/scratch.js';
import { dcpCrcProblems, zipMembers } from '../helpers/zip-check.js';

// A merge of DCP checkpoints written as DCP (the default for DCP inputs): the newest checkpoint's
// files with the averages written in, which torch's own DCP reader loads (PMA-init).
const { tmp, out } = scratch('pma-dcp-out-');
const ONE_RANK = join(DCP_FIXTURES, 'one-rank');
const RESHARDED = join(DCP_FIXTURES, 'resharded');
const AS_SAFETENSORS = join(DCP_FIXTURES, 'one-rank-safetensors');
const TORCH =
  spawnSync('/usr/bin/python3', ['-c', 'import torch'], { encoding: 'utf8' }).status === 0
    ? null
    : 'python3-torch (Debian) is not installed';

const volume = (s: number[]) => s.reduce((a, b) => a * b, 1);

/**
 * Every tensor of a DCP checkpoint, whole (row-major), put together here from its chunks: the
 * metadata says where each chunk's archive is; the elements are its data/ member (whose storage
 * holds just the chunk, as torch and pma write it).
 */
async function dcpTensors(dir: string): Promise<Map<string, Buffer>> {
  const meta = await readDcpMetadata(dir);
  const out = new Map<string, Buffer>();
  for (const item of meta.items) {
    if (item.kind !== 'tensor') continue;
    const width = SIZE[item.dtype as string] as number;
    const whole = Buffer.alloc(volume(item.shape) * width);
    for (const c of item.chunks) {
      const archive = readFileSync(c.file).subarray(c.offset, c.offset + c.length);
      const member = zipMembers(archive).find((m) => /\/data\/\d+$/.test(m.name));
      if (!member) throw new Error(`${item.fqn}: no data member`);
      const data = member.data;
      // Row by row of the chunk's box into the whole tensor.
      const rows = volume(c.sizes.slice(0, -1));
      const rowBytes = (c.sizes[c.sizes.length - 1] ?? 1) * width;
      for (let r = 0; r < rows; r++) {
        const at = [...c.sizes.slice(0, -1)].map(() => 0);
        for (let d = at.length - 1, rest = r; d >= 0; d--) {
          at[d] = rest % (c.sizes[d] as number);
          rest = Math.floor(rest / (c.sizes[d] as number));
        }
        let flat = 0;
        for (let d = 0; d < item.shape.length; d++)
          flat = flat * (item.shape[d] as number) + (c.offsets[d] as number) + (d < at.length ? (at[d] as number) : 0);
        data.copy(whole, flat * width, r * rowBytes, (r + 1) * rowBytes);
      }
    }
    out.set(item.fqn, whole);
  }
  return out;
}

/** The stored bytes of each item of `dir` that `keep` takes: a byte blob's range, a tensor's chunk archives. */
async function storedBytes(dir: string, keep: (i: DcpItem) => boolean): Promise<Map<string, Buffer>> {
  const meta = await readDcpMetadata(dir);
  const got = new Map<string, Buffer>();
  for (const i of meta.items.filter(keep)) {
    const ranges = i.kind === 'bytes' ? [i] : i.chunks;
    got.set(i.fqn, Buffer.concat(ranges.map((r) => readFileSync(r.file).subarray(r.offset, r.offset + r.length))));
  }
  return got;
}

const safetensorsOf = (dir: string) =>
  new Map([...readSafetensors(join(dir, 'model.safetensors')).tensors].map(([n, t]) => [n, Buffer.from(t.data)]));

describe('a DCP merge written as DCP', () => {
  it('is the default for DCP inputs: the averaged tensors are the bytes of the safetensors merge, the rest is the newest checkpoint', async () => {
    for (const method of [{}, { method: 'ema', alpha: 0.3 }] as Record<string, unknown>[]) {
      const want = safetensorsOf((await merge({ inputs: AS_SAFETENSORS, out: out(), ...method })).out);
      for (const run of [ONE_RANK, RESHARDED]) {
        for (const engine of [{ threads: 1 }, { threads: 2, chunkSize: 64 }]) {
          const what = `${run} ${JSON.stringify({ ...method, ...engine })}`;
          const r = await merge({ inputs: run, out: out(), ...method, ...engine });
          expect(r.plan.format).toBe('dcp');
          const got = await dcpTensors(r.out);
          for (const [name, bytes] of want) expect(got.get(name)?.equals(bytes), `${what}: ${name}`).toBe(true);
          // Training state, the integer tensor and the byte blob: the newest checkpoint's, byte for byte.
          const newest = join(run, 'step-300');
          const others = (i: DcpItem) => !want.has(i.fqn);
          expect(await storedBytes(r.out, others), what).toEqual(await storedBytes(newest, others));
          expect(readFileSync(join(r.out, '.metadata')).equals(readFileSync(join(newest, '.metadata')))).toBe(true);
          expect(await dcpCrcProblems(r.out), what).toEqual([]);
        }
      }
    }
  });

  it('through the CLI, with --dry-run listing the files; pma verify checks it and finds a changed byte', () => {
    const plan = pma(['merge', RESHARDED, '--dry-run']);
    expect(plan.status, plan.stderr).toBe(0);
    expect(plan.stdout).toContain('__0_0.distcp');
    expect(plan.stdout).toContain('.metadata (copied from the newest checkpoint)');
    expect(plan.stdout).toContain(
      'note: 3 item(s) are not averaged: copied unchanged from the newest checkpoint (step-300): model.position_ids, optimizer.state.model.layers.0.mlp.weight.exp_avg, train_state',
    );
    const o = out();
    const r = pma(['merge', RESHARDED, '--out', o, '-q']);
    expect(r.status, r.stderr).toBe(0);
    const v = pma(['verify', o]);
    expect(v.status, v.stdout + v.stderr).toBe(0);
    expect(v.stdout).toContain('intact (4 tensors, 2 files checked, blake3)');
    // One bit of an averaged element: the archives still read, the checksum tells.
    const at = (JSON.parse(pma(['merge', RESHARDED, '--dry-run', '--json']).stdout) as MergePlan).tensors[0]?.offset;
    const file = join(o, '__0_0.distcp');
    const b = readFileSync(file);
    b[at as number] = (b[at as number] as number) ^ 1;
    writeFileSync(file, b);
    const broken = pma(['verify', o]);
    expect(broken.status).toBe(2);
    expect(broken.stderr).toContain('[E_CORRUPT]');
    expect(broken.stderr).toContain('__0_0.distcp has BLAKE3');
  });

  it('refuses a dtype other than the stored one, and a newest checkpoint that is not DCP (exit 2, nothing written)', async () => {
    const o = out();
    const e = await rejected(merge({ inputs: ONE_RANK, out: o, dtype: 'f32' }));
    expect(e.code).toBe('E_USAGE');
    expect(e.message).toContain('cannot be written in f32: pass --format safetensors');
    const cli = pma(['merge', AS_SAFETENSORS, '--format', 'dcp', '--out', o]);
    expect(cli.status).toBe(2);
    expect(cli.stderr).toContain('is not a DCP checkpoint: pass --format safetensors');
    expect(existsSync(o)).toBe(false);
  });

  itNeeds(TORCH)("loads with torch 1.13's own DCP reader: every tensor as pma merged it", async () => {
    const r = await merge({ inputs: RESHARDED, out: out() });
    const py = spawnSync('/usr/bin/python3', [join(DCP_FIXTURES, 'load_with_torch.py'), r.out], { encoding: 'utf8' });
    expect(py.status, py.stderr).toBe(0);
    const loaded = JSON.parse(py.stdout) as Record<string, string>;
    const got = await dcpTensors(r.out);
    expect(Object.keys(loaded).sort()).toEqual([...got.keys()].sort());
    for (const [name, bytes] of got) expect(loaded[name], name).toBe(bytes.toString('hex'));
    const want = safetensorsOf((await merge({ inputs: AS_SAFETENSORS, out: out() })).out);
    for (const [name, bytes] of want) expect(loaded[name], name).toBe(bytes.toString('hex'));
  });
});

describe('DCP windows and damage', () => {
  it('a token window (--tokens-per-step, --window) selects DCP checkpoints as it does safetensors', async () => {
    const r = await merge({ inputs: RESHARDED, out: out(), tokensPerStep: '1M', window: '150M' });
    expect(r.plan.checkpoints.map((c) => [c.step, c.tokens])).toEqual([
      [200, 200e6],
      [300, 300e6],
    ]);
    expect(r.plan.format).toBe('dcp');
    expect(await dcpCrcProblems(r.out)).toEqual([]);
  });

  it('torch 2.x metadata in the newest checkpoint: kept as it is, byte for byte', async () => {
    const run = join(tmp, 'two-x');
    cpSync(RESHARDED, run, { recursive: true });
    const newest = join(run, 'step-300');
    const m = await readDcpMetadata(newest);
    const items: MetadataItem[] = m.items.map((i) =>
      i.kind === 'bytes'
        ? { ...i, file: basename(i.file) }
        : {
            kind: 'tensor',
            fqn: i.fqn,
            dtype: i.dtype as DType,
            shape: i.shape,
            chunks: i.chunks.map((c) => ({ ...c, file: basename(c.file) })),
          },
    );
    writeFileSync(join(newest, '.metadata'), metadataPickle(items, 'torch 2.x'));
    const r = await merge({ inputs: run, out: out() });
    expect((await readDcpMetadata(r.out)).writer).toBe('torch 2.x');
    expect(readFileSync(join(r.out, '.metadata')).equals(readFileSync(join(newest, '.metadata')))).toBe(true);
    const want = safetensorsOf((await merge({ inputs: AS_SAFETENSORS, out: out() })).out);
    const got = await dcpTensors(r.out);
    for (const [name, bytes] of want) expect(got.get(name)?.equals(bytes), name).toBe(true);
  });

  it('survives random damage to the archives of the newest checkpoint: a merge or a PmaError, never a crash or a hang', async () => {
    const run = join(tmp, 'fuzz');
    cpSync(ONE_RANK, run, { recursive: true });
    const file = join(run, 'step-300', '__0_0.distcp');
    const original = readFileSync(file);
    const rand = rng(29);
    let refused = 0;
    for (let trial = 0; trial < 80; trial++) {
      const b = Buffer.from(original);
      for (let k = 0; k < 1 + Math.floor(rand() * 3); k++) b[Math.floor(rand() * b.length)] = Math.floor(rand() * 256);
      writeFileSync(file, b);
      let merged: string | null = null;
      try {
        merged = (await merge({ inputs: run, out: out(), threads: 1 })).out;
      } catch (e) {
        expect(e).toBeInstanceOf(PmaError);
        expect((e as PmaError).code, (e as Error).message).toMatch(/^E_(INPUT|NONFINITE)$/);
        refused++;
      }
      // A merge that went through: every member it rewrote is whole; the rest are as the input's.
      if (merged) {
        const before = await dcpCrcProblems(join(run, 'step-300'));
        for (const p of await dcpCrcProblems(merged)) expect(before, `trial ${trial}`).toContain(p);
      }
    }
    expect(refused).toBeGreaterThan(10);
  });
});

describe('DCP outputs over synthetic runs', () => {
  const tensors: SyntheticTensor[] = [
    { name: 'model.w', dtype: 'BF16', shape: [9, 70] },
    { name: 'model.b', dtype: 'F32', shape: [70] },
    { name: 'model.s', dtype: 'F32', shape: [] },
    { name: 'model.h', dtype: 'F16', shape: [4, 3, 40] },
    { name: 'optimizer.m', dtype: 'F32', shape: [9, 70] },
  ];
  const data = (step: number) => (t: SyntheticTensor) =>
    encode(t.dtype as 'BF16', volume(t.shape), (i) => Math.cos(i * 0.3 + step * 1.7 + t.name.length));
  const run = join(tmp, 'synthetic');
  // Steps 1..3 saved by 3, 1 and 4 ranks: the newest layout cuts every tensor four ways.
  const ranks = [3, 1, 4];
  beforeAll(() => {
    for (const [i, step] of [1, 2, 3].entries()) {
      for (const crcAt of ['descriptor', 'local-header'] as const)
        writeSyntheticDcp(join(run, crcAt, `step-${step}`), {
          tensors,
          data: data(step),
          ranks: ranks[i],
          bytes: { train_state: new Uint8Array([step, 7, 7]) },
          crcAt,
        });
      writeSyntheticCheckpoint(join(run, 'st', `step-${step}`), { tensors: tensors.slice(0, 4), data: data(step) });
    }
  });

  it('a window saved by 3, 1 and 4 ranks: each run lands in the newest layout, for either place of the CRC-32', async () => {
    const want = safetensorsOf((await merge({ inputs: join(run, 'st'), out: out() })).out);
    for (const crcAt of ['descriptor', 'local-header']) {
      for (const engine of [{ threads: 1 }, { threads: 2, chunkSize: 256 }]) {
        const what = `${crcAt} ${JSON.stringify(engine)}`;
        const r = await merge({ inputs: join(run, crcAt), out: out(), ...engine });
        expect(r.plan.outputs.map((f) => f.name)).toEqual([
          '__0_0.distcp',
          '__1_0.distcp',
          '__2_0.distcp',
          '__3_0.distcp',
        ]);
        const got = await dcpTensors(r.out);
        for (const [name, bytes] of want) expect(got.get(name)?.equals(bytes), `${what}: ${name}`).toBe(true);
        const others = (i: DcpItem) => !want.has(i.fqn);
        expect(await storedBytes(r.out, others), what).toEqual(await storedBytes(join(run, crcAt, 'step-3'), others));
        expect(await dcpCrcProblems(r.out), what).toEqual([]);
        expect((await verify(r.out)).ok, what).toBe(true);
      }
    }
  });

  it('an interrupted DCP merge resumes to the same bytes', async () => {
    const o = out();
    const whole = await merge({ inputs: join(run, 'local-header'), out: out(), chunkSize: 256 });
    const ac = new AbortController();
    let chunks = 0;
    const e = await rejected(
      merge({
        inputs: join(run, 'local-header'),
        out: o,
        chunkSize: 256,
        threads: 1,
        signal: ac.signal,
        onProgress: () => {
          if (++chunks === 3) ac.abort();
        },
      }),
    );
    expect(e.code).toBe('E_ABORTED');
    const r = await merge({ inputs: join(run, 'local-header'), out: o, chunkSize: 256, resume: true });
    expect(r.resumedChunks).toBeGreaterThan(0);
    for (const f of readdirSync(whole.out))
      if (f !== 'pma.json') expect(readFileSync(join(o, f)).equals(readFileSync(join(whole.out, f))), f).toBe(true);
  });

  it('a Megatron-LM run: iter_NNNNNNN/ with common.pt and metadata.json, and latest_checkpointed_iteration.txt', async () => {
    const mrun = join(tmp, 'megatron');
    for (const s of [1, 2, 3]) {
      const d = join(mrun, `iter_000000${s}`);
      cpSync(join(run, 'descriptor', `step-${s}`), d, { recursive: true });
      writeFileSync(join(d, 'common.pt'), `not a pickle pma reads ${s}`);
      writeFileSync(join(d, 'metadata.json'), '{"sharded_backend": "torch_dist", "sharded_backend_version": 1}');
    }
    writeFileSync(join(mrun, 'latest_checkpointed_iteration.txt'), '3');
    const r = await merge({ inputs: mrun, out: out() });
    expect(readFileSync(join(r.out, 'latest_checkpointed_iteration.txt'), 'utf8')).toBe('3');
    const iter = join(r.out, 'iter_0000003');
    expect(readdirSync(iter).sort()).toEqual([
      '.metadata',
      '__0_0.distcp',
      '__1_0.distcp',
      '__2_0.distcp',
      '__3_0.distcp',
      'common.pt',
      'metadata.json',
    ]);
    expect(readFileSync(join(iter, 'common.pt'), 'utf8')).toBe('not a pickle pma reads 3');
    expect(await dcpCrcProblems(iter)).toEqual([]);
    const v = await verify(r.out);
    expect(v.ok, v.problems.join('; ')).toBe(true);
    expect(v.files.map((f) => f.name)).toContain('iter_0000003/__3_0.distcp');
    expect(v.unrecorded).toEqual([]);
    // The output is itself a run pma reads: one checkpoint, iteration 3.
    const again = await merge({ inputs: r.out, out: out(), format: 'safetensors' });
    expect(again.plan.checkpoints.map((c) => c.step)).toEqual([3]);
  });
});
