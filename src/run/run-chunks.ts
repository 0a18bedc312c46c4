import { PmaError, isAbort } from '../errors.js';
import type { PlanChunk } from '../plan/types.js';
import type { ChunkPool } from './pool.js';

/** How far a run of chunks has come, reported as each chunk finishes. */
export interface Progress {
  bytesDone: number;
  bytesTotal: number;
  chunksDone: number;
  chunksTotal: number;
  elapsedMs: number;
}

/** What one chunk computes: merge and analyze differ only in this. */
export interface ChunkWork<R> {
  /** Runs chunk `index` on the pool; `cancel` is the shared flag the engine polls between blocks. */
  run(chunk: PlanChunk, index: number, cancel: Int32Array): Promise<R>;
  /** On the main thread, as each chunk finishes (in the order they finish). */
  done?(index: number, result: R): void;
}

export interface RunChunksOptions {
  /** Stops the dispatch, and the chunks in flight between two blocks: the run fails with E_ABORTED. */
  signal?: AbortSignal;
  /** Chunks already done (a resumed merge): not run, counted as done. */
  skip?: { has(i: number): boolean };
  /** The chunks this run is for (one part of a merge in parts), by index; the others are neither run nor counted. Default: all. */
  only?: readonly number[];
  onProgress?: (p: Progress) => void;
  /** What an abort is called in the error ("the merge", "the analysis"). */
  what?: string;
}

/**
 * Runs chunks on the pool, two per thread in flight so that every worker stays fed while the main
 * thread dispatches. The first failure, or an abort, stops the dispatch; it is rethrown once the
 * chunks in flight have settled, so no worker is killed in the middle of a write. An abort also
 * stops the chunks in flight between two blocks (a shared flag the engine polls), so it takes
 * effect within milliseconds, whatever the chunk size.
 */
export async function runChunks<R>(
  chunks: readonly PlanChunk[],
  pool: ChunkPool,
  work: ChunkWork<R>,
  o: RunChunksOptions = {},
): Promise<{ elapsedMs: number }> {
  const start = performance.now();
  const aborted = () => new PmaError('E_ABORTED', `${o.what ?? 'the merge'} was aborted`);
  if (o.signal?.aborted) throw aborted();
  const mine = o.only ?? chunks.map((_, i) => i);
  const bytesOf = (i: number) => (chunks[i] as PlanChunk).bytes;
  const total = mine.reduce((s, i) => s + bytesOf(i), 0);
  const todo = mine.filter((i) => !o.skip?.has(i));
  let next = 0;
  let done = mine.length - todo.length;
  let bytesDone = mine.reduce((s, i) => s + (o.skip?.has(i) ? bytesOf(i) : 0), 0);
  let failure: unknown;
  const cancel = new Int32Array(new SharedArrayBuffer(4));
  const stop = (): void => void Atomics.store(cancel, 0, 1);
  o.signal?.addEventListener('abort', stop, { once: true });
  const lane = async (): Promise<void> => {
    while (failure === undefined && next < todo.length) {
      if (o.signal?.aborted) {
        failure = aborted();
        break;
      }
      const i = todo[next++] as number;
      const chunk = chunks[i] as PlanChunk;
      try {
        const r = await work.run(chunk, i, cancel);
        work.done?.(i, r);
        done++;
        bytesDone += chunk.bytes;
        o.onProgress?.({
          bytesDone,
          bytesTotal: total,
          chunksDone: done,
          chunksTotal: mine.length,
          elapsedMs: performance.now() - start,
        });
      } catch (e) {
        failure ??= e;
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(todo.length, pool.threads * 2) }, lane));
  } finally {
    o.signal?.removeEventListener('abort', stop);
  }
  // A chunk the abort stopped names the tensor it was on; the caller wants the abort itself.
  if (isAbort(failure)) throw aborted();
  if (failure !== undefined) throw PmaError.from(failure);
  return { elapsedMs: performance.now() - start };
}
