import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, expect, it } from 'vitest';

import { merge, type MergeOptions } from '../../src/index.js';
import { native, type Accumulate } from '../../src/native.js';
import { args, FLOATS, randomBuffer, WEIGHT_SETS } from '../helpers/bit-patterns.js';
import { pma } from '../helpers/cli.js';
import { caseOptions, cases, cliArgs, expectGolden } from '../helpers/golden.js';
import { gpuSkipReason, usableGpus } from '../helpers/gpu.js';
import { describeNeeds, itNeeds } from '../helpers/requires.js';
import { rng, writeCheckpoint, type TensorSpec } from '../helpers/safetensors.js';

// Every test here needs a usable GPU; without one the suite is reported skipped, with the reason
// in its name, so a CI log says plainly that the GPU path was not exercised.
const title =
  gpuSkipReason === null
    ? `CUDA backend on ${usableGpus.map((d) => `cuda:${d.index} ${d.name}`).join(', ')}`
    : 'CUDA backend';

const tmp = mkdtempSync(join(tmpdir(), 'pma-gpu-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
let n = 0;
const outPath = () => join(tmp, `out-${n++}`);

/** Every file of two output directories, byte for byte, except pma.json (it names the device). */
function expectSameOutput(a: string, b: string): void {
  const files = readdirSync(a)
    .filter((f) => f !== 'pma.json')
    .sort();
  expect(
    readdirSync(b)
      .filter((f) => f !== 'pma.json')
      .sort(),
  ).toEqual(files);
  for (const f of files) {
    if (Buffer.compare(readFileSync(join(a, f)), readFileSync(join(b, f))) !== 0)
      expect.fail(`${f} differs between ${a} and ${b}`);
  }
}

describeNeeds(gpuSkipReason, title, () => {
  for (const c of cases) {
    it(`golden ${c.case}: cuda:0, 1 and 2 threads, tiny chunks`, async () => {
      for (const extra of [{ threads: 1 }, { threads: 2, chunkSize: 37 }] as Partial<MergeOptions>[]) {
        const out = outPath();
        const r = await merge({ ...caseOptions(c), out, device: 'cuda', ...extra });
        expect(r.device).toBe('cuda:0');
        expectGolden(c, out);
      }
    });
  }

  it('golden cases through the CLI with --device cuda', () => {
    for (const c of cases) {
      const out = outPath();
      const r = pma(['merge', ...cliArgs(c), '--device', 'cuda', '--out', out, '--quiet']);
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      expect(r.stdout).toContain('cuda:0');
      expectGolden(c, out);
    }
  });

  for (const accumulate of ['f32', 'f64'] as Accumulate[]) {
    it(`the kernel gives the scalar kernel's bytes on random bit patterns (accumulate ${accumulate})`, () => {
      const rand = rng(99);
      for (const inDtype of FLOATS) {
        for (const outDtype of FLOATS) {
          for (const w of WEIGHT_SETS) {
            // Lengths around the 8- and 4-element vector words, and one long enough for many blocks.
            for (const len of [1, 7, 8, 9, 15, 16, 17, 1031, 100_003]) {
              const inputs = w.map(() => randomBuffer(inDtype, len, rand));
              const ref = native().mergeBuffers({ ...args(inputs, inDtype, outDtype, w, 'scalar'), accumulate });
              const got = native().mergeBuffers({
                ...args(inputs, inDtype, outDtype, w, 'scalar', usableGpus[0]?.index ?? 0),
                accumulate,
              });
              if (Buffer.compare(Buffer.from(ref), Buffer.from(got)) !== 0) {
                expect.fail(
                  `GPU differs from scalar: ${inDtype}->${outDtype}, ${w.length} inputs, ${len} elements, accumulate ${accumulate}`,
                );
              }
            }
          }
        }
      }
    });
  }

  // Tensors whose sizes divide neither the chunks nor the staging slots, in every float dtype, an
  // integer tensor that is copied, and a 3-shard layout: cut into many pieces by a small budget.
  const specs: TensorSpec[] = [
    { name: 'embed.weight', dtype: 'BF16', shape: [1001, 777] },
    { name: 'layers.0.attn.weight', dtype: 'F16', shape: [333, 1031] },
    { name: 'layers.0.norm.weight', dtype: 'F32', shape: [100_003] },
    { name: 'layers.1.mlp.weight', dtype: 'BF16', shape: [3, 5, 7] },
    { name: 'layers.1.bias', dtype: 'F64', shape: [4099] },
    { name: 'position_ids', dtype: 'I64', shape: [2049] },
  ];
  const run = join(tmp, 'run');
  for (let i = 0; i < 4; i++) writeCheckpoint(join(run, `checkpoint-${(i + 1) * 100}`), specs, 1000 + i, { shards: 3 });

  it('a generated run, cut into odd pieces, gives the CPU bytes on cuda:0', async () => {
    const cpu = outPath();
    await merge({ inputs: run, out: cpu, method: 'ema', alpha: 0.3 });
    for (const extra of [
      { chunkSize: '3MB', threads: 3, gpuMemory: '12MiB' },
      { chunkSize: 1_000_001, threads: 1, gpuMemory: '4MiB' },
      { dtype: 'bf16' as const },
    ]) {
      const gpu = outPath();
      const want = extra.dtype ? outPath() : cpu;
      if (extra.dtype) await merge({ inputs: run, out: want, method: 'ema', alpha: 0.3, dtype: 'bf16' });
      await merge({ inputs: run, out: gpu, method: 'ema', alpha: 0.3, device: 'cuda', ...extra });
      expectSameOutput(want, gpu);
    }
  });

  it('f64 accumulation on the GPU gives the CPU bytes', async () => {
    const cpu = outPath();
    const gpu = outPath();
    await merge({ inputs: run, out: cpu, method: 'wma', accumulate: 'f64', dtype: 'f16' });
    await merge({
      inputs: run,
      out: gpu,
      method: 'wma',
      accumulate: 'f64',
      dtype: 'f16',
      device: 'cuda',
      chunkSize: '2MB',
    });
    expectSameOutput(cpu, gpu);
  });

  itNeeds(usableGpus.length < 2 ? `needs two GPUs, this machine has ${usableGpus.length}` : null)(
    'cuda:all splits the chunks across GPUs, same bytes',
    async () => {
      const cpu = outPath();
      const gpu = outPath();
      await merge({ inputs: run, out: cpu });
      const r = await merge({ inputs: run, out: gpu, device: 'cuda:all', chunkSize: '1MB', threads: 4 });
      expect(r.device).toBe(`cuda:${usableGpus.map((d) => d.index).join(',')}`);
      expectSameOutput(cpu, gpu);
    },
  );

  it('refuses a GPU index the machine does not have, naming the count', async () => {
    const err = await merge({ inputs: run, out: outPath(), device: `cuda:${usableGpus.length + 7}` }).catch(
      (e: unknown) => e as Error,
    );
    expect(String(err)).toMatch(/there is no CUDA device \d+ \(this machine has \d+/);
  });

  it('pma devices lists the GPUs with their memory', () => {
    const r = pma(['devices']);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^cuda:0 {4}.+compute \d+\.\d+, \d+ SMs, .+ free of /m);
  });
});
