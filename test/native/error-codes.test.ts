import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, relative } from 'node:path';

import { beforeAll, describe, expect, it } from 'vitest';

import { ERROR_CODES } from '../../src/errors.js';
import type { PlanOp } from '../../src/plan/types.js';
import { CLI, ROOT } from '../helpers/cli.js';
import { cpuChunk } from '../helpers/native-chunk.js';
import { writeCheckpoint } from '../helpers/safetensors.js';
import { scratch } from '../helpers/scratch.js';

// The error codes of the native engine: named once, in native/errors.h, each one a code the
// TypeScript side knows; and the ones that depend on errno (E_NOSPACE against E_IO) checked
// through the real addon, with failures injected at its system calls (PMA_FAULTS, see
// native/engine/faults.h).
const NATIVE = join(ROOT, 'native');
const HEADER = join(NATIVE, 'errors.h');
const ADDON = join(ROOT, 'build', 'Release', 'pma.node');
const { tmp, out } = scratch('pma-error-codes-');

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? filesUnder(p) : [p];
  });
}

describe('native/errors.h', () => {
  const header = readFileSync(HEADER, 'utf8');
  const defined = [...header.matchAll(/constexpr\s+const\s+char\s*\*\s*(kCode\w+)\s*=\s*"([^"]*)"/g)].map((m) => ({
    name: m[1] as string,
    code: m[2] as string,
  }));

  it('names every code the engine raises, each one a code of ERROR_CODES', () => {
    expect(defined.map((d) => d.name)).toEqual(
      expect.arrayContaining([
        'kCodeIo',
        'kCodeInput',
        'kCodeInternal',
        'kCodeNoMem',
        'kCodeNoSpace',
        'kCodeUnsupported',
        'kCodeDevice',
        'kCodeAborted',
      ]),
    );
    for (const d of defined) expect(Object.keys(ERROR_CODES), `${d.name} = "${d.code}"`).toContain(d.code);
    expect(new Set(defined.map((d) => d.code)).size, 'each code once').toBe(defined.length);
  });

  it('is the only native file that spells a code as a string literal', () => {
    const offenders: string[] = [];
    for (const file of filesUnder(NATIVE)) {
      if (file === HEADER) continue;
      readFileSync(file, 'utf8')
        .split('\n')
        .forEach((line, i) => {
          if (/"E_[A-Z_]+"/.test(line)) offenders.push(`${relative(ROOT, file)}:${i + 1}: ${line.trim()}`);
        });
    }
    expect(offenders, 'use the constants of native/errors.h').toEqual([]);
  });
});

// The addon as src/native.ts sees it, loaded directly: these tests are about what it raises.
interface NativeError extends Error {
  pmaCode?: string;
  file?: string;
  tensor?: string;
}
interface RawAddon {
  analyzeChunk(chunk: unknown): { gram: number[]; cross: number[]; newestSq: number; count: number }[];
  mergeBuffers(args: unknown): Uint8Array;
  dropCache(path: unknown, offset: unknown, length: unknown): void;
  cudaInfo(): { built: boolean };
  cpuFeatures(): { kernels: string[] };
}
const addon = createRequire(import.meta.url)(ADDON) as RawAddon;

function thrown(f: () => unknown): NativeError {
  try {
    f();
  } catch (e) {
    return e as NativeError;
  }
  return expect.fail('should have thrown');
}

/** Runs `call` (runChunk or analyzeChunk) on `chunk` in a fresh process with PMA_FAULTS set. */
function inChild(faults: string, call: 'runChunk' | 'analyzeChunk', chunk: unknown): NativeError & { ok?: boolean } {
  const script = `
    const addon = require(process.argv[1]);
    try {
      addon[process.argv[2]](JSON.parse(process.argv[3]));
      console.log(JSON.stringify({ ok: true }));
    } catch (e) {
      console.log(JSON.stringify({ message: e.message, pmaCode: e.pmaCode, file: e.file, tensor: e.tensor }));
    }`;
  const r = spawnSync(process.execPath, ['-e', script, ADDON, call, JSON.stringify(chunk)], {
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, PMA_FAULTS: faults },
  });
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as NativeError & { ok?: boolean };
}

const COUNT = 1024;
const inputs = [join(tmp, 'a.bin'), join(tmp, 'b.bin')];
const mergeOp = (tensor: string, n = 2) => ({
  kind: 'merge',
  tensor,
  outFile: 0,
  outOffset: 0,
  inDtype: 'F32',
  outDtype: 'F32',
  count: COUNT,
  inputs: Array.from({ length: n }, (_, k) => ({ file: k % inputs.length, offset: 0 })),
});

/** A one-op merge chunk writing into a fresh output file. */
function mergeChunk(tensor: string): { chunk: unknown; output: string } {
  const output = `${out()}-${tensor}.bin`;
  writeFileSync(output, Buffer.alloc(COUNT * 4));
  return {
    output,
    chunk: cpuChunk({ inputs, outputs: [output], ops: [mergeOp(tensor)] as PlanOp[] }),
  };
}

beforeAll(() => {
  for (const [i, f] of inputs.entries()) writeFileSync(f, new Float32Array(COUNT).fill(i + 1));
});

describe('a full disk while writing the output', () => {
  for (const [site, errno] of [
    ['write', 'ENOSPC'],
    ['write', 'EDQUOT'],
    ['sync', 'ENOSPC'],
  ] as const) {
    it(`${errno} at ${site}: E_NOSPACE naming the output file and the tensor`, () => {
      const { chunk, output } = mergeChunk('layers.0.weight');
      const e = inChild(`${site}:${errno}:${output}`, 'runChunk', chunk);
      expect(e.pmaCode).toBe('E_NOSPACE');
      expect(e.file).toBe(output);
      expect(e.tensor).toBe('layers.0.weight');
      expect(e.message).toContain(`no space left on the device writing ${output} (tensor layers.0.weight)`);
    });
  }

  it('any other write error stays E_IO', () => {
    const { chunk, output } = mergeChunk('layers.1.weight');
    const e = inChild(`write:EIO:${output}`, 'runChunk', chunk);
    expect(e.pmaCode).toBe('E_IO');
    expect(e.file).toBe(output);
    expect(e.message).toContain(`write failed on ${output} (tensor layers.1.weight)`);
  });

  it('the CLI reports E_NOSPACE naming the output file, keeps a partial, exits 1', () => {
    const run = join(tmp, 'run');
    for (const s of [100, 200])
      writeCheckpoint(join(run, `checkpoint-${s}`), [{ name: 'embed.weight', dtype: 'BF16', shape: [256, 64] }], s);
    const o = out();
    const r = spawnSync(process.execPath, [CLI, 'merge', run, '--out', o, '--quiet'], {
      encoding: 'utf8',
      timeout: 60_000,
      env: { ...process.env, PMA_FAULTS: 'write:ENOSPC:.partial/model.safetensors' },
    });
    expect(r.signal).toBeNull();
    expect(r.stderr).toMatch(
      /pma: error \[E_NOSPACE\]: no space left on the device writing \S*\.partial\/model\.safetensors \(tensor embed\.weight\)/,
    );
    expect(r.status, r.stderr).toBe(1);
  });
});

describe('analyzeChunk', () => {
  const analyzeChunk = (ops: unknown[]) => ({ inputs, ops, kernel: 'auto' });

  it('needs only inputs, ops, cancel and the kernel', () => {
    const [m, copy] = addon.analyzeChunk({
      ...analyzeChunk([
        mergeOp('w'),
        { kind: 'copy', tensor: 'ids', outFile: 0, outOffset: 0, bytes: 8, inputs: [{ file: 0, offset: 0 }] },
      ]),
      cancel: new Int32Array(new SharedArrayBuffer(4)),
    });
    // x_0 = 1 and x_1 = 2 everywhere: e_1 = 1, so every sum is a count of elements.
    expect(m).toEqual({ gram: [COUNT], cross: [2 * COUNT], newestSq: 4 * COUNT, count: COUNT });
    expect(copy?.count).toBe(0);
  });

  it('refuses a merge op with fewer than 2 inputs, naming the tensor (E_INTERNAL)', () => {
    const e = thrown(() => addon.analyzeChunk(analyzeChunk([mergeOp('w', 1)])));
    expect(e.pmaCode).toBe('E_INTERNAL');
    expect(e.tensor).toBe('w');
  });

  it('refuses merge ops with different numbers of inputs, naming the tensor (E_INTERNAL)', () => {
    const e = thrown(() => addon.analyzeChunk(analyzeChunk([mergeOp('a', 2), mergeOp('b', 3)])));
    expect(e.pmaCode).toBe('E_INTERNAL');
    expect(e.tensor).toBe('b');
  });

  it('refuses a copy op without exactly one input (E_INTERNAL)', () => {
    const copy = {
      kind: 'copy',
      tensor: 'ids',
      outFile: 0,
      outOffset: 0,
      bytes: 8,
      inputs: [
        { file: 0, offset: 0 },
        { file: 1, offset: 0 },
      ],
    };
    const e = thrown(() => addon.analyzeChunk(analyzeChunk([copy])));
    expect(e.pmaCode).toBe('E_INTERNAL');
    expect(e.tensor).toBe('ids');
  });

  it('a failed allocation is E_NOMEM naming the tensor, and no file', () => {
    const e = inChild('alloc:ENOMEM:layers.2.weight', 'analyzeChunk', analyzeChunk([mergeOp('layers.2.weight')]));
    expect(e.pmaCode).toBe('E_NOMEM');
    expect(e.tensor).toBe('layers.2.weight');
    expect(e.file).toBeUndefined();
    expect(e.message).toContain('out of memory in the native engine while analysing tensor layers.2.weight');
  });
});

describe('every addon method goes through the native guard', () => {
  it('argument shapes pma gets wrong are E_INTERNAL, not crashes', () => {
    expect(thrown(() => addon.analyzeChunk(undefined)).pmaCode).toBe('E_INTERNAL');
    expect(thrown(() => addon.analyzeChunk({ inputs: [1], ops: [] })).pmaCode).toBe('E_INTERNAL');
    expect(thrown(() => addon.analyzeChunk({ inputs, ops: [], cancel: [0] })).pmaCode).toBe('E_INTERNAL');
    expect(thrown(() => addon.mergeBuffers({ inDtype: 'F32' })).pmaCode).toBe('E_INTERNAL');
    expect(
      thrown(() =>
        addon.mergeBuffers({
          inputs: ['not a buffer'],
          inDtype: 'F32',
          outDtype: 'F32',
          weights32: [1],
          weights64: [1],
          accumulate: 'f32',
          kernel: 'scalar',
          device: -1,
        }),
      ).pmaCode,
    ).toBe('E_INTERNAL');
    expect(thrown(() => addon.dropCache(42, 0, 0)).pmaCode).toBe('E_INTERNAL');
  });

  it('engine failures keep their code and file', () => {
    const missing = join(tmp, 'missing.bin');
    const e = thrown(() => addon.dropCache(missing, 0, 4096));
    expect(e.pmaCode).toBe('E_IO');
    expect(e.file).toBe(missing);
  });

  it('a JS exception raised while reading the arguments passes through unchanged', () => {
    const boom = new Error('from a getter');
    const e = thrown(() =>
      addon.analyzeChunk({
        get inputs(): string[] {
          throw boom;
        },
        ops: [],
      }),
    );
    expect(e).toBe(boom);
    expect(e.pmaCode).toBeUndefined();
  });

  it('the methods that do not fail still answer', () => {
    expect(addon.cpuFeatures().kernels).toContain('scalar');
    expect(typeof addon.cudaInfo().built).toBe('boolean');
  });
});
