import { spawn } from 'node:child_process';
import { readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';

import { discover, type CheckpointRef } from './checkpoints/discover.js';
import { parseStep } from './checkpoints/step.js';
import { loadCheckpoint } from './checkpoints/load.js';
import { PmaError, isAbort } from './errors.js';
import { merge, type MergeResult } from './merge/merge.js';
import type { MergeOptions } from './merge/options.js';
import { partialHeldLive, partialPath } from './output/partial.js';
import { makeDirs } from './util/fs.js';
import { acquireLock, lockToken, releaseLock } from './util/lock.js';
import * as v from './validate.js';

export interface WatchOptions extends Omit<
  MergeOptions,
  'inputs' | 'out' | 'resume' | 'force' | 'signal' | 'onPlan' | 'onProgress'
> {
  /** The training run's directory, where checkpoints appear. */
  run: string;
  /** Where merges go, each as merged-step-<S>/, with the watcher's state file. */
  out: string;
  /** Merge on every K-th new checkpoint (default 1: each one). */
  mergeEvery?: number;
  /** Keep the newest M merges, deleting older ones (default: keep all). */
  keep?: number;
  /** A checkpoint counts once its files have not changed for this long: ms, or "60s" (default 60 s). */
  settleMs?: number | string;
  /** How often the run directory is listed: ms, or "10s" (default 10 s). */
  pollMs?: number | string;
  /**
   * A file whose presence in a checkpoint directory marks it complete (no settle wait then); or
   * 'latest': the run directory's `latest` file (as DeepSpeed writes it) names the newest complete
   * checkpoint, and it and every older one count.
   */
  marker?: string;
  /** A shell command run after each merge, `{dir}` replaced by the merge's directory. */
  exec?: string;
  signal?: AbortSignal;
}

export interface WatchMerge {
  step: number;
  dir: string;
  result: MergeResult;
  /** Exit status of the exec command, when one ran. */
  execStatus?: number | null;
  /** Merges deleted to keep --keep. */
  removed: string[];
}

interface WatchState {
  version: 1;
  /** The run watched (absolute): another run into the same output starts afresh. */
  run: string | null;
  /** Newest step merged (or skipped by --merge-every), so a restart does not merge it again. */
  lastStep: number | null;
  /** New checkpoints seen since the last merge (for --merge-every). */
  sinceMerge: number;
  /** Merge directories by name, inside the output directory. */
  merges: { step: number; name: string }[];
}

const STATE_FILE = '.pma-watch.json';
const LOCK_FILE = '.pma-watch.lock';
const SHARD_NAME = /-(\d{5})-of-(\d{5})\.safetensors$/;

/** Size and mtime of every file of a checkpoint: unchanged for the settle time = written. */
async function signature(ref: CheckpointRef): Promise<string> {
  const names = ref.dir === ref.path ? (await readdir(ref.dir)).sort() : [basename(ref.path)];
  const parts: string[] = [];
  for (const n of names) {
    const s = await stat(join(ref.dir, n)).catch(() => null);
    if (s?.isFile()) parts.push(`${n}:${s.size}:${s.mtimeMs}`);
  }
  return parts.join('|');
}

/**
 * Whether a checkpoint is whole as far as its own files can tell: the index and every shard it
 * lists present, every file exactly the size its header claims. A lone "-00001-of-00002" file is a
 * sharded checkpoint whose index is not written yet.
 */
async function looksComplete(ref: CheckpointRef): Promise<boolean> {
  if (ref.layout.kind === 'single') {
    const m = SHARD_NAME.exec(ref.layout.file);
    if (m && Number(m[2]) > 1) return false;
  }
  try {
    await loadCheckpoint(ref);
    return true;
  } catch (e) {
    if (e instanceof PmaError) return false;
    throw e;
  }
}

async function loadState(path: string): Promise<WatchState> {
  try {
    const s = JSON.parse(await readFile(path, 'utf8')) as WatchState;
    if (s.version === 1 && Array.isArray(s.merges)) return s;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT')
      throw new PmaError('E_INPUT', `cannot read the watch state ${path}: ${(e as Error).message}`, { file: path });
  }
  return { version: 1, run: null, lastStep: null, sinceMerge: 0, merges: [] };
}

async function saveState(path: string, s: WatchState): Promise<void> {
  await writeFile(`${path}.tmp`, JSON.stringify(s, null, 2));
  await rename(`${path}.tmp`, path);
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

const shellQuote = (s: string) => `'${s.replaceAll("'", "'\\''")}'`;

function runExec(command: string, dir: string): Promise<number | null> {
  return new Promise((resolve) => {
    const child = spawn(command.replaceAll('{dir}', shellQuote(dir)), { shell: true, stdio: 'inherit' });
    child.on('error', () => resolve(null));
    child.on('exit', (code) => resolve(code));
  });
}

/**
 * Watches a training run: each time a new checkpoint is complete (see looksComplete; plus either
 * the marker file or files unchanged for the settle time), merges the newest window of complete
 * checkpoints into <out>/merged-step-<S>/ (atomically, as every merge), keeps the newest `keep`,
 * runs `exec`, and yields the result. State lives in <out>/.pma-watch.json, so a restarted watcher
 * carries on where it stopped, resuming a merge it was killed in. Ends, without an error, when
 * `signal` aborts (a merge in progress stops and is resumed by the next watcher).
 *
 * @example
 * ```ts
 * import { watchRun } from 'pma';
 * const stop = new AbortController();
 * for await (const m of watchRun({ run: 'runs/exp7', out: 'watched', last: 3, settleMs: 0, pollMs: 100, signal: stop.signal })) {
 *   console.log(`merged step ${m.step} into ${m.dir}`);
 *   stop.abort(); // a real watcher runs until the training does
 * }
 * ```
 */
export async function* watchRun(options: WatchOptions): AsyncGenerator<WatchMerge> {
  if (typeof options !== 'object' || options === null) throw v.invalid('options', 'an object', options);
  const { run, out, mergeEvery, keep, settleMs, pollMs, marker, exec, signal, ...mergeOptions } = options;
  const runDir = v.nonEmptyString('run', run);
  const outDir = v.nonEmptyString('out', out);
  const every = mergeEvery === undefined ? 1 : v.integer('mergeEvery', mergeEvery, 1);
  const keepN = keep === undefined ? null : v.integer('keep', keep, 1);
  const settle = settleMs === undefined ? 60_000 : v.durationMs('settleMs', settleMs);
  const poll = pollMs === undefined ? 10_000 : Math.max(1, v.durationMs('pollMs', pollMs));
  if (marker !== undefined) v.nonEmptyString('marker', marker);
  if (exec !== undefined) v.nonEmptyString('exec', exec);
  await makeDirs(outDir);
  // One watcher per output directory: a second would merge the same steps into the same places.
  const lockPath = join(outDir, LOCK_FILE);
  const token = lockToken();
  await acquireLock(lockPath, token, outDir, 'pma watch');
  try {
    yield* watchLoop(runDir, outDir, { every, keepN, settle, poll, marker, exec, signal, mergeOptions });
  } finally {
    await releaseLock(lockPath, token);
  }
}

interface LoopSettings {
  every: number;
  keepN: number | null;
  settle: number;
  poll: number;
  marker: string | undefined;
  exec: string | undefined;
  signal: AbortSignal | undefined;
  mergeOptions: Omit<MergeOptions, 'inputs' | 'out'>;
}

/** Partials of other steps: left by a watcher stopped mid-merge, never to be resumed now. */
async function dropStalePartials(outDir: string, keep: string): Promise<void> {
  for (const name of await readdir(outDir)) {
    if (!/^merged-step-\d+\.partial$/.test(name) || name === keep) continue;
    if (!(await partialHeldLive(join(outDir, name)))) await rm(join(outDir, name), { recursive: true, force: true });
  }
}

/**
 * Merges, resuming the step's partial when there is one. A partial this merge cannot resume
 * (made for another window, or its inputs changed since) is dropped and the merge starts over;
 * not one another process holds, and not for want of space, which would only repeat. Null when
 * the watcher was stopped.
 */
async function mergeStep(opts: MergeOptions, signal: AbortSignal | undefined): Promise<MergeResult | null> {
  const partial = partialPath(opts.out);
  try {
    return await merge(opts);
  } catch (e) {
    if (signal?.aborted && isAbort(e)) return null;
    // E_NOSPACE is not among them: starting over would only fill the disk again.
    const restartable = e instanceof PmaError && (e.code === 'E_OUTPUT' || e.code === 'E_INPUT');
    if (!restartable || (await stat(partial).catch(() => null)) === null || (await partialHeldLive(partial))) throw e;
  }
  await rm(partial, { recursive: true, force: true });
  try {
    return await merge({ ...opts, resume: false });
  } catch (e) {
    if (signal?.aborted && isAbort(e)) return null;
    throw e;
  }
}

async function* watchLoop(runDir: string, outDir: string, o: LoopSettings): AsyncGenerator<WatchMerge> {
  const { every, keepN, settle, poll, marker, exec, signal, mergeOptions } = o;
  const statePath = join(outDir, STATE_FILE);
  const state = await loadState(statePath);
  const runPath = resolve(runDir);
  if (state.run !== runPath) Object.assign(state, { run: runPath, lastStep: null, sinceMerge: 0 });
  // First seen signature and when, per checkpoint path: settled once unchanged for `settle`.
  const seen = new Map<string, { sig: string; since: number }>();

  while (!signal?.aborted) {
    const now = Date.now();
    const found = await discover([runDir]).catch((e: unknown) => {
      if (e instanceof PmaError && e.code === 'E_NO_CHECKPOINTS') return null;
      throw e;
    });
    // --marker latest: the run's own `latest` file (DeepSpeed) names the newest complete checkpoint.
    const latest =
      marker === 'latest' ? parseStep((await readFile(join(runDir, 'latest'), 'utf8').catch(() => '')).trim()) : null;
    const complete: CheckpointRef[] = [];
    for (const ref of found?.checkpoints ?? []) {
      if (ref.step === null) continue;
      const markerFound =
        marker === 'latest'
          ? latest !== null && ref.step <= latest
          : marker !== undefined && (await stat(join(ref.dir, marker)).catch(() => null)) !== null;
      if (!markerFound) {
        const sig = await signature(ref);
        const prev = seen.get(ref.path);
        if (!prev || prev.sig !== sig) {
          seen.set(ref.path, { sig, since: now });
          if (settle > 0) continue;
        } else if (now - prev.since < settle) {
          continue;
        }
      }
      if (await looksComplete(ref)) complete.push(ref);
    }
    const newest = complete[complete.length - 1];
    if (newest && newest.step !== null && state.lastStep !== null && newest.step < state.lastStep) {
      // The run went back (restarted from an earlier checkpoint, after a loss spike): what it
      // saves from here on is new, even at steps merged before.
      state.lastStep = newest.step;
      await saveState(statePath, state);
    }
    if (newest && newest.step !== null && (state.lastStep === null || newest.step > state.lastStep)) {
      const fresh = complete.filter((c) => state.lastStep === null || (c.step as number) > state.lastStep).length;
      state.sinceMerge += fresh;
      state.lastStep = newest.step;
      if (state.sinceMerge >= every) {
        state.sinceMerge = 0;
        const name = `merged-step-${newest.step}`;
        const dir = join(outDir, name);
        await dropStalePartials(outDir, `${name}.partial`);
        // Only the complete checkpoints are named: a half-written one is never part of a merge.
        const result = await mergeStep(
          {
            ...mergeOptions,
            inputs: complete.map((c) => c.path),
            out: dir,
            resume: true,
            force: true,
            ...(signal ? { signal } : {}),
          },
          signal,
        );
        if (result === null) return;
        state.merges = state.merges.filter((m) => m.step !== newest.step);
        state.merges.push({ step: newest.step, name });
        const removed: string[] = [];
        while (keepN !== null && state.merges.length > keepN) {
          const old = state.merges.shift() as { step: number; name: string };
          await rm(join(outDir, old.name), { recursive: true, force: true });
          removed.push(join(outDir, old.name));
        }
        await saveState(statePath, state);
        const r: WatchMerge = { step: newest.step, dir, result, removed };
        if (exec !== undefined) r.execStatus = await runExec(exec, dir);
        yield r;
      } else {
        await saveState(statePath, state);
      }
      continue;
    }
    await sleep(poll, signal);
  }
}
