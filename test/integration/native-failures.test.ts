import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { beforeAll, describe, expect, it } from 'vitest';

import { merge } from '../../src/index.js';
import { CLI } from '../helpers/cli.js';
import { rejected } from '../helpers/errors.js';
import { writeCheckpoint, writeSparseSafetensors, type TensorSpec } from '../helpers/safetensors.js';
import { scratch } from '../helpers/scratch.js';

// Failures inside the native engine: each becomes a PmaError naming the file and the tensor, the
// process lives on to report it, and what was written stays resumable. Disks rarely fail on cue,
// so EIO, a refused mmap and a failed allocation are injected at the engine's own system calls
// (PMA_FAULTS, see native/engine/faults.h); a truncated input is the real thing.
const { tmp, out } = scratch('pma-native-failures-');

const SPECS: TensorSpec[] = [
  { name: 'embed.weight', dtype: 'BF16', shape: [512, 300] },
  { name: 'layers.0.weight', dtype: 'F32', shape: [300, 301] },
  { name: 'layers.1.weight', dtype: 'BF16', shape: [640, 257] },
  { name: 'position_ids', dtype: 'I64', shape: [1024] },
];
const run = join(tmp, 'run');
const reference = join(tmp, 'reference');
const args = (o: string, ...extra: string[]) => [
  CLI,
  'merge',
  run,
  '--out',
  o,
  '--chunk-size',
  '64KiB',
  '--threads',
  '2',
  ...extra,
];

function pmaWith(faults: string, argv: string[]) {
  const r = spawnSync(process.execPath, argv, {
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, PMA_FAULTS: faults },
  });
  return { status: r.status, signal: r.signal, stderr: r.stderr };
}

function expectSameAsReference(o: string): void {
  for (const f of readdirSync(reference).filter((x) => x !== 'pma.json')) {
    if (!readFileSync(join(reference, f)).equals(readFileSync(join(o, f))))
      expect.fail(`${f} differs from the reference`);
  }
}

/**
 * The failed merge kept its partial (none when no chunk was done: nothing to resume), and
 * --resume (with the fault gone) gives the reference bytes.
 */
function expectResumes(o: string, ...extra: string[]): void {
  expect(existsSync(o)).toBe(false);
  expect(existsSync(`${o}.partial`)).toBe(!extra.includes('--nothing-done'));
  extra = extra.filter((a) => a !== '--nothing-done');
  const r = spawnSync(process.execPath, [...args(o, ...extra), '--resume', '--quiet'], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  expect(r.status, r.stderr).toBe(0);
  expectSameAsReference(o);
}

beforeAll(async () => {
  for (const [i, s] of [100, 200, 300].entries())
    writeCheckpoint(join(run, `checkpoint-${s}`), SPECS, 40 + i, { shards: 2 });
  await merge({ inputs: run, out: reference, chunkSize: 64 * 1024 });
});

describe('an I/O error in the engine', () => {
  it('EIO reading an input: E_IO naming the file and tensor, exit 1, a partial that resumes', () => {
    const o = out();
    const r = pmaWith('read:EIO:checkpoint-200/model-00002:3', args(o));
    expect(r.signal).toBeNull();
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(
      /pma: error \[E_IO\]: read failed on \S*checkpoint-200\/model-00002-of-00002\.safetensors \(tensor [\w.]+\): Input\/output error; the work done so far is kept in/,
    );
    expectResumes(o);
  });

  it('EIO writing the output: E_IO naming the output file and tensor, a partial that resumes', () => {
    // Buffered writes, one per chunk here, so the four that succeed are whole chunks.
    const o = out();
    const r = pmaWith('write:EIO:.partial/model.safetensors:4', args(o, '--write', 'buffered'));
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(
      /pma: error \[E_IO\]: write failed on \S*\.partial\/model\.safetensors \(tensor [\w.]+\): Input\/output error; the work done so far is kept in/,
    );
    expectResumes(o, '--write', 'buffered');
  });

  it('EIO with direct writes (the default): E_IO naming the output file and tensor; what was done resumes', () => {
    // A chunk's direct writes finish on the writer threads, so whether a chunk was complete when
    // the fifth write failed is up to the timing: both ways must hold.
    const o = out();
    const r = pmaWith('write:EIO:.partial/model.safetensors:4', args(o));
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(
      /pma: error \[E_IO\]: write failed on \S*\.partial\/model\.safetensors \(tensor [\w.]+\): Input\/output error/,
    );
    expectResumes(o, ...(r.stderr.includes('the work done so far is kept in') ? [] : ['--nothing-done']));
  });

  it('a refused mmap: E_IO naming the file and tensor', () => {
    // Tensors of 1 MiB and more: the engine reads smaller ones even under --io mmap.
    const big = join(tmp, 'big-run');
    for (const [i, s] of [100, 200, 300].entries())
      writeCheckpoint(join(big, `checkpoint-${s}`), [{ name: 'w.weight', dtype: 'BF16', shape: [1024, 1024] }], 7 + i);
    const o = out();
    const r = pmaWith('map:ENOMEM:checkpoint-300', [CLI, 'merge', big, '--out', o, '--io', 'mmap']);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(
      /pma: error \[E_IO\]: cannot map \S*checkpoint-300\/model\.safetensors \(tensor w\.weight\): Cannot allocate memory/,
    );
    // The only op maps checkpoint-300: nothing was done, and nothing is left to resume.
    expect(r.stderr).not.toContain('--resume');
    expect(existsSync(o)).toBe(false);
    expect(existsSync(`${o}.partial`)).toBe(false);
  });

  it('a failed allocation: E_NOMEM naming the tensor and the output file, never an abort', () => {
    const o = out();
    const r = pmaWith('alloc:ENOMEM:layers.1.weight', args(o));
    expect(r.signal).toBeNull();
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(
      /pma: error \[E_NOMEM\]: out of memory in the native engine while merging tensor layers\.1\.weight into \S*\.partial\/model\.safetensors; the work done so far/,
    );
    expectResumes(o);
  });
});

describe('an input cut short after planning', () => {
  for (const io of ['pread', 'mmap'] as const) {
    it(`${io}: E_INPUT naming the file and the tensor, not a crash`, async () => {
      const o = out();
      const victim = join(run, 'checkpoint-200', 'model-00001-of-00002.safetensors');
      const copy = readFileSync(victim);
      try {
        // Between planning and reading: the plan trusts a header the file no longer matches.
        const err = await rejected(merge({ inputs: run, out: o, io, onPlan: () => truncateSync(victim, 200) }));
        expect(err.code).toBe('E_INPUT');
        expect(err.file).toBe(victim);
        expect(err.tensor).toMatch(/^[\w.]+$/);
        expect(err.message).toContain(
          `unexpected end of file in ${victim} (tensor ${err.tensor}): the file is shorter than its header says`,
        );
      } finally {
        writeFileSync(victim, copy);
      }
    });
  }
});

describe('an input truncated while mapped', () => {
  // One chunk that runs for seconds over sparse inputs; the truncation lands while the engine is
  // reading the mapping. Unguarded, the next load raises SIGBUS and kills the process.
  const slow = join(tmp, 'slow-run');
  beforeAll(() => {
    for (const s of [1, 2])
      writeSparseSafetensors(join(slow, `step-${s}`, 'model.safetensors'), [
        { name: 'w', dtype: 'BF16', shape: [2 ** 28] },
      ]);
  });

  it('is E_INPUT naming the tensor and its inputs; the process survives to say so', async () => {
    const o = out();
    const victim = join(slow, 'step-2', 'model.safetensors');
    const child = spawn(
      process.execPath,
      [
        CLI,
        'merge',
        slow,
        '--out',
        o,
        '--io',
        'mmap',
        '--chunk-size',
        '2GiB',
        '--threads',
        '1',
        '--kernel',
        'scalar',
        '--quiet',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const exited = new Promise<[number | null, string | null]>((r) =>
      child.once('exit', (code, signal) => r([code, signal])),
    );
    for (let t = 0; t < 1000 && !existsSync(`${o}.partial`); t++) await new Promise((r) => setTimeout(r, 10));
    await new Promise((r) => setTimeout(r, 300));
    truncateSync(victim, 4096);
    const [status, signal] = await exited;
    expect(signal).toBeNull();
    expect(status, stderr).toBe(2);
    expect(stderr).toMatch(
      /pma: error \[E_INPUT\]: an input of tensor w could not be read through its mapping \(truncated by another process while the merge ran, or a read error\); inputs: \S*step-1\/model\.safetensors, \S*step-2\/model\.safetensors/,
    );
    expect(existsSync(o)).toBe(false);
  }, 60_000);
});
