import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { beforeAll, describe, expect, it } from 'vitest';

import { analyze, type AnalyzeResult } from '../../src/index.js';
import { native } from '../../src/native.js';
import { pma, ROOT } from '../helpers/cli.js';
import { decode } from '../helpers/reference.js';
import { writeCheckpoint, writeSafetensors, type RawTensor, type TensorSpec } from '../helpers/safetensors.js';
import { CHROMIUM, itNeeds } from '../helpers/requires.js';
import { scratch } from '../helpers/scratch.js';

// pma analyze on generated runs: the numbers against a direct computation over the decoded
// tensors, a run built to have known deviations, and the report in headless Chromium.
const { tmp } = scratch('pma-analyze-');

const SPECS: TensorSpec[] = [
  { name: 'model.embed_tokens.weight', dtype: 'BF16', shape: [96, 40] },
  { name: 'model.layers.0.mlp.weight', dtype: 'BF16', shape: [5000] },
  { name: 'model.layers.0.norm.weight', dtype: 'F32', shape: [64] },
  { name: 'model.layers.1.mlp.weight', dtype: 'F16', shape: [70, 33] },
  { name: 'model.position_ids', dtype: 'I64', shape: [8] },
];
const run = join(tmp, 'run');
const STEPS = [10, 20, 30, 40, 50];
const data = new Map<number, Map<string, RawTensor>>();

beforeAll(() => {
  for (const [i, s] of STEPS.entries()) data.set(s, writeCheckpoint(join(run, `checkpoint-${s}`), SPECS, 900 + i));
});

/** The statistics straight from the definitions, in float64 over the decoded values. */
function reference(names: string[]) {
  const xs = STEPS.map((s) =>
    names.flatMap((name) => {
      const t = data.get(s)?.get(name) as RawTensor;
      const count = t.shape.reduce((a, b) => a * b, 1);
      return Array.from({ length: count }, (_, j) => decode(t.dtype, t.data, j));
    }),
  );
  const n = xs.length;
  const len = (xs[0] as number[]).length;
  const mean = Array.from({ length: len }, (_, j) => xs.reduce((s, x) => s + (x[j] as number), 0) / n);
  const dev = xs.map((x) => x.map((v, j) => v - (mean[j] as number)));
  const dot = (a: number[], b: number[]) => a.reduce((s, v, j) => s + v * (b[j] as number), 0);
  const norm = (a: number[]) => Math.sqrt(dot(a, a));
  const deviationNorm = dev.map(norm);
  const cosine = dev.map((a, i) =>
    dev.map((b, j) => dot(a, b) / ((deviationNorm[i] as number) * (deviationNorm[j] as number))),
  );
  const consecutive = xs.slice(1).map((x, i) => norm(x.map((v, j) => v - ((xs[i] as number[])[j] as number))));
  const newestNorm = norm(xs[n - 1] as number[]);
  return {
    deviationNorm,
    cosine,
    consecutive,
    newestNorm,
    removedShare: (deviationNorm[n - 1] as number) / newestNorm,
  };
}

function expectClose(got: unknown, want: unknown, path = ''): void {
  if (Array.isArray(want)) {
    expect((got as unknown[]).length, path).toBe(want.length);
    want.forEach((w, i) => expectClose((got as unknown[])[i], w, `${path}[${i}]`));
  } else if (typeof want === 'number') {
    expect(Math.abs((got as number) - want), `${path}: ${got} vs ${want}`).toBeLessThanOrEqual(
      1e-9 * Math.max(1, Math.abs(want)),
    );
  }
}

describe('pma analyze', () => {
  let r: AnalyzeResult;
  it("gives each tensor's, each layer's and the whole model's statistics as the definitions do", async () => {
    // Small chunks: tensors are split across chunks and threads, and the sums must still add up.
    r = await analyze({ inputs: run, chunkSize: 8 * 1024, threads: 2 });
    expect(r.checkpoints.map((c) => c.step)).toEqual(STEPS);
    expect(r.tensors.map((t) => [t.name, t.layer])).toEqual([
      ['model.layers.0.norm.weight', 'layer 0'],
      ['model.embed_tokens.weight', 'other'],
      ['model.layers.0.mlp.weight', 'layer 0'],
      ['model.layers.1.mlp.weight', 'layer 1'],
    ]);
    for (const t of r.tensors) {
      const want = reference([t.name]);
      for (const k of ['deviationNorm', 'cosine', 'consecutive', 'newestNorm', 'removedShare'] as const)
        expectClose(t[k], want[k], `${t.name}.${k}`);
    }
    expect(r.layers.map((l) => [l.layer, l.tensors])).toEqual([
      ['layer 0', 2],
      ['layer 1', 1],
      ['other', 1],
    ]);
    const layer0 = reference(['model.layers.0.mlp.weight', 'model.layers.0.norm.weight']);
    for (const k of ['deviationNorm', 'cosine', 'consecutive', 'removedShare'] as const)
      expectClose(r.layers[0]?.[k], layer0[k], `layer 0.${k}`);
    const all = reference(SPECS.filter((s) => s.dtype !== 'I64').map((s) => s.name));
    for (const k of ['deviationNorm', 'cosine', 'consecutive', 'newestNorm', 'removedShare'] as const)
      expectClose(r.overall[k], all[k], `overall.${k}`);
  });

  it('adds up tensors of many blocks, read several blocks at a time, as the definitions do', async () => {
    // Longer than the engine's reads (4 x 16,384 elements) and not a multiple of them.
    const specs: TensorSpec[] = [
      { name: 'a.weight', dtype: 'BF16', shape: [3 * 65_536 + 4099] },
      { name: 'b.weight', dtype: 'F32', shape: [70_001] },
      { name: 'c.weight', dtype: 'F16', shape: [65_536] },
    ];
    const dir = join(tmp, 'big');
    const raw = [1, 2, 3].map((s) => writeCheckpoint(join(dir, `checkpoint-${s}`), specs, 70 + s));
    const got = await analyze({ inputs: dir, threads: 2 });
    for (const { name } of specs) {
      const xs = raw.map((m) => {
        const t = m.get(name) as RawTensor;
        return Array.from({ length: t.shape[0] as number }, (_, j) => decode(t.dtype, t.data, j));
      });
      const mean = (xs[0] as number[]).map((_, j) => xs.reduce((acc, x) => acc + (x[j] as number), 0) / xs.length);
      const norm = (x: number[]) => Math.sqrt(x.reduce((acc, v) => acc + v * v, 0));
      const t = got.tensors.find((x) => x.name === name);
      expectClose(
        t?.deviationNorm,
        xs.map((x) => norm(x.map((v, j) => v - (mean[j] as number)))),
        `${name}.deviationNorm`,
      );
      expectClose(t?.newestNorm, norm(xs[2] as number[]), `${name}.newestNorm`);
    }
  });

  it('gives the same bits for every kernel and thread count, from 2 to 9 checkpoints', async () => {
    // Up to 6 checkpoints the AVX-512 kernel keeps every sum in registers, beyond that it sums
    // float64 sub-blocks; both must add the products in the scalar kernel's order. Lengths off
    // the 8 lanes and the 16,384-element blocks, every dtype pma averages. Small chunks split the
    // tensors, whose parts finish in any order on 2 threads and must be added in the plan's.
    const specs: TensorSpec[] = [
      { name: 'a.weight', dtype: 'BF16', shape: [2 * 16_384 + 13] },
      { name: 'b.weight', dtype: 'F16', shape: [1001] },
      { name: 'c.weight', dtype: 'F32', shape: [16_391] },
      { name: 'd.weight', dtype: 'F64', shape: [5] },
    ];
    const dir = join(tmp, 'kernels');
    for (let s = 1; s <= 9; s++) writeCheckpoint(join(dir, `checkpoint-${s}`), specs, 300 + s);
    const kernels = native().cpuFeatures().kernels;
    for (const last of [2, 5, 6, 7, 9]) {
      const one = { inputs: dir, last, chunkSize: 16 * 1024 };
      const want = JSON.stringify(await analyze({ ...one, kernel: 'scalar', threads: 1 }));
      for (const kernel of kernels) {
        const got = JSON.stringify(await analyze({ ...one, kernel, threads: 2 }));
        expect(got === want, `${kernel}, last ${last}: differs from the scalar kernel on 1 thread`).toBe(true);
      }
    }
  });

  it('sees deviations that cancel: two pairs of opposite deviations around a common centre', async () => {
    // theta = c + d_i with d = +v, -v, +w, -w and v, w orthogonal: cosines -1 and 0, mean c.
    const dir = join(tmp, 'designed');
    const c = Float32Array.from({ length: 64 }, () => 1);
    const v = Float32Array.from({ length: 64 }, (_, j) => (j % 2 === 0 ? 0.5 : 0));
    const w = Float32Array.from({ length: 64 }, (_, j) => (j % 2 === 1 ? 0.25 : 0));
    const devs = [v.map((x) => x), v.map((x) => -x), w.map((x) => x), w.map((x) => -x)];
    devs.forEach((d, i) => {
      const t = c.map((x, j) => x + (d[j] as number));
      writeSafetensors(join(dir, `step-${i + 1}`, 'model.safetensors'), [
        { name: 'w', dtype: 'F32', shape: [64], data: new Uint8Array(t.buffer) },
      ]);
    });
    const s = (await analyze({ inputs: dir })).overall;
    const nv = Math.sqrt(32 * 0.25);
    const nw = Math.sqrt(32 * 0.0625);
    expectClose(s.deviationNorm, [nv, nv, nw, nw]);
    expectClose(s.cosine, [
      [1, -1, 0, 0],
      [-1, 1, 0, 0],
      [0, 0, 1, -1],
      [0, 0, -1, 1],
    ]);
    expectClose(s.consecutive, [2 * nv, Math.sqrt(nv * nv + nw * nw), 2 * nw]);
    expectClose(s.removedShare, nw / Math.sqrt(32 * 1 + 32 * 0.75 * 0.75));
    expectClose(s.meanPairCosine, -2 / 6);
  });

  it('the CLI prints a summary, --json every number, and --report a self-contained page', () => {
    const report = join(tmp, 'report.html');
    const r1 = pma(['analyze', run, '--last', '4', '--report', report]);
    expect(r1.status, r1.stderr).toBe(0);
    expect(r1.stdout).toMatch(
      /^4 checkpoints, oldest first: 20, 30, 40, 50\nthe average changes the newest checkpoint by 0\.\d+ of its norm/,
    );
    expect(r1.stdout).toContain(`report: ${report}`);
    const html = readFileSync(report, 'utf8');
    expect(html).toContain("default-src 'none'");
    expect(html.match(/<svg /g)?.length).toBe(5);
    expect(html).not.toMatch(/<script|<link|src=|url\(/i);
    const j = pma(['analyze', run, '--json']);
    expect((JSON.parse(j.stdout) as AnalyzeResult).layers.map((l) => l.layer)).toEqual(['layer 0', 'layer 1', 'other']);
    const one = pma(['analyze', run, '--last', '1']);
    expect(one.status).toBe(2);
    expect(one.stderr).toContain('pma analyze needs at least 2 checkpoints, the selection has 1');
  });

  const chromium = CHROMIUM;
  itNeeds(chromium === null ? 'needs chromium (apt install chromium)' : null)(
    'the report opens in headless Chromium, its charts render and it requests nothing',
    () => {
      const report = join(tmp, 'report.html');
      const c = spawnSync(
        process.execPath,
        ['--experimental-websocket', join(ROOT, 'test', 'helpers', 'page-check.mjs'), chromium as string, report],
        { encoding: 'utf8', timeout: 90_000 },
      );
      expect(c.status, c.stderr).toBe(0);
      const page = JSON.parse(c.stdout) as {
        url: string;
        title: string;
        requests: string[];
        charts: { width: number; height: number; marks: number }[];
        screenshotBytes: number;
      };
      expect(page.title).toBe('pma analyze: 4 checkpoints');
      expect(page.requests).toEqual([page.url]);
      expect(page.charts).toHaveLength(5);
      for (const chart of page.charts) {
        expect(chart.width).toBeGreaterThan(100);
        expect(chart.height).toBeGreaterThan(100);
        expect(chart.marks).toBeGreaterThan(0);
      }
      expect(page.screenshotBytes).toBeGreaterThan(10_000);
    },
    120_000,
  );
});
