import { createHash, type Hash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';

import { PmaError, fsError } from '../errors.js';
import { native } from '../native.js';
import { opOutputBytes, type MergePlan, type PlanChunk } from '../plan/types.js';

const READ_BLOCK = 8 * 2 ** 20;

interface FileState {
  path: string;
  size: number;
  hash: Hash;
  /** Bytes hashed so far: the file's prefix [0, pos). */
  pos: number;
  /** Finished byte ranges not yet hashed: start -> end. */
  ready: Map<number, number>;
  pump: Promise<void> | null;
  fh: FileHandle | null;
}

/**
 * SHA-256 of every output file, computed while the merge runs: as chunks finish, the finished
 * prefix of each file is read back (from the page cache, usually) and hashed, so that at the end
 * little is left to hash. Hashing is sequential per file; this keeps it off the critical path.
 */
export class OutputHasher {
  private readonly files = new Map<string, FileState>();
  private failure: PmaError | null = null;
  // Once closed, no file is opened again (a handle left to the garbage collector is a leak).
  private closed = false;

  constructor(
    dir: string,
    plan: MergePlan,
    private readonly dropCache: boolean,
  ) {
    for (const f of plan.outputs) {
      const head = 8 + Buffer.byteLength(f.header, 'utf8');
      // The 8-byte length and the header were written when the file was created.
      this.files.set(f.name, {
        path: join(dir, f.name),
        size: f.size,
        hash: createHash('sha256'),
        pos: 0,
        ready: new Map([[0, head]]),
        pump: null,
        fh: null,
      });
    }
  }

  /** The chunk's output ranges are on disk (written, or found done by a resume). */
  chunkDone(chunk: PlanChunk): void {
    for (const op of chunk.ops) {
      const n = opOutputBytes(op);
      const f = this.files.get(chunk.outputs[op.outFile] as string);
      if (!f || n === 0) continue;
      f.ready.set(op.outOffset, op.outOffset + n);
      this.kick(f);
    }
  }

  private kick(f: FileState): void {
    if (f.pump || !f.ready.has(f.pos) || this.failure || this.closed) return;
    f.pump = this.advance(f)
      .catch((e: unknown) => {
        this.failure ??= fsError(e, 'cannot hash the output', f.path);
      })
      .finally(() => {
        f.pump = null;
        this.kick(f);
      });
  }

  /** Hashes forward while the range at the frontier is ready. */
  private async advance(f: FileState, untilEnd = false): Promise<void> {
    f.fh ??= await open(f.path, 'r');
    const buf = Buffer.allocUnsafe(READ_BLOCK);
    for (;;) {
      let end = f.ready.get(f.pos);
      if (end === undefined) {
        if (!untilEnd || f.pos >= f.size) return;
        end = f.size; // at the end, whatever is left (gaps between tensors, if any) is read too
      }
      f.ready.delete(f.pos);
      // Ranges that follow on are read as one: a file of a million tiny tensors is read in
      // large blocks, not one call per tensor.
      for (let next = f.ready.get(end); next !== undefined; next = f.ready.get(end)) {
        f.ready.delete(end);
        end = next;
      }
      const start = f.pos;
      while (f.pos < end) {
        const want = Math.min(READ_BLOCK, end - f.pos);
        const { bytesRead } = await f.fh.read(buf, 0, want, f.pos);
        if (bytesRead <= 0)
          throw new PmaError(
            'E_IO',
            `cannot hash the output ${f.path}: it ends at ${f.pos}, expected ${f.size} bytes`,
            { file: f.path },
          );
        f.hash.update(buf.subarray(0, bytesRead));
        f.pos += bytesRead;
      }
      if (this.dropCache && end > start) native().dropCache(f.path, start, end - start);
    }
  }

  /** Once every chunk is done: finishes each file's hash; name -> hex digest. */
  async digests(): Promise<Record<string, string>> {
    try {
      for (const f of this.files.values()) {
        while (f.pump) await f.pump;
        if (this.failure) throw this.failure;
        await this.advance(f, true).catch((e: unknown) => {
          throw fsError(e, 'cannot hash the output', f.path);
        });
      }
      return Object.fromEntries([...this.files].map(([name, f]) => [name, f.hash.digest('hex')]));
    } finally {
      await this.close();
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const f of this.files.values()) {
      while (f.pump) await f.pump.catch(() => {});
      await f.fh?.close().catch(() => {});
      f.fh = null;
    }
  }
}
