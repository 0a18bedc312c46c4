import { PmaError, isAbort } from '../errors.js';
import type { NonFiniteCounts } from '../output/journal.js';
import type { MergePlan } from '../plan/types.js';
import type { Engine } from '../run/engine.js';
import { runChunks } from '../run/run-chunks.js';
import { EngineClock } from '../run/breakdown.js';
import { NonFiniteLog } from './nonfinite.js';
import type { MergeOptions, ResolvedMergeOptions } from './options.js';

const aborted = () => new PmaError('E_ABORTED', 'the merge was aborted');

export interface Written {
  bytesRead: number;
  bytesWritten: number;
  nonfinite: NonFiniteLog;
  /** The engine's seconds, summed over the chunks run. */
  engine: EngineClock;
  /** Wall seconds the direct writes of these chunks kept the disk busy. */
  disk: number;
  /** With --on-nonfinite skip-checkpoint: the checkpoints to leave out of a new plan, with why. */
  leaveOut: Map<string, string> | null;
}

/** Where writeChunks writes: a whole merge's output, or one part's. */
interface ChunkSink {
  readonly dir: string;
  readonly done: ReadonlyMap<number, NonFiniteCounts>;
  chunkDone(i: number, nonfinite: NonFiniteCounts): void;
}

/**
 * Runs the chunks the output lacks (of `only`, a part's chunks, when given), journaling each as
 * its bytes land. NaN or Inf in an input stops the run at once unless they are only to be reported
 * (--on-nonfinite warn).
 */
export async function writeChunks(
  plan: MergePlan,
  output: ChunkSink,
  engine: Engine,
  dropCache: boolean,
  o: ResolvedMergeOptions,
  options: MergeOptions,
  only?: readonly number[],
): Promise<Written> {
  const w: Written = {
    bytesRead: 0,
    bytesWritten: 0,
    nonfinite: new NonFiniteLog(plan),
    engine: new EngineClock(),
    disk: 0,
    leaveOut: null,
  };
  const diskBefore = engine.pool.native.diskBusy().seconds;
  for (const [i, found] of output.done) w.nonfinite.add(i, found);
  const stopForNonfinite = new AbortController();
  if (w.nonfinite.any && o.onNonfinite !== 'warn') stopForNonfinite.abort();
  const signal = options.signal ? AbortSignal.any([options.signal, stopForNonfinite.signal]) : stopForNonfinite.signal;
  try {
    await runChunks(
      plan.chunks,
      engine.pool,
      {
        run: (_, i, cancel) => engine.mergeChunk(plan, i, output.dir, cancel, dropCache),
        done: (i, s) => {
          w.bytesRead += s.bytesRead;
          w.bytesWritten += s.bytesWritten;
          w.engine.add(s.seconds);
          output.chunkDone(i, s.nonfinite);
          if (s.nonfinite.length === 0) return;
          w.nonfinite.add(i, s.nonfinite);
          if (o.onNonfinite !== 'warn') stopForNonfinite.abort();
        },
      },
      {
        signal,
        skip: output.done,
        ...(only ? { only } : {}),
        ...(options.onProgress ? { onProgress: options.onProgress } : {}),
      },
    );
  } catch (e) {
    // Stopped for NaN/Inf, not by the caller: decided below.
    if (!(stopForNonfinite.signal.aborted && !options.signal?.aborted && isAbort(e))) throw e;
  }
  // A chunk settles once its writes are on disk: none is in flight now.
  w.disk = engine.pool.native.diskBusy().seconds - diskBefore;
  if (options.signal?.aborted) throw aborted();
  if (stopForNonfinite.signal.aborted) {
    if (o.onNonfinite === 'error') throw w.nonfinite.error();
    // skip-checkpoint: this plan's output is of no use; merge again without the culprits.
    w.leaveOut = w.nonfinite.byCheckpoint();
  }
  return w;
}
