import { open, readFile, type FileHandle } from 'node:fs/promises';

import { fsError } from '../errors.js';
import type { ChunkStats } from '../native.js';

/** NaN/Inf counts a chunk found in its inputs, kept with its journal line. */
export type NonFiniteCounts = ChunkStats['nonfinite'];

// How often finished chunks are made durable: what a crash can cost, against one fdatasync each time.
const FLUSH_EVERY_MS = 250;

/**
 * The record of chunks whose bytes are on disk: one line per chunk, "<i>" or "<i> <counts JSON>".
 * Lines are written in batches: `beforeFlush` (the output files' fdatasync) runs first, then the
 * ids of the chunks that had finished before are appended and the journal is fsync'ed, so an id
 * is never on disk before its bytes.
 */
export class Journal {
  private pending: string[] = [];
  private flushing: Promise<void> | null = null;
  private lastFlush = performance.now();
  private closed = false;

  private constructor(
    private readonly fh: FileHandle,
    /** Named in errors. */
    private readonly where: string,
    private readonly beforeFlush: () => Promise<void>,
  ) {}

  static async open(path: string, where: string, beforeFlush: () => Promise<void>): Promise<Journal> {
    return new Journal(await open(path, 'a'), where, beforeFlush);
  }

  /** The chunks a journal records as done, with their counts. A line cut short by a crash does not count. */
  static async read(path: string): Promise<Map<number, NonFiniteCounts>> {
    const text = await readFile(path, 'utf8').catch(() => '');
    const done = new Map<number, NonFiniteCounts>();
    const lines = text.split('\n');
    lines.pop(); // the last line has no newline yet: cut short, or empty
    for (const l of lines) {
      const m = /^(\d+)(?: (\[.*\]))?$/.exec(l);
      if (!m) continue;
      let counts: NonFiniteCounts = [];
      try {
        if (m[2]) counts = JSON.parse(m[2]) as NonFiniteCounts;
      } catch {
        continue;
      }
      done.set(Number(m[1]), counts);
    }
    return done;
  }

  /** Records chunk i as written; made durable by the next flush (a quarter of a second later at most). */
  record(i: number, nonfinite: NonFiniteCounts): void {
    this.pending.push(nonfinite.length > 0 ? `${i} ${JSON.stringify(nonfinite)}` : String(i));
    if (!this.flushing && performance.now() - this.lastFlush > FLUSH_EVERY_MS) void this.flush().catch(() => {});
  }

  /** Makes every chunk recorded so far durable. */
  async flush(): Promise<void> {
    while (this.flushing) await this.flushing.catch(() => {});
    if (this.pending.length === 0 || this.closed) return;
    const ids = this.pending.splice(0);
    this.flushing = (async () => {
      try {
        await this.beforeFlush();
        await this.fh.appendFile(ids.map((l) => `${l}\n`).join(''));
        await this.fh.datasync();
      } catch (e) {
        this.pending.unshift(...ids);
        throw fsError(e, 'cannot record progress in', this.where);
      } finally {
        this.lastFlush = performance.now();
      }
    })();
    try {
      await this.flushing;
    } finally {
      this.flushing = null;
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.fh.close().catch(() => {});
  }
}
