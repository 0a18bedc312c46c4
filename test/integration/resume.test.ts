import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  statSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';

import { beforeAll, describe, expect, it } from 'vitest';

import { merge } from '../../src/index.js';
import { CLI, pma } from '../helpers/cli.js';
import { rejected } from '../helpers/errors.js';
import {
  rng,
  writeCheckpoint,
  writeSafetensors,
  writeSparseSafetensors,
  type TensorSpec,
} from '../helpers/safetensors.js';
import { blake3Hex } from '../helpers/blake3.js';
import { once } from '../helpers/once.js';
import { hasCommand, itNeeds } from '../helpers/requires.js';
import { scratch } from '../helpers/scratch.js';

// Interrupted merges: what stays on disk, and --resume finishing it byte for byte.
const { tmp, out } = scratch('pma-resume-');

const SPECS: TensorSpec[] = [
  { name: 'embed.weight', dtype: 'BF16', shape: [512, 300] },
  { name: 'layers.0.weight', dtype: 'F32', shape: [300, 301] },
  { name: 'layers.0.bias', dtype: 'F16', shape: [3001] },
  { name: 'layers.1.weight', dtype: 'BF16', shape: [640, 257] },
  { name: 'position_ids', dtype: 'I64', shape: [1024] },
];
const run = join(tmp, 'run');
const STEPS = [100, 200, 300, 400];
let reference = '';

/** Every file of an output except pma.json (it records the time and the command line). */
function contents(dir: string): Map<string, Buffer> {
  return new Map(
    readdirSync(dir)
      .filter((f) => f !== 'pma.json')
      .sort()
      .map((f) => [f, readFileSync(join(dir, f))]),
  );
}

function expectSame(a: string, b: string): void {
  const x = contents(a);
  const y = contents(b);
  expect([...y.keys()]).toEqual([...x.keys()]);
  for (const [f, buf] of x) if (!buf.equals(y.get(f) as Buffer)) expect.fail(`${f} differs between ${a} and ${b}`);
}

const partialOf = (o: string) => `${o}.partial`;

/** The child's exit status, once it has exited (at once if it already has: 'exit' fires only once). */
function exited(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((r) => child.once('exit', (code) => r(code)));
}

const journalOf = (o: string) => join(partialOf(o), '.pma-resume', 'journal');
const journalLines = (o: string) =>
  readFileSync(journalOf(o), 'utf8')
    .split('\n')
    .filter((l) => l !== '').length;
/** The chunk ids on the journal's complete lines (a line cut short by a kill does not count). */
const journalIds = (o: string) =>
  new Set(
    readFileSync(journalOf(o), 'utf8')
      .split('\n')
      .slice(0, -1)
      .map((l) => l.split(' ')[0]),
  );

/** Waits (up to 5 s) until a merge into o has made a chunk durable, or finished. */
async function journalStarted(o: string): Promise<void> {
  const journal = journalOf(o);
  for (let t = 0; t < 2500; t++) {
    if (existsSync(o) || (existsSync(journal) && readFileSync(journal, 'utf8').length > 0)) return;
    await new Promise((r) => setTimeout(r, 2));
  }
}

beforeAll(async () => {
  for (const [i, s] of STEPS.entries()) writeCheckpoint(join(run, `checkpoint-${s}`), SPECS, 10 + i, { shards: 2 });
  reference = out();
  await merge({ inputs: run, out: reference, chunkSize: 64 * 1024 });
});

/** Aborts a merge after `after` chunks; returns the output path, the partial left behind. */
async function interrupted(after: number, extra: Record<string, unknown> = {}): Promise<string> {
  const o = out();
  const ac = new AbortController();
  let chunks = 0;
  const err = await rejected(
    merge({
      inputs: run,
      out: o,
      chunkSize: 64 * 1024,
      threads: 1,
      signal: ac.signal,
      ...extra,
      onProgress: () => {
        if (++chunks === after) ac.abort();
      },
    }),
  );
  expect(err.code).toBe('E_ABORTED');
  expect(err.message).toContain(
    `the work done so far is kept in ${partialOf(o)}: run the same command with --resume to finish it`,
  );
  expect(existsSync(o)).toBe(false);
  return o;
}

describe('an interrupted merge', () => {
  it('leaves no output, a journal of what is on disk, and no lock; --resume runs only the rest', async () => {
    const o = await interrupted(5);
    expect(journalLines(o)).toBeGreaterThanOrEqual(5);
    expect(existsSync(join(partialOf(o), '.pma-resume', 'lock'))).toBe(false);
    const full = await merge({ inputs: run, out: out(), chunkSize: 64 * 1024 });
    const r = await merge({ inputs: run, out: o, chunkSize: 64 * 1024, resume: true });
    expect(r.resumedChunks).toBeGreaterThanOrEqual(5);
    expect(r.bytesRead).toBeLessThan(full.bytesRead);
    expectSame(reference, o);
    expect(existsSync(partialOf(o))).toBe(false);
    expect(readdirSync(o)).not.toContain('.pma-resume');
  });

  it('records the BLAKE3 of every file in pma.json (the default), as the model computes it', () => {
    const rec = JSON.parse(readFileSync(join(reference, 'pma.json'), 'utf8')) as Record<string, unknown>;
    const files = readdirSync(reference)
      .filter((f) => f !== 'pma.json')
      .sort();
    const sums = rec.blake3 as Record<string, string>;
    expect(Object.keys(sums).sort()).toEqual(files);
    expect(rec.sha256).toBeUndefined();
    for (const name of files) expect(sums[name], name).toBe(blake3Hex(readFileSync(join(reference, name))));
  });

  itNeeds(hasCommand('b3sum') ? null : 'needs b3sum (Debian: b3sum)')(
    'b3sum agrees with the BLAKE3 sums in pma.json',
    () => {
      const rec = JSON.parse(readFileSync(join(reference, 'pma.json'), 'utf8')) as { blake3: Record<string, string> };
      const files = Object.keys(rec.blake3).sort();
      const r = spawnSync('b3sum', files, { cwd: reference, encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(0);
      for (const line of r.stdout.trim().split('\n')) {
        const [sum, name] = line.split(/\s+/);
        expect(rec.blake3[name as string], name).toBe(sum);
      }
    },
  );

  it('records the SHA-256 of every file with --checksum sha256, as sha256sum prints it', async () => {
    const o = out();
    await merge({ inputs: run, out: o, chunkSize: 64 * 1024, checksum: 'sha256' });
    expectSame(reference, o);
    const rec = JSON.parse(readFileSync(join(o, 'pma.json'), 'utf8')) as Record<string, unknown>;
    const sums = rec.sha256 as Record<string, string>;
    expect(rec.blake3).toBeUndefined();
    const files = readdirSync(o)
      .filter((f) => f !== 'pma.json')
      .sort();
    expect(Object.keys(sums).sort()).toEqual(files);
    const sha = spawnSync('sha256sum', files, { cwd: o, encoding: 'utf8' });
    for (const line of sha.stdout.trim().split('\n')) {
      const [sum, name] = line.split(/\s+/);
      expect(sums[name as string], name).toBe(sum);
    }
  });

  it('is refused without --resume (naming the partial) and started over with --force', async () => {
    const o = await interrupted(3);
    const err = await rejected(merge({ inputs: run, out: o, chunkSize: 64 * 1024 }));
    expect(err.code).toBe('E_OUTPUT');
    expect(err.message).toMatch(
      new RegExp(
        `^a partial merge is in ${partialOf(o).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\(\\d+ of its chunks done\\); pass --resume`,
      ),
    );
    const r = await merge({ inputs: run, out: o, chunkSize: 64 * 1024, force: true });
    expect(r.resumedChunks).toBe(0);
    expectSame(reference, o);
  });

  it('refuses to resume a partial of another version of pma, which cut other chunks', async () => {
    const o = await interrupted(3);
    const statePath = join(partialOf(o), '.pma-resume', 'state.json');
    const state = JSON.parse(readFileSync(statePath, 'utf8')) as { version: number };
    writeFileSync(statePath, JSON.stringify({ ...state, version: 1 }));
    const err = await rejected(merge({ inputs: run, out: o, chunkSize: 64 * 1024, resume: true }));
    expect(err.code).toBe('E_OUTPUT');
    expect(err.message).toBe(
      `the partial merge in ${partialOf(o)} was started by another version of pma, which cuts the work into other chunks; pass --force to start over`,
    );
    const r = await merge({ inputs: run, out: o, chunkSize: 64 * 1024, force: true });
    expect(r.resumedChunks).toBe(0);
    expectSame(reference, o);
  });

  it('refuses to resume with other arguments, or after an input changed', async () => {
    const o = await interrupted(3);
    const other = await rejected(merge({ inputs: run, out: o, chunkSize: 64 * 1024, method: 'wma', resume: true }));
    expect(other.code).toBe('E_OUTPUT');
    expect(other.message).toContain('was started with different arguments: --method (sma then, wma now)');
    // --chunk-size never changes the bytes: the resume keeps the partial's.
    const cli = pma(['merge', run, '--out', o, '--chunk-size', '32KiB', '--resume', '--dtype', 'f32']);
    expect(cli.status).toBe(2);
    expect(cli.stderr).toContain('different arguments: --dtype (keep then, f32 now); resume it with the original');
    // The checksum is the merge's too: a merge in parts records one kind for all of its files.
    const sum = pma(['merge', run, '--out', o, '--chunk-size', '32KiB', '--resume', '--checksum', 'sha256']);
    expect(sum.status).toBe(2);
    expect(sum.stderr).toContain('different arguments: --checksum (blake3 then, sha256 now)');

    const victim = join(run, 'checkpoint-200', 'model-00001-of-00002.safetensors');
    const st = statSync(victim);
    utimesSync(victim, st.atime, new Date(st.mtimeMs + 5000));
    try {
      const changed = await rejected(merge({ inputs: run, out: o, chunkSize: 64 * 1024, resume: true }));
      expect(changed.code).toBe('E_INPUT');
      expect(changed.message).toMatch(
        new RegExp(`^cannot resume .*: input ${victim} was modified \\(at .*\\) since the merge began`),
      );
      expect(changed.file).toBe(victim);
    } finally {
      utimesSync(victim, st.atime, st.mtime);
    }
    // Restoring the time to the nanosecond is not possible from here: start over instead.
    await merge({ inputs: run, out: o, chunkSize: 64 * 1024, force: true });
    expectSame(reference, o);
  });

  it('--resume without a partial is an ordinary merge', async () => {
    const o = out();
    const r = await merge({ inputs: run, out: o, resume: true });
    expect(r.resumedChunks).toBe(0);
    expectSame(reference, o);
  });
});

describe('the lock', () => {
  it('refuses a second merge into an output another live merge holds, naming its pid and host', async () => {
    const o = await interrupted(2);
    const lock = join(partialOf(o), '.pma-resume', 'lock');
    // This very process is alive: as good a holder as any other.
    writeFileSync(
      lock,
      JSON.stringify({ pid: process.pid, host: hostname(), token: 'other', since: '2026-01-01T00:00:00.000Z' }),
    );
    const err = await rejected(merge({ inputs: run, out: o, chunkSize: 64 * 1024, resume: true }));
    expect(err.code).toBe('E_OUTPUT');
    expect(err.message).toBe(
      `${partialOf(o)} is being written by another pma merge (pid ${process.pid}, since 2026-01-01T00:00:00.000Z); wait for it to finish, or stop it`,
    );
    const remote = { pid: 1, host: 'gpu-node-17', token: 'x', since: '2026-01-01T00:00:00.000Z' };
    writeFileSync(lock, JSON.stringify(remote));
    const cli = pma(['merge', run, '--out', o, '--chunk-size', '64KiB', '--resume']);
    expect(cli.status).toBe(2);
    expect(cli.stderr).toContain(
      `(pid 1 on host gpu-node-17, since 2026-01-01T00:00:00.000Z); wait for it to finish, or stop it (if it is gone, delete ${lock})`,
    );
    expect(existsSync(o)).toBe(false);
  });

  it('takes over the lock of a merge whose process is gone', async () => {
    const o = await interrupted(2);
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    writeFileSync(
      join(partialOf(o), '.pma-resume', 'lock'),
      JSON.stringify({ pid: Number(dead.stdout), host: hostname(), token: 'gone', since: '2026-01-01T00:00:00.000Z' }),
    );
    const r = await merge({ inputs: run, out: o, chunkSize: 64 * 1024, resume: true });
    expect(r.resumedChunks).toBeGreaterThan(0);
    expectSame(reference, o);
  });
});

describe('inputs and space', () => {
  it('fails, and writes nothing, when an input changes during the merge', async () => {
    const o = out();
    const victim = join(run, 'checkpoint-300', 'model-00002-of-00002.safetensors');
    const st = statSync(victim);
    try {
      const err = await rejected(
        merge({
          inputs: run,
          out: o,
          chunkSize: 64 * 1024,
          threads: 1,
          onProgress: once(() => utimesSync(victim, st.atime, new Date(st.mtimeMs + 7000))),
        }),
      );
      expect(err.code).toBe('E_INPUT');
      expect(err.message).toMatch(
        new RegExp(`^input ${victim} was modified \\(at .*\\) during the merge; nothing was written to `),
      );
    } finally {
      utimesSync(victim, st.atime, st.mtime);
    }
    expect(existsSync(o)).toBe(false);
    expect(existsSync(partialOf(o))).toBe(false);
  });

  it('never writes to its inputs, and merges read-only ones', async () => {
    const ro = join(tmp, 'ro-run');
    for (const [i, s] of [1, 2].entries()) writeCheckpoint(join(ro, `step-${s}`), SPECS.slice(0, 2), 40 + i);
    const files = readdirSync(ro, { recursive: true })
      .map(String)
      .filter((f) => f.endsWith('.safetensors'))
      .map((f) => join(ro, f));
    const before = files.map((f) => ({ f, mtime: statSync(f).mtimeMs, bytes: readFileSync(f) }));
    spawnSync('chmod', ['-R', 'a-w', ro]);
    try {
      await merge({ inputs: ro, out: out() });
    } finally {
      spawnSync('chmod', ['-R', 'u+w', ro]);
    }
    for (const b of before) {
      expect(statSync(b.f).mtimeMs).toBe(b.mtime);
      expect(readFileSync(b.f).equals(b.bytes)).toBe(true);
    }
  });

  it('refuses an output larger than the free space, with the numbers, before writing', async () => {
    // Sparse inputs: 4 TiB of declared tensor data each, taking no disk space.
    const huge = join(tmp, 'huge-run');
    for (const s of [1, 2])
      writeSparseSafetensors(join(huge, `step-${s}`, 'model.safetensors'), [
        { name: 'w', dtype: 'BF16', shape: [2 ** 41] },
      ]);
    const o = out();
    const err = await rejected(merge({ inputs: huge, out: o }));
    expect(err.code).toBe('E_NOSPACE');
    expect(err.message).toMatch(
      /^not enough space for the output in .*: the merge still has 4398\.05 GB to write, the filesystem has \d+\.\d\d GB free$/,
    );
    expect(existsSync(o)).toBe(false);
    expect(existsSync(partialOf(o))).toBe(false);
  });
});

describe('killed at random moments', () => {
  // A larger run, so that a kill lands in the middle: finite random bf16 (exponent's top bit clear).
  const big = join(tmp, 'big-run');
  const bigRef = join(tmp, 'big-ref');
  const mkBig = () => {
    for (const s of [1, 2, 3]) {
      const tensors = [0, 1, 2, 3].map((t) => {
        const data = randomBytes(24 * 2 ** 20);
        const u = new Uint16Array(data.buffer, data.byteOffset, data.length / 2);
        for (let i = 0; i < u.length; i++) u[i] = (u[i] as number) & 0xbfff;
        return { name: `layers.${t}.weight`, dtype: 'BF16', shape: [12 * 2 ** 20], data };
      });
      mkdirSync(join(big, `step-${s}`), { recursive: true });
      writeSafetensors(join(big, `step-${s}`, 'model.safetensors'), tensors);
    }
  };
  const args = (o: string) => [
    CLI,
    'merge',
    big,
    '--out',
    o,
    '--chunk-size',
    '256KiB',
    '--threads',
    '1',
    // The slowest kernel (the same bytes): the merge must outlast the journal's first flush, a
    // quarter of a second in, however fast the best kernel and the disk get.
    '--kernel',
    'scalar',
    '--quiet',
    '--json',
  ];

  it('resumes to the same bytes after SIGKILL, wherever it lands (seeded)', async () => {
    mkBig();
    const t0 = performance.now();
    expect(spawnSync(process.execPath, args(bigRef)).status).toBe(0);
    const fullMs = performance.now() - t0;
    const rand = rng(2026);
    const resumed: number[] = [];
    for (let k = 0; k < 6; k++) {
      const o = out();
      const child = spawn(process.execPath, args(o), { stdio: 'ignore' });
      // Every other kill waits for the journal's first line, so that it lands after some work is on
      // disk; the first of them at once (the merge's first flush is a quarter of a second in, well
      // before its end), so that at least one resume finds work done, however fast the merge runs.
      const waits = k % 2 === 1;
      if (waits) await journalStarted(o);
      const delay = k === 1 ? 0 : fullMs * (waits ? 0.3 : 0.95) * rand();
      await new Promise((r) => setTimeout(r, Math.round(delay)));
      child.kill('SIGKILL');
      await exited(child);
      if (!existsSync(o)) {
        // What the killed merge made durable is exactly what the resume takes as done.
        const durable = existsSync(journalOf(o)) ? journalIds(o).size : 0;
        const r = spawnSync(process.execPath, [...args(o), '--resume'], { encoding: 'utf8', timeout: 60_000 });
        expect(r.status, r.stderr).toBe(0);
        const found = (JSON.parse(r.stdout) as { resumedChunks: number }).resumedChunks;
        expect(found).toBe(durable);
        resumed.push(found);
      }
      expectSame(bigRef, o);
      expect(existsSync(partialOf(o))).toBe(false);
    }
    // Where each kill landed, for the log: chunks found done by each resume.
    console.log(`merge ${Math.round(fullMs)} ms; chunks found done on resume: ${resumed.join(', ')}`);
    expect(resumed.some((c) => c > 0)).toBe(true);
  }, 120_000);
});

/** The length of a one-tensor file's data, checked to be all zero bytes (read in blocks). */
function zeroTensorBytes(path: string): number {
  const fd = openSync(path, 'r');
  try {
    const head = Buffer.alloc(8);
    readSync(fd, head, 0, 8, 0);
    const start = 8 + Number(head.readBigUInt64LE(0));
    const block = Buffer.alloc(8 * 2 ** 20);
    const zero = Buffer.alloc(block.length);
    let total = 0;
    for (let n; (n = readSync(fd, block, 0, block.length, start + total)) > 0; total += n) {
      if (!block.subarray(0, n).equals(zero.subarray(0, n)))
        expect.fail(`${path}: non-zero bytes after offset ${start + total}`);
    }
    return total;
  } finally {
    closeSync(fd);
  }
}

describe('stopped by a signal', () => {
  // One chunk that runs for seconds (2 x 512 MiB of zeros, scalar kernel, sparse files so nothing
  // is written to make them): a stop that waited for the chunk to end would take seconds.
  const slow = join(tmp, 'slow-run');
  const elements = 2 ** 28;
  const args = (o: string, kernel = 'scalar') => [
    CLI,
    'merge',
    slow,
    '--out',
    o,
    '--chunk-size',
    '2GiB',
    '--threads',
    '1',
    '--kernel',
    kernel,
    '--quiet',
  ];
  beforeAll(() => {
    for (const s of [1, 2])
      writeSparseSafetensors(join(slow, `step-${s}`, 'model.safetensors'), [
        { name: 'w', dtype: 'BF16', shape: [elements] },
      ]);
  });

  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    it(`stops on ${signal} within two seconds, mid-chunk, exits 1, and leaves nothing when no chunk was done`, async () => {
      const o = out();
      const child = spawn(process.execPath, args(o), { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
      });
      // The partial appears just before the chunk is handed to a worker.
      for (let t = 0; t < 1000 && !existsSync(partialOf(o)); t++) await new Promise((r) => setTimeout(r, 10));
      await new Promise((r) => setTimeout(r, 300));
      const sent = performance.now();
      child.kill(signal);
      const status = await exited(child);
      const stopMs = performance.now() - sent;
      expect(existsSync(o), 'the merge finished before the signal: the chunk is too short for this machine').toBe(
        false,
      );
      expect(status).toBe(1);
      expect(stopMs).toBeLessThan(2000);
      // The one chunk was stopped before it was done: there is nothing to resume, and nothing is left.
      expect(stderr).toBe('pma: error [E_ABORTED]: the merge was aborted\n');
      expect(existsSync(partialOf(o))).toBe(false);
      const r = spawnSync(process.execPath, [...args(o, 'auto'), '--resume'], { encoding: 'utf8', timeout: 60_000 });
      expect(r.status, r.stderr).toBe(0);
      expect(zeroTensorBytes(join(o, 'model.safetensors'))).toBe(elements * 2);
      expect(pma(['verify', o]).status).toBe(0);
    }, 60_000);
  }
});
