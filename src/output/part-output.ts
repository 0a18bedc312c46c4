import type { MergeBreakdown } from '../run/breakdown.js';
import { rm, stat } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';

import { PmaError } from '../errors.js';
import type { PartSpec } from '../plan/parts.js';
import { chunkOutputBytes, chunksOfPart, type MergePlan } from '../plan/types.js';
import { eachAtOnce } from '../util/at-once.js';
import { fsyncSubdirs, makeDirs } from '../util/fs.js';
import { Lease } from '../util/lease.js';
import type { HashThreads } from './hash-threads.js';
import { OutputHasher } from './hasher.js';
import { Journal, type NonFiniteCounts } from './journal.js';
import type { OutputTarget } from './output.js';
import { createOutputFile, FILES_AT_ONCE, PartialOutput } from './partial.js';
import {
  joinPartial,
  partDir,
  readPartRecord,
  recordProblem,
  writePartRecord,
  type PartRecord,
  type PartsInfo,
} from './parts.js';
import { changedInput } from './stamps.js';
import { checkFreeSpace } from './target.js';

/** What a part's record says of the run that completed it, beside its files. */
export type PartRun = Pick<
  PartRecord,
  'device' | 'threads' | 'bytesRead' | 'bytesWritten' | 'nonfinite' | 'commandLine' | 'resumedChunks'
>;

/**
 * One part's share of a merge in parts (src/output/parts.ts): its output files in the shared
 * partial, its lease and journal. A rerun of a part resumes it (Kubernetes and Slurm rerun the same
 * command); a part found complete is not run again.
 */
export class PartOutput {
  /** After finish(): the seconds spent hashing and in fsync. */
  times: Pick<MergeBreakdown, 'hash' | 'fsync'> = { hash: { update: 0, read: 0, wait: 0 }, fsync: 0 };
  private written: number;
  private ended = false;
  private readonly startedAt = new Date();

  private constructor(
    private readonly plan: MergePlan,
    private readonly target: OutputTarget,
    readonly part: PartSpec,
    private readonly fingerprint: string,
    readonly dir: string,
    /** The chunks this part runs. */
    readonly chunks: readonly number[],
    private readonly files: readonly string[],
    private readonly partial: PartialOutput,
    private readonly hasher: OutputHasher,
    private readonly lease: Lease,
  ) {
    this.written = partial.done.size;
  }

  /**
   * Joins (or creates) the shared partial and takes this part's lease. Returns the part's record
   * instead when it is already complete, null when the merge's output is in place already.
   */
  static async open(
    plan: MergePlan,
    target: OutputTarget,
    part: PartSpec,
    info: PartsInfo,
    dropCache: boolean,
    hashing?: HashThreads,
  ): Promise<PartOutput | PartRecord | null> {
    const dir = await joinPartial(target.path, plan, target.stamps, info);
    if (dir === null) return null;
    const pdir = partDir(dir, part.index);
    await makeDirs(pdir);
    const lease = await Lease.acquire(join(pdir, 'lock'), `part ${part.index} of ${dir}`, 'pma merge part');
    try {
      const mine = plan.outputs.filter((_, i) => info.files[i]?.part === part.index);
      const files = mine.map((f) => f.name);
      const record = await readPartRecord(dir, part.index);
      if (record) {
        if ((await recordProblem(dir, info, part.index, record)) === null) {
          await lease.release();
          return record;
        }
        // A record that no longer holds (a file changed since): the part is done again.
        await rm(join(pdir, 'done.json'), { force: true });
        await rm(join(pdir, 'journal'), { force: true });
      }
      let done = await Journal.read(join(pdir, 'journal'));
      for (const f of mine) {
        const s = await stat(join(dir, f.name)).catch(() => null);
        if (!s || s.size !== f.size) done = new Map(); // a file lost: the part starts over
      }
      if (done.size === 0) {
        await rm(join(pdir, 'journal'), { force: true });
        await eachAtOnce(mine, FILES_AT_ONCE, async (f) => {
          await rm(join(dir, f.name), { force: true });
          await createOutputFile(join(dir, f.name), f);
        });
        await fsyncSubdirs(dir, files);
      }
      await rm(join(pdir, 'stopped-nonfinite'), { force: true });
      const partial = await PartialOutput.attach(dir, pdir, plan, files, done, () => lease.release());
      const hasher = new OutputHasher(dir, plan, dropCache, new Set(files), hashing);
      for (const i of done.keys()) hasher.chunkDone(plan.chunks[i] as MergePlan['chunks'][number]);
      const chunks = chunksOfPart(plan, part.index);
      return new PartOutput(plan, target, part, info.fingerprint, dir, chunks, files, partial, hasher, lease);
    } catch (e) {
      await lease.release();
      throw e;
    }
  }

  /** Chunks found done (a rerun), with the NaN/Inf counts each found. */
  get done(): ReadonlyMap<number, NonFiniteCounts> {
    return this.partial.done;
  }

  /** Checks that the rest of the part fits on the output's disk (E_NOSPACE). */
  async checkSpace(): Promise<void> {
    const remaining = this.chunks.reduce(
      (s, i) => s + (this.done.has(i) ? 0 : chunkOutputBytes(this.plan.chunks[i] as MergePlan['chunks'][0])),
      0,
    );
    await checkFreeSpace(this.target.path, remaining);
  }

  chunkDone(i: number, nonfinite: NonFiniteCounts): void {
    this.written++;
    this.partial.chunkDone(i, nonfinite);
    this.hasher.chunkDone(this.plan.chunks[i] as MergePlan['chunks'][number]);
  }

  /**
   * Every chunk of the part is written: checks that no input changed, hashes its files, and
   * records the part as complete (its files' sizes, times and sums), then lets go of its lease.
   */
  async finish(run: PartRun): Promise<PartRecord> {
    const changed = await changedInput(this.target.stamps);
    if (changed) {
      await this.discard();
      throw new PmaError(
        'E_INPUT',
        `input ${changed.path} ${changed.change} during the merge; part ${this.part.index}'s files were removed`,
        { file: changed.path },
      );
    }
    const t = performance.now();
    const sums = await this.hasher.digests();
    await this.hasher.close();
    const t1 = performance.now();
    await this.partial.flushAndClose();
    this.times = { hash: { ...this.hasher.seconds, wait: (t1 - t) / 1000 }, fsync: (performance.now() - t1) / 1000 };
    // Another process took the part over (this one stopped beating for too long): it is its to record.
    if (this.lease.lostTo) throw this.lease.lostTo;
    const files: PartRecord['files'] = {};
    for (const name of this.files) {
      const s = await stat(join(this.dir, name));
      files[name] = { size: s.size, mtimeMs: s.mtimeMs, sum: sums[name] };
    }
    const finishedAt = new Date();
    const record: PartRecord = {
      version: 1,
      fingerprint: this.fingerprint,
      part: this.part.index,
      count: this.part.count,
      source: this.part.source,
      host: hostname(),
      pid: process.pid,
      startedAt: this.startedAt.toISOString(),
      finishedAt: finishedAt.toISOString(),
      seconds: (finishedAt.getTime() - this.startedAt.getTime()) / 1000,
      ...run,
      files,
    };
    this.ended = true;
    try {
      await writePartRecord(this.dir, record);
    } finally {
      await this.partial.release();
    }
    return record;
  }

  /** Removes what the part wrote (its files and journal); the shared partial stays. */
  async discard(): Promise<void> {
    this.ended = true;
    await this.hasher.close();
    await this.partial.suspend();
    const pdir = partDir(this.dir, this.part.index);
    await rm(join(pdir, 'journal'), { force: true });
    for (const name of this.files) await rm(join(this.dir, name), { force: true });
  }

  /** After a failure: keeps what was written for a rerun, and returns the error saying so. */
  async fail(e: unknown): Promise<unknown> {
    await this.hasher.close();
    if (this.ended) return e;
    this.ended = true;
    const nonfinite = e instanceof PmaError && e.code === 'E_NONFINITE';
    await this.partial.suspend(nonfinite).catch(() => {});
    const hint = `; part ${this.part.index}'s ${this.written} chunk(s) written so far are kept in ${this.dir}: the same command (rerun by the scheduler) finishes the part`;
    return e instanceof PmaError ? e.withMessage(e.message + hint) : e;
  }
}
