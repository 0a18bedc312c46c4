import { spawn } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { merge, watchRun, type WatchMerge } from '../../src/index.js';
import { CLI } from '../helpers/cli.js';
import { writeCheckpoint, type TensorSpec } from '../helpers/safetensors.js';

// pma watch against a writer that produces checkpoints shard by shard, slowly, while pma watches.
const tmp = mkdtempSync(join(tmpdir(), 'pma-watch-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const SPECS: TensorSpec[] = [
  { name: 'embed.weight', dtype: 'BF16', shape: [512, 129] },
  { name: 'layers.0.weight', dtype: 'F32', shape: [20011] },
  { name: 'layers.1.weight', dtype: 'BF16', shape: [300, 77] },
];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Copies a finished checkpoint into the run the slow way: each shard in two writes with pauses
 * between (a watcher sees a shard shorter than its header says), the index first or last.
 */
async function writeSlowly(from: string, to: string, indexFirst: boolean): Promise<void> {
  mkdirSync(to, { recursive: true });
  const names = readdirSync(from).sort();
  const index = 'model.safetensors.index.json';
  const copyWhole = (n: string) => writeFileSync(join(to, n), readFileSync(join(from, n)));
  if (indexFirst) copyWhole(index);
  for (const n of names.filter((x) => x.endsWith('.safetensors'))) {
    const data = readFileSync(join(from, n));
    const fd = openSync(join(to, n), 'w');
    writeSync(fd, data, 0, data.length >> 1);
    await sleep(120);
    writeSync(fd, data, data.length >> 1, data.length - (data.length >> 1));
    closeSync(fd);
    await sleep(120);
  }
  for (const n of names.filter((x) => !x.endsWith('.safetensors') && x !== index)) copyWhole(n);
  if (!indexFirst) copyWhole(index);
}

async function until(check: () => boolean, ms: number): Promise<void> {
  for (const end = Date.now() + ms; !check(); await sleep(25))
    if (Date.now() > end) throw new Error('timed out waiting');
}

describe('pma watch', () => {
  it('merges the newest window each time a checkpoint is complete, never a half-written one; keeps M; runs exec; survives a restart', async () => {
    const run = join(tmp, 'run');
    const staging = join(tmp, 'staging');
    const out = join(tmp, 'merges');
    const log = join(tmp, 'exec.log');
    mkdirSync(run, { recursive: true });
    const steps = [100, 200, 300, 400];
    for (const [i, s] of steps.entries())
      writeCheckpoint(join(staging, `checkpoint-${s}`), SPECS, 70 + i, { shards: 2 });

    const ac = new AbortController();
    const seen: WatchMerge[] = [];
    const options = {
      run,
      out,
      last: 3,
      keep: 2,
      settleMs: 300,
      pollMs: 40,
      threads: 1,
      exec: `echo {dir} >> ${log}`,
      signal: ac.signal,
    };
    const watching = (async () => {
      for await (const m of watchRun(options)) seen.push(m);
    })();
    for (const [i, s] of steps.entries()) {
      await writeSlowly(join(staging, `checkpoint-${s}`), join(run, `checkpoint-${s}`), i % 2 === 0);
      await until(() => seen.length === i + 1, 30_000);
    }
    ac.abort();
    await watching;

    expect(seen.map((m) => m.step)).toEqual(steps);
    expect(seen.map((m) => m.result.plan.checkpoints.map((c) => c.step))).toEqual([
      [100],
      [100, 200],
      [100, 200, 300],
      [200, 300, 400],
    ]);
    // What was merged equals a merge of the finished checkpoints made afterwards: no torn input.
    for (const m of seen.slice(2)) {
      const again = await merge({
        inputs: m.result.plan.checkpoints.map((c) => c.path),
        out: join(tmp, `again-${m.step}`),
      });
      for (const f of readdirSync(again.out).filter((x) => x.endsWith('.safetensors'))) {
        if (!readFileSync(join(again.out, f)).equals(readFileSync(join(m.dir, f))))
          expect.fail(`${m.dir}/${f} differs from a merge of the finished checkpoints`);
      }
    }
    expect(
      readdirSync(out)
        .filter((x) => x.startsWith('merged-step-'))
        .sort(),
    ).toEqual(['merged-step-300', 'merged-step-400']);
    expect(seen[2]?.removed).toEqual([join(out, 'merged-step-100')]);
    expect(readFileSync(log, 'utf8').trim().split('\n')).toEqual(steps.map((s) => join(out, `merged-step-${s}`)));
    expect(seen.every((m) => m.execStatus === 0)).toBe(true);

    // A restarted watcher finds its state: nothing new, nothing merged again.
    const again = new AbortController();
    setTimeout(() => again.abort(), 700);
    const after: WatchMerge[] = [];
    for await (const m of watchRun({ ...options, settleMs: 0, signal: again.signal })) after.push(m);
    expect(after).toEqual([]);
    expect(JSON.parse(readFileSync(join(out, '.pma-watch.json'), 'utf8'))).toMatchObject({
      lastStep: 400,
      merges: [{ step: 300 }, { step: 400 }],
    });
    expect(existsSync(join(out, '.pma-watch.lock'))).toBe(false);
  }, 120_000);

  it('pma watch prints one JSON line per merge and stops cleanly on SIGINT', async () => {
    const out = join(tmp, 'cli-merges');
    const child = spawn(
      process.execPath,
      [CLI, 'watch', join(tmp, 'run'), '--out', out, '--last', '2', '--settle', '0', '--poll', '50ms', '--json'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    await until(() => stdout.includes('\n'), 30_000);
    child.kill('SIGINT');
    expect(await exited, stderr).toBe(0);
    const line = JSON.parse(stdout.split('\n')[0] as string) as { step: number; dir: string; checkpoints: string[] };
    expect([line.step, line.dir, line.checkpoints.length]).toEqual([400, join(out, 'merged-step-400'), 2]);
    expect(stderr).toContain('pma watch: stopped');
  }, 60_000);

  it('with --marker, merges a checkpoint as soon as its marker appears, and not before', async () => {
    const run = join(tmp, 'marker-run');
    const out = join(tmp, 'marker-merges');
    writeCheckpoint(join(run, 'step-10'), SPECS, 90);
    const ac = new AbortController();
    const seen: WatchMerge[] = [];
    // A settle time longer than the test: only the marker can make the checkpoint count.
    const watching = (async () => {
      for await (const m of watchRun({
        run,
        out,
        last: 2,
        marker: '.complete',
        settleMs: '10m',
        pollMs: 30,
        threads: 1,
        signal: ac.signal,
      }))
        seen.push(m);
    })();
    await sleep(400);
    expect(seen).toEqual([]);
    writeFileSync(join(run, 'step-10', '.complete'), '');
    await until(() => seen.length === 1, 30_000);
    ac.abort();
    await watching;
    expect(seen[0]?.step).toBe(10);

    // --marker latest: the run's `latest` file names the newest complete checkpoint.
    writeCheckpoint(join(run, 'step-20'), SPECS, 91);
    writeCheckpoint(join(run, 'step-30'), SPECS, 92);
    const again = new AbortController();
    const later: WatchMerge[] = [];
    const watching2 = (async () => {
      for await (const m of watchRun({
        run,
        out,
        last: 2,
        marker: 'latest',
        settleMs: '10m',
        pollMs: 30,
        threads: 1,
        signal: again.signal,
      }))
        later.push(m);
    })();
    writeFileSync(join(run, 'latest'), 'step-20\n');
    await until(() => later.length === 1, 30_000);
    await sleep(300);
    again.abort();
    await watching2;
    expect(later.map((m) => [m.step, m.result.plan.checkpoints.map((c) => c.step)])).toEqual([[20, [10, 20]]]);
  }, 60_000);

  it('drops partials of other steps, and merges what a run saves after going back to an earlier checkpoint', async () => {
    const run = join(tmp, 'rollback-run');
    const out = join(tmp, 'rollback-merges');
    for (const s of [1, 2, 3]) writeCheckpoint(join(run, `step-${s}`), SPECS, 60 + s);
    // Left by a watcher stopped while merging an older window: never to be resumed now.
    mkdirSync(join(out, 'merged-step-1.partial'), { recursive: true });
    const once = async (after?: () => void) => {
      const ac = new AbortController();
      const got: WatchMerge[] = [];
      const watching = (async () => {
        for await (const m of watchRun({ run, out, last: 2, settleMs: 0, pollMs: 20, threads: 1, signal: ac.signal }))
          got.push(m);
      })();
      await sleep(150);
      after?.();
      await until(() => got.length === 1, 30_000);
      ac.abort();
      await watching;
      return got.map((m) => [m.step, m.result.plan.checkpoints.map((c) => c.step)]);
    };
    expect(await once()).toEqual([[3, [2, 3]]]);
    expect(existsSync(join(out, 'merged-step-1.partial'))).toBe(false);
    // The run restarts from step 1 after a loss spike: 2 and 3 are deleted, a new 2 is saved.
    rmSync(join(run, 'step-2'), { recursive: true });
    rmSync(join(run, 'step-3'), { recursive: true });
    expect(await once(() => writeCheckpoint(join(run, 'step-2'), SPECS, 99))).toEqual([[2, [1, 2]]]);
  }, 60_000);

  it('a second watcher on the same output is refused, naming the first', async () => {
    const out = join(tmp, 'locked');
    const ac = new AbortController();
    const first = watchRun({ run: join(tmp, 'run'), out, last: 2, settleMs: 0, pollMs: 20, signal: ac.signal });
    const pending = first.next();
    await until(() => existsSync(join(out, '.pma-watch.lock')), 10_000);
    const second = watchRun({ run: join(tmp, 'run'), out, last: 2, pollMs: 20 });
    await expect(second.next()).rejects.toThrow(/is being written by another pma watch \(pid \d+/);
    ac.abort();
    await pending;
    await first.return(undefined);
  }, 60_000);
});
