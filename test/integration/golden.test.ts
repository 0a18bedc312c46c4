import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { merge } from '../../src/index.js';
import { native } from '../../src/native.js';
import { GOLDEN, pma } from '../helpers/cli.js';
import { caseOptions, cases, cliArgs, expectGolden, type GoldenCase } from '../helpers/golden.js';

const tmp = mkdtempSync(join(tmpdir(), 'pma-golden-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

let n = 0;
const outPath = () => join(tmp, `out-${n++}`);

describe('golden cases through the library', () => {
  const kernels = native().cpuFeatures().kernels;
  for (const c of cases) {
    it(`${c.case}: 1 thread, default chunks, every kernel`, async () => {
      for (const kernel of kernels) {
        const out = outPath();
        const r = await merge({ ...caseOptions(c), out, threads: 1, kernel });
        expect(r.plan.weights.w32).toEqual(c.weights.map(Math.fround));
        expectGolden(c, out);
      }
    });
    it(`${c.case}: 2 threads, tiny chunks, pread and mmap`, async () => {
      for (const io of ['pread', 'mmap'] as const) {
        const out = outPath();
        const r = await merge({ ...caseOptions(c), out, threads: 2, chunkSize: 37, io });
        expect(r.plan.chunks.length).toBeGreaterThan(50);
        expectGolden(c, out);
      }
    });
  }
});

describe('golden cases through the CLI', () => {
  for (const c of cases) {
    it(`${c.case}: --threads 1 and --threads 2 --chunk-size 64`, () => {
      for (const extra of [
        ['--threads', '1'],
        ['--threads', '2', '--chunk-size', '64'],
      ]) {
        const out = outPath();
        const r = pma(['merge', ...cliArgs(c), '--out', out, '--quiet', ...extra]);
        // --quiet keeps only the warnings: the fixtures hold NaN and Inf on purpose (merged with warn).
        for (const line of r.stderr.split('\n').filter(Boolean))
          expect(line).toMatch(/^warning: \d+ NaN\/Inf in \S+ of \S+ \(merged anyway: --on-nonfinite warn\)$/);
        expect(r.status).toBe(0);
        expect(r.stdout).toMatch(/^merged \d+ checkpoint\(s\)/);
        expectGolden(c, out);
      }
    });
  }

  it('sma_last2 selected with --last 2 from the run directory', () => {
    const c = cases.find((x) => x.case === 'sma_last2-keep') as GoldenCase;
    const out = outPath();
    const r = pma(['merge', join(GOLDEN, 'inputs'), '--last', '2', '--on-nonfinite', 'warn', '--out', out, '--quiet']);
    expect(r.status).toBe(0);
    expectGolden(c, out);
  });
});
