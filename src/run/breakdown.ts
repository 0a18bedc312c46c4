import type { EngineSeconds } from '../native.js';

/**
 * Where a merge's time went, in seconds: the wall time of its phases, and what its threads did.
 * The engine's threads run side by side, so their seconds add up to more than the run's wall
 * time when there are several; the same threads hash the output meanwhile (src/output/hash-threads.ts).
 */
export interface MergeBreakdown {
  /** The whole merge() call. */
  wall: number;
  /** Reading the headers, planning, opening the output. */
  plan: number;
  /** Running the chunks. */
  run: number;
  /** After the last chunk: the rest of the hashing, the index and pma.json, fsync, rename. */
  finish: number;
  /** The engine's threads, summed: reading, scanning for NaN/Inf, arithmetic, writing. */
  engine: { total: number; read: number; scan: number; compute: number; write: number };
  /**
   * Wall seconds of `run` during which a direct write (--write direct, the CPU's default) was on
   * its way to the disk: near `run`, the disk was the bound; well under it, the disk waited for
   * the cores. 0 when the output went through the page cache, and on GPUs (whose pipeline writes
   * from threads of its own).
   */
  disk: number;
  /**
   * The checksum of the output: thread seconds spent hashing and reading the output back; and
   * the part of `finish` spent waiting for it to catch up.
   */
  hash: { update: number; read: number; wait: number };
  /** Waiting for the output's fsync, in `finish`. */
  fsync: number;
}

/** What a merge measures of its time before it knows its wall time. */
export type PhaseTimes = Omit<MergeBreakdown, 'wall'>;

/** The times of a merge that ran nothing after planning for `plan` seconds (a part found complete). */
export function planOnly(plan: number): PhaseTimes {
  return {
    plan,
    run: 0,
    finish: 0,
    engine: { total: 0, read: 0, scan: 0, compute: 0, write: 0 },
    disk: 0,
    hash: { update: 0, read: 0, wait: 0 },
    fsync: 0,
  };
}

/** The engine's seconds of every chunk, added up. */
export class EngineClock {
  readonly total: EngineSeconds = { engine: 0, read: 0, scan: 0, write: 0 };

  add(s: EngineSeconds): void {
    this.total.engine += s.engine;
    this.total.read += s.read;
    this.total.scan += s.scan;
    this.total.write += s.write;
  }

  get breakdown(): MergeBreakdown['engine'] {
    const t = this.total;
    return {
      total: t.engine,
      read: t.read,
      scan: t.scan,
      write: t.write,
      compute: Math.max(0, t.engine - t.read - t.scan - t.write),
    };
  }
}

/** Seconds rounded to the microsecond, for JSON that stays readable. */
export function roundSeconds(x: number): number {
  return Math.round(x * 1e6) / 1e6;
}

/**
 * One breakdown from several, figure by figure: `f` gets that figure of each (the median of
 * several runs, or one run's figure rounded).
 */
export function combineBreakdowns(bs: MergeBreakdown[], f: (xs: number[]) => number): MergeBreakdown {
  const m = (g: (b: MergeBreakdown) => number) => f(bs.map(g));
  return {
    wall: m((b) => b.wall),
    plan: m((b) => b.plan),
    run: m((b) => b.run),
    finish: m((b) => b.finish),
    engine: {
      total: m((b) => b.engine.total),
      read: m((b) => b.engine.read),
      scan: m((b) => b.engine.scan),
      compute: m((b) => b.engine.compute),
      write: m((b) => b.engine.write),
    },
    disk: m((b) => b.disk),
    hash: { update: m((b) => b.hash.update), read: m((b) => b.hash.read), wait: m((b) => b.hash.wait) },
    fsync: m((b) => b.fsync),
  };
}

/** Every figure rounded to the microsecond. */
export function rounded(b: MergeBreakdown): MergeBreakdown {
  return combineBreakdowns([b], ([x]) => roundSeconds(x as number));
}
