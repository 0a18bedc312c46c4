import { stat } from 'node:fs/promises';
import { join } from 'node:path';

import { PmaError } from '../errors.js';
import type { MergeBreakdown } from '../run/breakdown.js';
import { chunkOutputBytes, type MergePlan } from '../plan/types.js';
import { finishOutput } from './finish.js';
import type { HashThreads } from './hash-threads.js';
import { OutputHasher } from './hasher.js';
import type { NonFiniteCounts } from './journal.js';
import { PartialOutput } from './partial.js';
import { changedInput, stampInputs, type InputStamp } from './stamps.js';
import { checkFreeSpace, checkOutputPath } from './target.js';

/** Where a merge's output goes, checked before anything is written. */
export interface OutputTarget {
  /** The output's real path. */
  path: string;
  /** The input files as they were when the merge began. */
  stamps: InputStamp[];
}

/**
 * Refuses an output inside (or holding) an input checkpoint, or one that exists without `force`,
 * and stamps the inputs.
 */
export async function checkTarget(plan: MergePlan, out: string, force: boolean): Promise<OutputTarget> {
  const path = await checkOutputPath(out, plan, force);
  return { path, stamps: await stampInputs(plan) };
}

export interface OpenOutputOptions {
  resume: boolean;
  force: boolean;
  /** Drop the output's pages from the page cache once hashed. */
  dropCache: boolean;
  /** The hash threads (the engine's), else the output starts its own. */
  hashing?: HashThreads;
}

/**
 * A merge's output while it is written: the partial directory with its journal, and the checksum
 * of every output file, computed as each file's prefix is finished. It ends in one of three ways:
 * finish() (renamed into place), fail() (left for --resume) or discard() (removed).
 */
export class MergeOutput {
  private ended = false;
  /** Chunks on disk: found done, plus written by this merge. */
  private written: number;

  private constructor(
    private readonly plan: MergePlan,
    private readonly target: OutputTarget,
    private readonly partial: PartialOutput,
    private readonly hasher: OutputHasher,
  ) {
    this.written = partial.done.size;
  }

  /** Creates (or resumes) the partial output. */
  static async open(plan: MergePlan, target: OutputTarget, o: OpenOutputOptions): Promise<MergeOutput> {
    const partial = await PartialOutput.open(target.path, plan, target.stamps, { resume: o.resume, force: o.force });
    const hasher = new OutputHasher(partial.dir, plan, o.dropCache, undefined, o.hashing);
    for (const i of partial.done.keys()) hasher.chunkDone(plan.chunks[i] as MergePlan['chunks'][number]);
    return new MergeOutput(plan, target, partial, hasher);
  }

  /**
   * Checks that the rest of the merge fits on the output's disk (E_NOSPACE); a fresh partial is
   * then removed. Blocks the output files already hold (reserved when they were made, or written)
   * need no more room: a fresh output was checked whole before its files were made and reserved.
   */
  async checkSpace(): Promise<void> {
    const remaining = this.plan.chunks.reduce((s, c, i) => s + (this.done.has(i) ? 0 : chunkOutputBytes(c)), 0);
    let unallocated = 0;
    for (const f of this.plan.outputs) {
      const st = await stat(join(this.partial.dir, f.name));
      unallocated += Math.max(0, f.size - st.blocks * 512);
    }
    try {
      await checkFreeSpace(this.target.path, Math.min(remaining, unallocated));
    } catch (e) {
      if (this.done.size === 0) await this.discard();
      throw e;
    }
  }

  /** The directory being written. */
  get dir(): string {
    return this.partial.dir;
  }

  /** Chunks found done (a resume), with the NaN/Inf counts each found. */
  get done(): ReadonlyMap<number, NonFiniteCounts> {
    return this.partial.done;
  }

  /** Chunk i's bytes are written: journal it, and hash what now follows on in its files. */
  chunkDone(i: number, nonfinite: NonFiniteCounts): void {
    this.written++;
    this.partial.chunkDone(i, nonfinite);
    this.hasher.chunkDone(this.plan.chunks[i] as MergePlan['chunks'][number]);
  }

  /**
   * Every chunk is written: checks that no input changed under the merge (else discards it), then
   * writes the index, companion files and pma.json (`record` plus the checksums), and renames the
   * output into place. Returns the seconds spent hashing and in fsync.
   */
  async finish(record: Record<string, unknown>, force: boolean): Promise<Pick<MergeBreakdown, 'hash' | 'fsync'>> {
    const changed = await changedInput(this.target.stamps);
    if (changed) {
      await this.discard();
      throw new PmaError(
        'E_INPUT',
        `input ${changed.path} ${changed.change} during the merge; nothing was written to ${this.target.path}`,
        { file: changed.path },
      );
    }
    const t = performance.now();
    const sums = await this.hasher.digests();
    const wait = (performance.now() - t) / 1000;
    await this.partial.complete();
    // A failure from here on leaves the resume data beside the partial; a resume puts it back.
    let fsync: number;
    try {
      fsync = await finishOutput(this.partial.dir, this.target.path, this.plan, record, force, sums, (p) =>
        this.hasher.hashFile(p),
      );
    } finally {
      await this.hasher.close();
    }
    this.ended = true;
    await this.partial.finished();
    return { hash: { ...this.hasher.seconds, wait }, fsync };
  }

  /** Removes the partial output. */
  async discard(): Promise<void> {
    this.ended = true;
    await this.hasher.close();
    await this.partial.discard();
  }

  /**
   * After a failure (an abort included): keeps what was written for --resume, and returns the
   * error to throw, which then says how to finish the merge; an output already discarded or
   * finishing is left as it is.
   */
  async fail(e: unknown): Promise<unknown> {
    await this.hasher.close();
    if (this.ended) return e;
    if (this.written === 0) {
      // Nothing to resume: nothing is left behind either.
      await this.discard().catch(() => {});
      return e;
    }
    this.ended = true;
    const nonfinite = e instanceof PmaError && e.code === 'E_NONFINITE';
    await this.partial.suspend(nonfinite).catch(() => {});
    const hint = nonfinite
      ? `; the ${this.written} chunk(s) merged so far are kept in ${this.partial.dir}, where the same command with --on-nonfinite skip-checkpoint or warn takes them up (no --resume needed)`
      : `; the work done so far is kept in ${this.partial.dir}: run the same command with --resume to finish it`;
    return e instanceof PmaError ? e.withMessage(e.message + hint) : e;
  }
}
