import { availableParallelism, totalmem } from 'node:os';

import { defaultThreads, deviceName, MIN_GPU_MEMORY_PER_THREAD, resolveDevice, type ResolvedDevice } from './devices.js';
import { PmaError } from './errors.js';
import { executePlan } from './exec/execute.js';
import { ChunkPool } from './exec/pool.js';
import { checkOutputPath, createStaging, discardStaging, finishStaging } from './exec/output-dir.js';
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

function provenance(p: MergePlan, options: MergeOptions, device: ResolvedDevice): unknown {
  return {
    tool: 'pma',
    version: VERSION,
    createdAt: new Date().toISOString(),
    method: p.method,
    alpha: p.alpha,
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
 * Merges checkpoints into `out`: plans, writes into a staging sibling with the native engine on a
 * worker pool, and renames into place when complete. Throws PmaError; leaves nothing at `out` on
 * failure or abort.
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
  const { plan: p, skipped } = await planMerge(options);
  const target = await checkOutputPath(run.out, p, run.force);
  options.onPlan?.(p, skipped);
  if (options.signal?.aborted) throw new PmaError('E_ABORTED', 'the merge was aborted');
  const staging = await createStaging(target, p);
  try {
    // Inputs that cannot all stay cached would only evict the rest of the machine's cache.
    const dropCache = run.pageCache === 'drop' || (run.pageCache === 'auto' && p.totals.inputBytes > totalmem() / 2);
    const execOpts = { dir: staging, pool, kernel, device, io: run.io, dropCache, write: run.write, ...(options.onProgress ? { onProgress: options.onProgress } : {}), ...(options.signal ? { signal: options.signal } : {}) };
    const stats = await executePlan(p, execOpts);
    if (options.signal?.aborted) throw new PmaError('E_ABORTED', 'the merge was aborted');
    await finishStaging(staging, target, p, provenance(p, options, device), run.force);
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
      bytesRead: stats.bytesRead,
      bytesWritten: stats.bytesWritten,
      elapsedMs,
      bytesPerSecond: p.totals.inputBytes / Math.max(elapsedMs / 1000, 1e-9),
    };
  } catch (e) {
    await discardStaging(staging);
    throw e;
  }
}
