import { join } from 'node:path';

import type { ResolvedDevice } from '../devices.js';
import { PmaError } from '../errors.js';
import type { ChunkStats, IoMode, KernelChoice, NativeChunk, WriteMode } from '../native.js';
import type { Progress } from '../options.js';
import type { MergePlan } from '../plan/types.js';
import { ChunkPool } from './pool.js';

export interface ExecuteOptions {
  /** Directory the plan's output files already exist in (headers written, sized). */
  dir: string;
  /** The workers; the caller owns it (starts it early, closes it). */
  pool: ChunkPool;
  kernel: KernelChoice;
  /** Chunks go to the GPUs in turn (chunk i on device i mod n), or all to the CPU. */
  device: ResolvedDevice;
  io: IoMode;
  dropCache: boolean;
  write: WriteMode;
  onProgress?: (p: Progress) => void;
  signal?: AbortSignal;
  /** Chunks already on disk (a resumed merge): not run, counted as done. */
  skip?: { has(i: number): boolean };
  /** Called as each chunk's bytes are written, with what the engine saw. */
  onChunkDone?: (i: number, stats: ChunkStats) => void;
}

export interface ExecuteStats {
  bytesRead: number;
  bytesWritten: number;
  elapsedMs: number;
}

/**
 * Runs every chunk of the plan on a pool of worker threads, a bounded number in flight. The first
 * failure, or an abort, stops the dispatch of new chunks; it is rethrown once the chunks in flight
 * have settled, so no worker is killed in the middle of a write. An abort also stops the chunks in
 * flight between two blocks (a shared flag the engine polls), so it takes effect within milliseconds.
 */
export async function executePlan(plan: MergePlan, o: ExecuteOptions): Promise<ExecuteStats> {
  const start = performance.now();
  const total = plan.chunks.reduce((s, c) => s + c.bytes, 0);
  const stats: ExecuteStats = { bytesRead: 0, bytesWritten: 0, elapsedMs: 0 };
  if (o.signal?.aborted) throw new PmaError('E_ABORTED', 'the merge was aborted');
  if (plan.chunks.length === 0) return stats;
  const pool = o.pool;
  const todo = plan.chunks.map((_, i) => i).filter((i) => !o.skip?.has(i));
  let next = 0;
  let done = plan.chunks.length - todo.length;
  let bytesDone = plan.chunks.reduce((s, c, i) => s + (o.skip?.has(i) ? c.bytes : 0), 0);
  let failure: unknown;
  // Chunks in flight stop within one block when the merge is aborted, not at their end.
  const cancel = new Int32Array(new SharedArrayBuffer(4));
  const stop = (): void => void Atomics.store(cancel, 0, 1);
  o.signal?.addEventListener('abort', stop, { once: true });
  const gpus = o.device.kind === 'cuda' ? o.device.devices.map((d) => d.index) : [];
  // Every worker may hold staging slots on every GPU it is given chunks for.
  const gpuMemory = o.device.kind === 'cuda' ? Math.floor(o.device.memory / pool.threads) : 0;
  const task = (i: number): NativeChunk => {
    const c = plan.chunks[i] as MergePlan['chunks'][number];
    return {
      inputs: c.inputs,
      outputs: c.outputs.map((name) => join(o.dir, name)),
      weights32: plan.weights.w32,
      weights64: plan.weights.w64,
      accumulate: plan.accumulate,
      kernel: o.kernel,
      io: o.io,
      dropCache: o.dropCache,
      write: o.write,
      device: gpus.length > 0 ? (gpus[i % gpus.length] as number) : -1,
      gpuMemory,
      cancel,
      ops: c.ops,
    };
  };
  const lane = async (): Promise<void> => {
    while (failure === undefined && next < todo.length) {
      if (o.signal?.aborted) {
        failure = new PmaError('E_ABORTED', 'the merge was aborted');
        break;
      }
      const i = todo[next++] as number;
      try {
        const s = await pool.run(task(i));
        stats.bytesRead += s.bytesRead;
        stats.bytesWritten += s.bytesWritten;
        o.onChunkDone?.(i, s);
        done++;
        bytesDone += (plan.chunks[i] as MergePlan['chunks'][number]).bytes;
        o.onProgress?.({ bytesDone, bytesTotal: total, chunksDone: done, chunksTotal: plan.chunks.length, elapsedMs: performance.now() - start });
      } catch (e) {
        failure ??= e;
      }
    }
  };
  // Two chunks per thread in flight keeps every worker fed while the main thread dispatches.
  try {
    await Promise.all(Array.from({ length: Math.min(todo.length, pool.threads * 2) }, lane));
  } finally {
    o.signal?.removeEventListener('abort', stop);
  }
  // A chunk the abort stopped names the tensor it was on; the caller wants the abort itself.
  if (failure instanceof PmaError && failure.code === 'E_ABORTED') throw new PmaError('E_ABORTED', 'the merge was aborted');
  if (failure !== undefined) throw failure;
  stats.elapsedMs = performance.now() - start;
  return stats;
}
