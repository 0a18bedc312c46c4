import { availableParallelism, totalmem } from 'node:os';

import { defaultThreads, deviceName, MIN_GPU_MEMORY_PER_THREAD, resolveDevice, type ResolvedDevice } from './devices.js';
import { PmaError } from './errors.js';
import { executePlan } from './exec/execute.js';
import { ChunkPool } from './exec/pool.js';
import { checkFreeSpace, checkOutputPath, finishOutput } from './exec/output-dir.js';
import { OutputHasher, opOutputBytes } from './exec/hasher.js';
import { NonFiniteLog, type NonFiniteFinding } from './exec/nonfinite.js';
import { changedInput, PartialOutput, stampInputs } from './exec/partial.js';
import { native, type KernelName } from './native.js';
import { resolveRunOptions, type MergeOptions, type PlanOptions, type ResolvedRunOptions } from './options.js';
import { planMerge, type PlanResult } from './plan/planner.js';
import type { MergePlan } from './plan/types.js';
import { VERSION } from './version.js';

export interface MergeResult {
  out: string;
  plan: MergePlan;
  skipped: PlanResult['skipped'];
  /** The CPU kernel (unused when the merge ran on GPUs). */
  kernel: KernelName;
  /** 'cpu', or the GPUs used: 'cuda:0', 'cuda:0,1'. */
  device: string;
  /** Why --device auto chose the CPU, when it did. */
  deviceNote?: string;
  threads: number;
  /** Chunks found done in a partial output and not run again (resume). */
  resumedChunks: number;
  /** NaN/Inf found in the inputs (merged anyway: onNonfinite 'warn'). */
  nonfinite: NonFiniteFinding[];
  /** Checkpoints left out for NaN/Inf (onNonfinite 'skip-checkpoint'), with why. */
  leftOut: { path: string; reason: string }[];
  /** Whether the page cache was dropped behind the merge (pageCache 'drop', or 'auto' on a big merge). */
  droppedCache: boolean;
  bytesRead: number;
  bytesWritten: number;
  elapsedMs: number;
  /** Input bytes per second of the whole merge, planning and finishing included. */
  bytesPerSecond: number;
}

/** Plans a merge without executing it: the chosen checkpoints, weights, output files and chunks. */
export async function plan(options: PlanOptions): Promise<MergePlan> {
  return (await planMerge(options)).plan;
}

function provenance(p: MergePlan, options: MergeOptions, device: ResolvedDevice): Record<string, unknown> {
  return {
    tool: 'pma',
    version: VERSION,
    createdAt: new Date().toISOString(),
    method: p.method,
    alpha: p.alpha,
    schedule: p.schedule,
    weights: p.weights.w64,
    weightsF32: p.weights.w32,
    accumulate: p.accumulate,
    dtype: p.dtype,
    inputs: p.checkpoints.map((c) => ({ path: c.path, step: c.step })),
    outputs: p.outputs.map((f) => ({ name: f.name, size: f.size })),
    tensors: { merged: p.totals.merged, copied: p.totals.copied },
    device: deviceName(device),
    commandLine: options.commandLine ?? null,
  };
}

/**
 * Merges checkpoints into `out`: plans, writes into `<out>.partial/` with the native engine on a
 * worker pool, and renames it into place when complete. Throws PmaError and leaves nothing at
 * `out` on failure or abort; what was written stays in `<out>.partial/` for `resume`.
 */
export async function merge(options: MergeOptions): Promise<MergeResult> {
  const start = performance.now();
  const run = resolveRunOptions(options);
  const cpu = native().cpuFeatures();
  const kernel = run.kernel === 'auto' ? cpu.best : run.kernel;
  if (!cpu.kernels.includes(kernel)) {
    throw new PmaError('E_UNSUPPORTED', `kernel ${kernel} is not supported by this CPU (available: ${cpu.kernels.join(', ')})`);
  }
  const device = resolveDevice(run.device, run.gpuMemory, run.deviceLabel);
  const threads = run.threads ?? defaultThreads(device, availableParallelism());
  if (device.kind === 'cuda' && device.memory / threads < MIN_GPU_MEMORY_PER_THREAD) {
    throw new PmaError('E_USAGE', `invalid gpuMemory: expected at least ${MIN_GPU_MEMORY_PER_THREAD * threads} bytes for ${threads} threads (3 MiB each), got ${device.memory}`);
  }
  // The workers start (threads, addon loads) while the main thread reads headers and plans.
  const pool = new ChunkPool(threads);
  try {
    return await planAndRun(options, { ...run, threads }, kernel, device, pool, start);
  } finally {
    await pool.close();
  }
}

async function planAndRun(options: MergeOptions, run: ResolvedRunOptions & { threads: number }, kernel: KernelName, device: ResolvedDevice, pool: ChunkPool, start: number): Promise<MergeResult> {
  // Checkpoints left out for NaN/Inf (--on-nonfinite skip-checkpoint), path -> why; each finding
  // re-plans the merge without them and starts it over.
  const excluded = new Map<string, string>();
  for (;;) {
    const r = await attempt(options, run, kernel, device, pool, start, excluded);
    if (!('retryWithout' in r)) return r;
    for (const [path, why] of r.retryWithout) excluded.set(path, why);
  }
}

type Attempt = MergeResult | { retryWithout: Map<string, string> };

async function attempt(options: MergeOptions, run: ResolvedRunOptions & { threads: number }, kernel: KernelName, device: ResolvedDevice, pool: ChunkPool, start: number, excluded: ReadonlyMap<string, string>): Promise<Attempt> {
  const { plan: p, skipped } = await planMerge(options, excluded);
  const target = await checkOutputPath(run.out, p, run.force);
  const stamps = await stampInputs(p);
  options.onPlan?.(p, skipped);
  if (options.signal?.aborted) throw new PmaError('E_ABORTED', 'the merge was aborted');
  const partial = await PartialOutput.open(target, p, stamps, { resume: run.resume || excluded.size > 0, force: run.force || excluded.size > 0 });
  let discarded = false;
  const discard = async () => {
    discarded = true;
    await partial.discard();
  };
  const nonfinite = new NonFiniteLog(p);
  for (const [i, found] of partial.done) nonfinite.add(i, found);
  const dropCache = run.pageCache === 'drop' || (run.pageCache === 'auto' && p.totals.inputBytes > totalmem() / 2);
  const hasher = new OutputHasher(partial.dir, p, dropCache);
  for (const i of partial.done.keys()) hasher.chunkDone(p.chunks[i] as MergePlan['chunks'][number]);
  // NaN/Inf stops the merge at once unless they are only to be reported.
  const stopForNonfinite = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, stopForNonfinite.signal]) : stopForNonfinite.signal;
  try {
    const outBytes = (c: MergePlan['chunks'][number]) => c.ops.reduce((s, op) => s + opOutputBytes(op), 0);
    const remaining = p.chunks.reduce((s, c, i) => s + (partial.done.has(i) ? 0 : outBytes(c)), 0);
    try {
      await checkFreeSpace(target, remaining);
    } catch (e) {
      if (partial.done.size === 0) await discard();
      throw e;
    }
    if (nonfinite.any && run.onNonfinite !== 'warn') stopForNonfinite.abort();
    let stats: { bytesRead: number; bytesWritten: number } = { bytesRead: 0, bytesWritten: 0 };
    try {
      stats = await executePlan(p, {
        dir: partial.dir, pool, kernel, device, io: run.io, dropCache, write: run.write, skip: partial.done, signal,
        onChunkDone: (i, s) => {
          partial.chunkDone(i, s.nonfinite);
          hasher.chunkDone(p.chunks[i] as MergePlan['chunks'][number]);
          if (s.nonfinite.length === 0) return;
          nonfinite.add(i, s.nonfinite);
          if (run.onNonfinite !== 'warn') stopForNonfinite.abort();
        },
        ...(options.onProgress ? { onProgress: options.onProgress } : {}),
      });
    } catch (e) {
      if (!(stopForNonfinite.signal.aborted && !options.signal?.aborted && e instanceof PmaError && e.code === 'E_ABORTED')) throw e;
    }
    if (options.signal?.aborted) throw new PmaError('E_ABORTED', 'the merge was aborted');
    if (stopForNonfinite.signal.aborted) {
      if (run.onNonfinite === 'error') throw nonfinite.error();
      // skip-checkpoint: this plan's output is of no use; merge again without the culprits.
      await discard();
      return { retryWithout: nonfinite.byCheckpoint() };
    }
    // Inputs that changed under the merge may have given it a mix of old and new bytes.
    const changed = await changedInput(stamps);
    if (changed) {
      await discard();
      throw new PmaError('E_INPUT', `input ${changed.path} ${changed.change} during the merge; nothing was written to ${target}`, { file: changed.path });
    }
    const findings = nonfinite.findings();
    const leftOut = [...excluded].map(([path, reason]) => ({ path, reason }));
    const sums = await hasher.digests();
    await partial.complete();
    await finishOutput(partial.dir, target, p, { ...provenance(p, options, device), nonfinite: findings, leftOut }, run.force, sums, (f) => pool.hash(f));
    await partial.finished();
    const elapsedMs = performance.now() - start;
    return {
      out: target,
      plan: p,
      skipped,
      kernel,
      device: deviceName(device),
      ...(device.kind === 'cpu' && device.reason ? { deviceNote: `--device auto chose the CPU: ${device.reason}` } : {}),
      threads: run.threads,
      droppedCache: dropCache,
      resumedChunks: partial.done.size,
      nonfinite: findings,
      leftOut,
      bytesRead: stats.bytesRead,
      bytesWritten: stats.bytesWritten,
      elapsedMs,
      bytesPerSecond: p.totals.inputBytes / Math.max(elapsedMs / 1000, 1e-9),
    };
  } catch (e) {
    await hasher.close();
    if (discarded) throw e;
    // Whatever stopped the merge, the chunks already written stay, for --resume.
    await partial.suspend().catch(() => {});
    throw withResumeHint(e, partial.dir);
  }
}

function withResumeHint(e: unknown, dir: string): unknown {
  if (!(e instanceof PmaError)) return e;
  const hint = `; the work done so far is kept in ${dir}: run the same command with --resume to finish it`;
  const details: { file?: string; tensor?: string; cause: unknown } = { cause: e.cause ?? e };
  if (e.file) details.file = e.file;
  if (e.tensor) details.tensor = e.tensor;
  return new PmaError(e.code, e.message + hint, details);
}
