import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';

import { beforeAll, describe, expect, it } from 'vitest';

import { merge } from '../../src/index.js';
import { writeSyntheticDcp } from '../../src/synthetic/dcp.js';
import { CLI, pma } from '../helpers/cli.js';
import { randomData, rng, writeCheckpoint, type TensorSpec } from '../helpers/safetensors.js';
import { expectSameOutput } from '../helpers/outputs.js';
import { scratch } from '../helpers/scratch.js';
import type { DType } from '../../src/dtypes.js';

// One merge split into parts, each a real pma process, as a Slurm array or a Kubernetes Indexed
// Job runs them: the result must be the single-process merge's bytes for every N.
const { tmp, out } = scratch('pma-parts-');

// 20 tensors of a few sizes: enough to cut into 16 shards; one shard of the input per 10.
const SPECS: TensorSpec[] = Array.from({ length: 20 }, (_, i) => ({
  name: `layers.${String(i).padStart(2, '0')}.weight`,
  dtype: i % 3 === 0 ? 'F32' : 'BF16',
  shape: [64 + 16 * (i % 5), 96],
}));
const run = join(tmp, 'run');
const dcpRun = join(tmp, 'dcp-run');

interface Ran {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI as a child process without blocking the test (parts run at the same time). */
function start(args: string[], env: Record<string, string> = {}): { child: ChildProcess; done: Promise<Ran> } {
  const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env } });
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<Ran>((r) => child.on('close', (status) => r({ status, stdout, stderr })));
  return { child, done };
}

interface PartJson {
  part: number;
  status: string;
  files: string[];
  finalized: { out: string } | null;
  waiting: string[];
  resumedChunks: number;
}

/** Runs parts `indices` of `count` at once; returns each one's --json answer. */
async function parts(inputs: string, o: string, count: number, indices?: number[], extra: string[] = []) {
  const runs = (indices ?? Array.from({ length: count }, (_, i) => i)).map(
    (i) =>
      start(['merge', inputs, '--out', o, '--part', `${i}/${count}`, '--json', '-q', '--threads', '1', ...extra]).done,
  );
  const done = await Promise.all(runs);
  for (const r of done) expect(r.status, r.stderr).toBe(0);
  return done.map((r) => JSON.parse(r.stdout) as PartJson);
}

/** The --max-shard-size a merge in `count` parts chose, when it cut the output finer (its plan's note). */
function shardSizeFor(inputs: string, count: number): string[] {
  const r = pma(['merge', inputs, '--out', out(), '--part', `0/${count}`, '--dry-run']);
  const m = /--max-shard-size (\d+)\)/.exec(r.stdout);
  return m ? ['--max-shard-size', m[1] as string] : [];
}

beforeAll(() => {
  for (const [i, s] of [100, 200, 300].entries())
    writeCheckpoint(join(run, `checkpoint-${s}`), SPECS, 40 + i, { shards: 2 });
  for (const [i, s] of [100, 200, 300].entries()) {
    const rand = rng(70 + i);
    const tensors = SPECS.slice(0, 8).map((t) => ({ ...t, dtype: t.dtype as DType }));
    writeSyntheticDcp(join(dcpRun, `step-${s}`), {
      tensors,
      data: (t) =>
        randomData(
          t.dtype,
          t.shape.reduce((a, b) => a * b, 1),
          rand,
        ),
      ranks: 4,
    });
  }
});

describe('a merge in N parts, each a process', () => {
  for (const n of [1, 2, 3, 7, 16]) {
    it(`N = ${n}: the bytes of the single-process merge, one part finalizes, pma verify passes`, async () => {
      const shard = shardSizeFor(run, n);
      const single = out();
      expect(pma(['merge', run, '--out', single, '-q', ...shard]).status).toBe(0);
      const o = out();
      const answers = await parts(run, o, n);
      expect(answers.filter((a) => a.finalized !== null)).toHaveLength(1);
      // Every file written by exactly one part.
      const files = answers.flatMap((a) => a.files);
      expect(new Set(files).size).toBe(files.length);
      if (n > 2) expect(answers.every((a) => a.files.length > 0)).toBe(true);
      expectSameOutput(single, o);
      expect(existsSync(`${o}.partial`)).toBe(false);
      expect(pma(['verify', o]).status).toBe(0);
      const record = JSON.parse(readFileSync(join(o, 'pma.json'), 'utf8')) as {
        parts: { count: number; parts: { part: number; host: string; bytesWritten: number }[] };
      };
      expect(record.parts.count).toBe(n);
      expect(record.parts.parts.map((p) => p.part)).toEqual(Array.from({ length: n }, (_, i) => i));
    }, 120_000);
  }

  it('DCP inputs in 3 parts: the single-process DCP merge, byte for byte', async () => {
    const single = out();
    expect(pma(['merge', dcpRun, '--out', single, '-q']).status).toBe(0);
    const o = out();
    const answers = await parts(dcpRun, o, 3);
    expect(answers.flatMap((a) => a.files).sort()).toEqual([
      '__0_0.distcp',
      '__1_0.distcp',
      '__2_0.distcp',
      '__3_0.distcp',
    ]);
    expectSameOutput(single, o);
    expect(pma(['verify', o]).status).toBe(0);
  }, 120_000);
});

describe('parts that fail, finish early or disagree', () => {
  it('finalize before every part is done is refused, naming the parts; status shows them; nothing at <out>', async () => {
    const o = out();
    const first = await parts(run, o, 3, [0, 2]);
    expect(first.every((a) => a.finalized === null && a.waiting.length > 0)).toBe(true);
    const fin = pma(['finalize', o]);
    expect(fin.status).toBe(1);
    expect(fin.stderr).toContain('E_INCOMPLETE');
    expect(fin.stderr).toContain('1 of 3 part(s) are not complete');
    expect(fin.stderr).toContain('part 1: not started');
    expect(existsSync(o)).toBe(false);
    const st = pma(['status', `${o}.partial`]);
    expect(st.status).toBe(0);
    expect(st.stdout).toContain('2 of 3 part(s) done');
    expect(st.stdout).toMatch(/part 0: done/);
    expect(st.stdout).toContain('part 1: not started');
    // The missing part completes last, and finalizes.
    const [last] = await parts(run, o, 3, [1]);
    expect(last?.finalized?.out).toBe(o);
    expect(pma(['verify', o]).status).toBe(0);
    // Rerun of a part (a scheduler's retry) after the merge is in place: nothing to do, exit 0.
    const [again] = await parts(run, o, 3, [2]);
    expect(again?.status).toBe('finalized-before');
    expect(pma(['finalize', o]).stdout).toContain('already finalized');
  }, 120_000);

  it('a part rerun after it completed exits 0 at once; pma finalize finishes what the parts left', async () => {
    const o = out();
    await parts(run, o, 2, [0]);
    const [again] = await parts(run, o, 2, [0]);
    expect(again?.status).toBe('complete');
    // Part 1 done as the first half was: the last part finalizes.
    const [last] = await parts(run, o, 2, [1]);
    expect(last?.finalized).not.toBeNull();
  }, 60_000);

  it('refuses a part of another plan (other arguments, another number of parts), naming what differs', async () => {
    const o = out();
    await parts(run, o, 2, [0]);
    const other = pma(['merge', run, '--out', o, '--part', '1/2', '--method', 'ema']);
    expect(other.status).toBe(2);
    expect(other.stderr).toContain('--method (sma then, ema now)');
    expect(other.stderr).toContain(`remove ${o}.partial to start over`);
    const count = pma(['merge', run, '--out', o, '--part', '1/3']);
    expect(count.status).toBe(2);
    expect(count.stderr).toContain('--part (the number of parts) (2 then, 3 now)');
    expect(existsSync(o)).toBe(false);
    // The merge's own part 1 still completes it.
    const [last] = await parts(run, o, 2, [1]);
    expect(last?.finalized).not.toBeNull();
  }, 60_000);

  it('a part killed with SIGKILL is rerun by the same command: same bytes', async () => {
    // Larger tensors and small chunks: the kill lands while the part is writing.
    const big = join(tmp, 'big-run');
    const specs: TensorSpec[] = Array.from({ length: 6 }, (_, i) => ({
      name: `w.${i}`,
      dtype: 'F32',
      shape: [2048, 1024],
    }));
    for (const [i, s] of [1, 2, 3, 4].entries())
      writeCheckpoint(join(big, `checkpoint-${s}`), specs, 90 + i, { shards: 3 });
    const single = out();
    expect(pma(['merge', big, '--out', single, '-q', '--max-shard-size', '16MB']).status).toBe(0);
    const args = (o: string) => [
      ...[
        'merge',
        big,
        '--out',
        o,
        '--max-shard-size',
        '16MB',
        '--chunk-size',
        '1MB',
        '--threads',
        '1',
        '-q',
        '--json',
      ],
    ];
    // Where the kill lands is up to the machine: tried until it lands in the middle of part 0.
    for (let attempt = 0; ; attempt++) {
      const o = out();
      const victim = start([...args(o), '--part', '0/2']);
      const journal = join(`${o}.partial`, '.pma-resume', 'part-0', 'journal');
      for (let t = 0; t < 2000 && !(existsSync(journal) && readFileSync(journal, 'utf8').length > 0); t++)
        await new Promise((r) => setTimeout(r, 2));
      victim.child.kill('SIGKILL');
      await victim.done;
      const st = pma(['status', o]);
      if (!/part 0: stopped with \d+ of \d+ chunks done/.test(st.stdout)) {
        expect(attempt, `the kill never landed mid-part: ${st.stdout}`).toBeLessThan(5);
        continue;
      }
      const other = await start([...args(o), '--part', '1/2']).done;
      expect(other.status, other.stderr).toBe(0);
      expect(existsSync(o)).toBe(false); // part 0 is not complete
      const rerun = await start([...args(o), '--part', '0/2']).done;
      expect(rerun.status, rerun.stderr).toBe(0);
      const answer = JSON.parse(rerun.stdout) as PartJson;
      expect(answer.finalized).not.toBeNull();
      expect(answer.resumedChunks).toBeGreaterThan(0);
      console.log(`part 0 rerun after SIGKILL found ${answer.resumedChunks} chunk(s) done (attempt ${attempt + 1})`);
      expectSameOutput(single, o);
      return;
    }
  }, 120_000);

  it('a part rerun while another process renames the output into place waits for it, and leaves the output alone', async () => {
    // The moment a Slurm requeue can hit: every part is done and the finalizer has moved the resume
    // data aside (its lease with it) but not yet renamed the partial into place.
    const single = out();
    expect(pma(['merge', run, '--out', single, '-q', ...shardSizeFor(run, 2)]).status).toBe(0);
    const o = out();
    await parts(run, o, 2);
    renameSync(o, `${o}.partial`);
    const finishing = `${o}.partial.finishing`;
    mkdirSync(finishing);
    const finalizer = spawn('sleep', ['60']); // a live process on this host holds the lease
    const lease = { pid: finalizer.pid, host: hostname(), token: 't-1', since: 'now', beat: 0, at: 'now' };
    writeFileSync(join(finishing, 'finalize'), JSON.stringify(lease));
    try {
      const rerun = start(['merge', run, '--out', o, '--part', '1/2', '--json', '-q']);
      await new Promise((r) => setTimeout(r, 1500));
      expect(existsSync(join(`${o}.partial`, '.pma-resume'))).toBe(false); // not put back
      expect(existsSync(finishing)).toBe(true);
      // The finalizer completes.
      renameSync(`${o}.partial`, o);
      rmSync(finishing, { recursive: true });
      const r = await rerun.done;
      expect(r.status, r.stderr).toBe(0);
      expect((JSON.parse(r.stdout) as PartJson).status).toBe('finalized-before');
    } finally {
      finalizer.kill();
    }
    expect(existsSync(`${o}.partial`)).toBe(false);
    expect(existsSync(join(o, '.pma-resume'))).toBe(false);
    expectSameOutput(single, o);
  }, 60_000);

  it('a part held by a live process elsewhere is refused; one whose holder stopped beating is taken over', async () => {
    const o = out();
    await parts(run, o, 2, [1]);
    const lock = join(`${o}.partial`, '.pma-resume', 'part-0', 'lock');
    mkdirSync(join(lock, '..'), { recursive: true });
    const holder = (beat: number) =>
      JSON.stringify({ pid: 4242, host: 'another-node', token: 't-1', since: '2026-01-01T00:00:00Z', beat, at: 'now' });
    writeFileSync(lock, holder(0));
    let beat = 0;
    const beating = setInterval(() => writeFileSync(lock, holder(++beat)), 20);
    const env = { PMA_LEASE_BEAT_MS: '60' };
    const refused = await start(['merge', run, '--out', o, '--part', '0/2'], env).done;
    clearInterval(beating);
    expect(refused.status).toBe(2);
    expect(refused.stderr).toContain('pid 4242 on host another-node');
    // The holder is gone (its pod was deleted): its beat stands still, and the rerun takes over.
    const taken = await start(['merge', run, '--out', o, '--part', '0/2', '--json', '-q'], env).done;
    expect(taken.status, taken.stderr).toBe(0);
    expect((JSON.parse(taken.stdout) as PartJson).finalized).not.toBeNull();
  }, 60_000);
});

describe('--part auto', () => {
  const cases: [string, Record<string, string>, string[]][] = [
    ['a Slurm job array', { SLURM_ARRAY_TASK_ID: '5', SLURM_ARRAY_TASK_MIN: '4', SLURM_ARRAY_TASK_COUNT: '3' }, []],
    ['srun tasks', { SLURM_PROCID: '1', SLURM_NTASKS: '3' }, []],
    ['a Kubernetes Indexed Job', { JOB_COMPLETION_INDEX: '1' }, ['--parts', '3']],
    ['torchrun', { RANK: '1', WORLD_SIZE: '3' }, []],
  ];
  for (const [what, env, extra] of cases) {
    it(`takes part 1 of 3 from ${what}, and the plan says where it came from`, async () => {
      const clean = Object.fromEntries(
        Object.keys(process.env)
          .filter((k) => /^(SLURM_|JOB_COMPLETION_INDEX$|RANK$|WORLD_SIZE$)/.test(k))
          .map((k) => [k, '']),
      );
      const r = await start(['merge', run, '--out', out(), '--part', 'auto', '--dry-run', ...extra], {
        ...clean,
        ...env,
      }).done;
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/note: part 1 of 3 \(/);
      for (const [k, v] of Object.entries(env)) expect(r.stdout).toContain(`${k}=${v}`);
    });
  }

  it('refuses --on-nonfinite skip-checkpoint in parts', () => {
    const r = pma(['merge', run, '--out', out(), '--part', '0/2', '--on-nonfinite', 'skip-checkpoint']);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('invalid --on-nonfinite: expected "error" or "warn" in a merge in parts');
  });
});

// The library's own answer for one part, as a service embedding pma would call it.
describe('merge({ part })', () => {
  it('returns the part it merged, its files and the finalize', async () => {
    const o = out();
    const r = await merge({ inputs: run, out: o, part: '0/1' });
    expect(r.part).toMatchObject({ index: 0, count: 1, status: 'merged', source: '--part 0/1' });
    expect(r.part?.finalized?.out).toBe(o);
  });
});
