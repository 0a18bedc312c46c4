import { cpSync, readFileSync, truncateSync, writeFileSync, existsSync, openSync, writeSync, closeSync } from 'node:fs';
import { basename, join } from 'node:path';

import { spawnSync } from 'node:child_process';

import { beforeAll, describe, expect, it } from 'vitest';

import { readDcpMetadata, type DcpTensor } from '../../src/dcp/metadata.js';
import { PmaError, analyze, inspect, merge, watchRun } from '../../src/index.js';
import { DCP_FIXTURES } from '../helpers/dcp.js';
import { rejected } from '../helpers/errors.js';
import { pickle } from '../../src/dcp/pickler.js';
import { metadataPickle, type MetadataItem } from '../../src/dcp/writer.js';
import type { DType } from '../../src/dtypes.js';
import { pma } from '../helpers/cli.js';
import { itNeeds } from '../helpers/requires.js';
import { rng } from '../helpers/safetensors.js';
import { scratch } from '../helpers/scratch.js';
import { writeSyntheticDcp } from '../../src/synthetic/dcp.js';
import { encode } from '../../src/synthetic/values.js';
import { writeSyntheticCheckpoint, type SyntheticTensor } from '../../src/synthetic/writer.js';

// PyTorch Distributed Checkpoints written by torch 1.13's own DCP writer
// (test/fixtures/dcp/make_fixtures.py), read and merged without PyTorch.
const { tmp, out } = scratch('pma-dcp-');
const FIX = DCP_FIXTURES;
const ONE_RANK = join(FIX, 'one-rank');
const RESHARDED = join(FIX, 'resharded');
const AS_SAFETENSORS = join(FIX, 'one-rank-safetensors');
const bytesOf = (dir: string) => readFileSync(join(dir, 'model.safetensors'));

describe('reading DCP metadata', () => {
  it('lists items, chunks and storage as torch wrote them (one rank, then 2 and 3 ranks)', async () => {
    const m = await readDcpMetadata(join(ONE_RANK, 'step-100'));
    expect(m.writer).toBe('torch 1.x');
    expect(
      m.items.map((i) => `${i.fqn}:${i.kind === 'tensor' ? `${i.dtype}[${i.shape.join(',')}]` : 'bytes'}`),
    ).toEqual([
      'model.embed_tokens.weight:BF16[12,8]',
      'model.layers.0.mlp.weight:F32[6,10]',
      'model.layers.0.norm.weight:F16[10]',
      'model.position_ids:I64[5]',
      'optimizer.state.model.layers.0.mlp.weight.exp_avg:F32[6,10]',
      'train_state:bytes',
    ]);
    const three = (await readDcpMetadata(join(RESHARDED, 'step-200'))).byFqn.get(
      'model.layers.0.mlp.weight',
    ) as DcpTensor;
    expect(three.chunks.map((c) => [c.offsets, c.sizes, c.file.split('/').pop()])).toEqual([
      [[0, 0], [2, 10], '__0_1.distcp'],
      [[2, 0], [2, 10], '__1_0.distcp'],
      [[4, 0], [2, 10], '__2_0.distcp'],
    ]);
  });

  it('inspect shows a DCP run: steps, files, model tensors and the items left out', async () => {
    const r = await inspect(RESHARDED);
    expect(r.checkpoints.map((c) => [c.step, c.layout, c.files, c.tensors, c.others])).toEqual([
      [100, 'dcp', 7, 4, 2],
      [200, 'dcp', 8, 4, 2],
      [300, 'dcp', 1, 4, 2],
    ]);
    expect(pma(['inspect', RESHARDED]).stdout).toContain(
      'DCP, 8 file(s)  4 tensors  492 B  BF16x1 F32x1 F16x1 I64x1  (+2 items not averaged)',
    );
  });
});

describe('a Megatron-LM torch_dist run', () => {
  it('takes iter_NNNNNNN checkpoints up to the one latest_checkpointed_iteration.txt names', async () => {
    const run = join(tmp, 'megatron');
    for (const s of [100, 200, 300])
      cpSync(join(RESHARDED, `step-${s}`), join(run, `iter_${String(s).padStart(7, '0')}`), { recursive: true });
    writeFileSync(join(run, 'latest_checkpointed_iteration.txt'), '200');
    const r = await inspect(run);
    expect(r.checkpoints.map((c) => c.step)).toEqual([100, 200]);
    expect(r.skipped).toEqual([
      {
        path: join(run, 'iter_0000300'),
        reason: 'newer than latest_checkpointed_iteration.txt (200): still being saved',
      },
    ]);
    const m = await merge({ inputs: run, out: out(), format: 'safetensors' });
    expect(m.plan.checkpoints.map((c) => c.step)).toEqual([100, 200]);
  });
});

describe('merging DCP checkpoints into safetensors', () => {
  const reference = (args: Record<string, unknown> = {}) =>
    merge({ inputs: AS_SAFETENSORS, out: out(), ...args }).then((r) => bytesOf(r.out));

  it('gives the bytes of the same tensors merged from safetensors, for any threads and chunk size', async () => {
    for (const method of [{}, { method: 'ema', alpha: 0.3 }, { last: 2, method: 'wma' }] as Record<string, unknown>[]) {
      const want = await reference(method);
      for (const run of [ONE_RANK, RESHARDED]) {
        for (const engine of [{ threads: 1 }, { threads: 2, chunkSize: 64 }]) {
          const r = await merge({ inputs: run, out: out(), format: 'safetensors', ...method, ...engine });
          expect(bytesOf(r.out).equals(want), `${run} ${JSON.stringify({ ...method, ...engine })}`).toBe(true);
        }
      }
    }
  });

  it('through the CLI with --format safetensors (without it, the output is DCP)', () => {
    const o = out();
    const r = pma(['merge', RESHARDED, '--format', 'safetensors', '--out', o, '--json']);
    expect(r.status, r.stderr).toBe(0);
    expect((JSON.parse(r.stdout) as { checkpoints: { step: number }[] }).checkpoints.map((c) => c.step)).toEqual([
      100, 200, 300,
    ]);
    expect(existsSync(join(o, 'model.safetensors'))).toBe(true);
    const dcp = out();
    expect(pma(['merge', RESHARDED, '--out', dcp]).status).toBe(0);
    expect(existsSync(join(dcp, '.metadata'))).toBe(true);
  });

  it('--average and --exclude choose the tensors; the plan says what is copied and what is left out', async () => {
    const p = await merge({ inputs: ONE_RANK, out: out(), format: 'safetensors', exclude: ['*.norm.*'] });
    expect(
      p.plan.tensors
        .filter((t) => t.action === 'copy')
        .map((t) => t.name)
        .sort(),
    ).toEqual(['model.layers.0.norm.weight', 'model.position_ids']);
    expect(p.plan.notes).toContain(
      '2 item(s) of the DCP checkpoints are left out of the output (optimizer.state.model.layers.0.mlp.weight.exp_avg: training state, train_state: a byte blob); --average GLOB takes tensors among them',
    );
    const opt = await merge({
      inputs: ONE_RANK,
      out: out(),
      format: 'safetensors',
      average: ['model.layers.*', 'optimizer.*'],
    });
    expect(opt.plan.tensors.map((t) => `${t.name}:${t.action}`).sort()).toEqual([
      'model.embed_tokens.weight:copy',
      'model.layers.0.mlp.weight:merge',
      'model.layers.0.norm.weight:merge',
      'model.position_ids:copy',
      'optimizer.state.model.layers.0.mlp.weight.exp_avg:merge',
    ]);
    const cli = pma(['merge', ONE_RANK, '--format', 'safetensors', '--exclude', 'model.embed*', '--dry-run']);
    expect(cli.stdout).toContain(
      'note: 2 tensor(s) (I64, BF16; model.position_ids, model.embed_tokens.weight) are not averaged: copied from the newest checkpoint (step-300)',
    );
  });

  it('pma watch merges a DCP run as its checkpoints complete (.metadata last, every file long enough)', async () => {
    const run = join(tmp, 'watched');
    const ac = new AbortController();
    const seen: number[] = [];
    cpSync(join(RESHARDED, 'step-100'), join(run, 'step-100'), { recursive: true });
    for await (const m of watchRun({
      run,
      out: out(),
      format: 'safetensors',
      settleMs: 0,
      pollMs: 20,
      signal: ac.signal,
    })) {
      seen.push(m.step);
      if (m.step === 100) cpSync(join(RESHARDED, 'step-200'), join(run, 'step-200'), { recursive: true });
      else ac.abort();
    }
    expect(seen).toEqual([100, 200]);
  });

  it('pma analyze reads a DCP window as it reads safetensors', async () => {
    const a = await analyze({ inputs: RESHARDED });
    const b = await analyze({ inputs: AS_SAFETENSORS });
    expect(a.overall).toEqual(b.overall);
    expect(a.tensors.map((t) => t.name)).toEqual(b.tensors.map((t) => t.name));
  });
});

/** A torch 2.x .metadata (torch.distributed.checkpoint classes) describing the given tensors. */
function metadata2x(tensors: DcpTensor[], relative: (file: string) => string = (f) => basename(f)): Buffer {
  const items: MetadataItem[] = tensors.map((t) => ({
    kind: 'tensor',
    fqn: t.fqn,
    dtype: t.dtype as DType,
    shape: t.shape,
    chunks: t.chunks.map((c) => ({ ...c, file: relative(c.file) })),
  }));
  return metadataPickle(items, 'torch 2.x');
}

/** A copy of the resharded run whose step-200 metadata is replaced by `make(its tensors)`. */
async function withMetadata(make: (tensors: DcpTensor[]) => Buffer): Promise<string> {
  const run = join(tmp, `run-${Math.random().toString(36).slice(2)}`);
  cpSync(RESHARDED, run, { recursive: true });
  const m = await readDcpMetadata(join(run, 'step-200'));
  writeFileSync(join(run, 'step-200', '.metadata'), make(m.items.filter((i): i is DcpTensor => i.kind === 'tensor')));
  return run;
}

const TORCH =
  spawnSync('/usr/bin/python3', ['-c', 'import torch'], { encoding: 'utf8' }).status === 0
    ? null
    : 'python3-torch (Debian) is not installed';

describe('DCP checkpoints pma writes', () => {
  const tensors: SyntheticTensor[] = [
    { name: 'model.w', dtype: 'BF16', shape: [7, 5] },
    { name: 'model.b', dtype: 'F32', shape: [5] },
    { name: 'model.s', dtype: 'F32', shape: [] },
    { name: 'model.h', dtype: 'F16', shape: [2, 3, 4] },
    { name: 'optimizer.m', dtype: 'F32', shape: [7, 5] },
  ];
  const data = (step: number) => (t: SyntheticTensor) =>
    encode(
      t.dtype as 'BF16',
      t.shape.reduce((a, b) => a * b, 1),
      (i) => Math.sin(i * 0.7 + step + t.name.length),
    );
  const run = join(tmp, 'synthetic');
  beforeAll(() => {
    for (const step of [1, 2, 3]) {
      writeSyntheticDcp(join(run, 'dcp', `step-${step}`), {
        tensors,
        data: data(step),
        ranks: step,
        bytes: { train_state: new Uint8Array([7]) },
      });
      writeSyntheticCheckpoint(join(run, 'st', `step-${step}`), { tensors: tensors.slice(0, 4), data: data(step) });
    }
  });

  it('read by pma: a window saved by 1, 2 and 3 ranks merges to the bytes of the safetensors merge', async () => {
    const a = await merge({ inputs: join(run, 'dcp'), out: out(), format: 'safetensors', chunkSize: 64 });
    const b = await merge({ inputs: join(run, 'st'), out: out() });
    expect(bytesOf(a.out).equals(bytesOf(b.out))).toBe(true);
  });

  itNeeds(TORCH)("read by torch 1.13's own DCP reader: every tensor, byte for byte", () => {
    const r = spawnSync('/usr/bin/python3', [join(DCP_FIXTURES, 'load_with_torch.py'), join(run, 'dcp', 'step-3')], {
      encoding: 'utf8',
    });
    expect(r.status, r.stderr).toBe(0);
    const loaded = JSON.parse(r.stdout) as Record<string, string>;
    expect(Object.keys(loaded).sort()).toEqual(tensors.map((t) => t.name).sort());
    for (const t of tensors) expect(loaded[t.name], t.name).toBe(Buffer.from(data(3)(t)).toString('hex'));
  });
});

describe('torch 2.x metadata', () => {
  it('reads the same as 1.x (module path, TensorProperties state tuple, enums) and merges to the same bytes', async () => {
    const run = await withMetadata((t) => metadata2x(t));
    const m = await readDcpMetadata(join(run, 'step-200'));
    expect(m.writer).toBe('torch 2.x');
    const r = await merge({ inputs: run, out: out(), format: 'safetensors' });
    expect(bytesOf(r.out).equals(await merge({ inputs: AS_SAFETENSORS, out: out() }).then((x) => bytesOf(x.out)))).toBe(
      true,
    );
  });
});

describe('hostile and broken checkpoints: exit 2 naming the file and the item', () => {
  const refusal = async (run: string, re: RegExp, tensor?: string) => {
    const o = out();
    const e = await rejected(merge({ inputs: run, out: o, format: 'safetensors' }));
    expect(e.code).toBe('E_INPUT');
    expect(e.message).toMatch(re);
    if (tensor !== undefined) expect(e.tensor).toBe(tensor);
    expect(existsSync(o)).toBe(false);
    expect(existsSync(`${o}.partial`)).toBe(false);
    return e;
  };
  const MLP = 'model.layers.0.mlp.weight';

  it('a global that is not DCP (os.system) is named and never run', async () => {
    const run = await withMetadata(() => pickle({ call: 'os.system', args: ['touch /tmp/pma-pwned'] }));
    await refusal(run, /refers to os\.system, which pma does not read/);
    expect(existsSync('/tmp/pma-pwned')).toBe(false);
  });

  it('a storage path out of the checkpoint, overlapping chunks, chunks that leave a gap', async () => {
    await refusal(
      await withMetadata((t) => metadata2x(t, () => '../step-100/__0_0.distcp')),
      /is stored in "\.\.\/step-100\/__0_0\.distcp", which is not a file name inside the checkpoint/,
    );
    const overlap = (t: DcpTensor[]) =>
      metadata2x(
        t.map((x) =>
          x.fqn === MLP ? { ...x, chunks: x.chunks.map((c, i) => (i === 1 ? { ...c, offsets: [1, 0] } : c)) } : x,
        ),
      );
    await refusal(await withMetadata(overlap), /its chunks at \[0, 0\] and \[1, 0\] overlap|has no storage entry/, MLP);
    const gap = (t: DcpTensor[]) =>
      metadata2x(t.map((x) => (x.fqn === MLP ? { ...x, chunks: x.chunks.slice(0, 2) } : x)));
    await refusal(await withMetadata(gap), /its chunks hold 40 elements, its shape \[6, 10\] 60/, MLP);
  });

  it('a truncated data file, and a broken archive inside one', async () => {
    const run = join(tmp, 'truncated');
    cpSync(RESHARDED, run, { recursive: true });
    truncateSync(join(run, 'step-200', '__2_0.distcp'), 500);
    await refusal(
      run,
      /__2_0\.distcp: item "model\.layers\.0\.mlp\.weight" is stored at bytes 0\+811, past the end of the file \(500 bytes\)/,
      MLP,
    );
    const broken = join(tmp, 'broken-zip');
    cpSync(RESHARDED, broken, { recursive: true });
    const f = join(broken, 'step-200', '__2_0.distcp');
    const fd = openSync(f, 'r+');
    writeSync(fd, Buffer.alloc(30, 0x41), 0, 30, 811 - 30); // the end-of-directory record
    closeSync(fd);
    await refusal(
      broken,
      /the archive of tensor "model\.layers\.0\.mlp\.weight" \(bytes 0\+811\) has no end-of-directory record/,
    );
  });

  it('survives random damage to .metadata: every outcome is a merge or a PmaError, never a crash or a hang', async () => {
    const original = readFileSync(join(RESHARDED, 'step-200', '.metadata'));
    const rand = rng(13);
    const run = join(tmp, 'fuzz');
    cpSync(RESHARDED, run, { recursive: true });
    let refused = 0;
    for (let trial = 0; trial < 150; trial++) {
      const b = Buffer.from(original);
      for (let k = 0; k < 1 + Math.floor(rand() * 4); k++) b[Math.floor(rand() * b.length)] = Math.floor(rand() * 256);
      if (trial % 10 === 0)
        writeFileSync(join(run, 'step-200', '.metadata'), b.subarray(0, Math.floor(rand() * b.length)));
      else writeFileSync(join(run, 'step-200', '.metadata'), b);
      try {
        await readDcpMetadata(join(run, 'step-200'));
      } catch (e) {
        expect(e).toBeInstanceOf(PmaError);
        expect((e as PmaError).code, (e as Error).message).toMatch(/^E_INPUT$/);
        refused++;
      }
    }
    expect(refused).toBeGreaterThan(50);
  });
});
