import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { exitStatusFor, merge, plan, PmaError } from '../../src/index.js';
import { CLI } from '../helpers/cli.js';
import { rng, writeCheckpoint, type TensorSpec } from '../helpers/safetensors.js';
import { scratch } from '../helpers/scratch.js';

// Mutated safetensors files, seeded and time-boxed: pma must never crash, hang or allocate
// without bound, and must answer every broken file with a PmaError of the bad-input kind (exit 2).
const SEED = 20261127;
const BUDGET_MS = 12_000;
const { tmp } = scratch('pma-fuzz-');

const SPECS: TensorSpec[] = [
  { name: 'a.weight', dtype: 'BF16', shape: [8, 3] },
  { name: 'b.bias', dtype: 'F32', shape: [5] },
  { name: 'c.ids', dtype: 'I64', shape: [2] },
];

type Mutation = (file: Buffer, rand: () => number) => Buffer;
const pick = <T>(xs: T[], rand: () => number): T => xs[Math.floor(rand() * xs.length)] as T;
const headerLength = (f: Buffer) => Number(f.readBigUInt64LE(0));

function withHeader(f: Buffer, edit: (json: string) => string): Buffer {
  const json = f.subarray(8, 8 + headerLength(f)).toString('utf8');
  const body = Buffer.from(edit(json), 'utf8');
  const head = Buffer.alloc(8);
  head.writeBigUInt64LE(BigInt(body.length));
  return Buffer.concat([head, body, f.subarray(8 + headerLength(f))]);
}

const MUTATIONS: [string, Mutation][] = [
  [
    'header length',
    (f, r) => {
      const g = Buffer.from(f);
      const v = pick(
        [
          0n,
          1n,
          2n ** 64n - 1n,
          2n ** 63n,
          2n ** 32n,
          BigInt(headerLength(f) + 1),
          BigInt(headerLength(f) - 1),
          BigInt(f.length),
          100_000_001n,
        ],
        r,
      );
      g.writeBigUInt64LE(v, 0);
      return g;
    },
  ],
  [
    'flipped header byte',
    (f, r) => {
      const g = Buffer.from(f);
      const i = 8 + Math.floor(r() * headerLength(f));
      g[i] = (g[i] as number) ^ (1 << Math.floor(r() * 8));
      return g;
    },
  ],
  [
    'offsets',
    (f, r) =>
      withHeader(f, (j) =>
        j.replace(
          /"data_offsets":\[(\d+),(\d+)\]/,
          (_m, a: string, b: string) =>
            `"data_offsets":[${pick([a, '0', '1', '-1', '1e30', String(2 ** 64), String(Number(b) + 2)], r)},${pick([b, '0', '7', String(2 ** 53), '18446744073709551615'], r)}]`,
        ),
      ),
  ],
  [
    'dtype',
    (f, r) =>
      withHeader(f, (j) =>
        j.replace(
          /"dtype":"[A-Z0-9_]+"/,
          `"dtype":"${pick(['F32', 'BF16', 'F16', 'F64', 'I8', 'U8', 'BOOL', 'F8_E4M3', 'F4', 'F6_E2M3', 'Q4', 'f32', ''], r)}"`,
        ),
      ),
  ],
  [
    'shape',
    (f, r) =>
      withHeader(f, (j) =>
        j.replace(
          /"shape":\[[\d,]*\]/,
          `"shape":[${pick(['', '0', '24', '4294967296,4294967296', '-3', '2.5', '1,1,1,1,1,1,1,24', String(2 ** 62), '"8"'], r)}]`,
        ),
      ),
  ],
  [
    'JSON structure',
    (f, r) =>
      withHeader(f, (j) =>
        pick(
          [
            (s: string) => s.replace('{', '['),
            (s: string) => s.slice(0, Math.floor(s.length / 2)),
            (s: string) => s.replace('"a.weight"', '"b.bias"'),
            (s: string) => `${s}{}`,
            (s: string) => s.replace('"__metadata__":{"format":"pt"}', '"__metadata__":{"format":7}'),
            (s: string) => s.replace(/,"c\.ids":\{[^}]*\}/, ''),
            (s: string) => s.replace(/\s+$/, '') + '\u0000',
          ],
          r,
        )(j),
      ),
  ],
  ['truncated', (f, r) => f.subarray(0, Math.floor(r() * f.length))],
  ['trailing bytes', (f, r) => Buffer.concat([f, Buffer.alloc(1 + Math.floor(r() * 64), 0x20)])],
];

async function attempt(inputs: string[], out: string): Promise<unknown> {
  try {
    await plan({ inputs });
    await merge({ inputs, out, threads: 1, force: true, onNonfinite: 'warn' });
    return null;
  } catch (e) {
    return e;
  }
}

describe('fuzzed inputs', () => {
  it(
    `never crash or hang, and fail as bad input (seed ${SEED}, ${BUDGET_MS / 1000} s)`,
    async () => {
      const rand = rng(SEED);
      const good = join(tmp, 'good');
      writeCheckpoint(good, SPECS, 1);
      const base = readFileSync(join(writeDir(tmp, 'base', 2), 'model.safetensors'));
      const seen = new Map<string, number>();
      const start = performance.now();
      let n = 0;
      while (performance.now() - start < BUDGET_MS) {
        const [kind, mutate] = pick(MUTATIONS, rand);
        const dir = join(tmp, `case-${n}`);
        mkdirSync(dir, { recursive: true });
        writeFileSync(join(dir, 'model.safetensors'), mutate(base, rand));
        const t0 = performance.now();
        const e = await attempt([good, dir], join(tmp, 'out'));
        expect(performance.now() - t0, `${kind}: took too long`).toBeLessThan(10_000);
        if (e !== null) {
          if (!(e instanceof PmaError)) expect.fail(`${kind} (case ${n}): ${String(e)}`);
          expect(exitStatusFor(e), `${kind} (case ${n}): ${e.code} ${e.message}`).toBe(2);
          seen.set(e.code, (seen.get(e.code) ?? 0) + 1);
        }
        // Every 25th case through the CLI too: a real process must exit 2, not die of a signal.
        if (n % 25 === 0 && e !== null) {
          const r = spawnSync(process.execPath, [CLI, 'merge', good, dir, '--out', join(tmp, 'cli-out'), '--force'], {
            encoding: 'utf8',
            timeout: 30_000,
          });
          expect(r.signal, `${kind}: killed by ${r.signal}`).toBeNull();
          expect(r.status, r.stderr).toBe(2);
        }
        rmSync(dir, { recursive: true, force: true });
        n++;
      }
      console.log(`${n} mutated files; errors by code: ${JSON.stringify(Object.fromEntries(seen))}`);
      expect(n).toBeGreaterThan(20);
    },
    BUDGET_MS + 60_000,
  );
});

function writeDir(root: string, name: string, seed: number): string {
  const d = join(root, name);
  writeCheckpoint(d, SPECS, seed);
  return d;
}
