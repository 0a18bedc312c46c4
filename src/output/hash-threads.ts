import { availableParallelism } from 'node:os';

import type { FileOp, HashValue, NativeThreads } from '../native.js';
import type { Checksum } from '../plan/types.js';
import { ChunkPool } from '../run/pool.js';

export type { FileOp, HashValue, MemberCrc } from '../native.js';

/**
 * Files hashed at once: a quarter of the cores, 1 to 8 (one pass hashes about as fast as the disks
 * of a small machine write; a merge with many shards on a large one keeps several busy), never
 * more than there are files.
 */
export function hashThreadCount(files: number): number {
  return Math.max(1, Math.min(files, 8, Math.floor(availableParallelism() / 4)));
}

/**
 * Hashing on the addon's chunk threads (BLAKE3, or SHA-256 from the OpenSSL inside Node): a merge's requests
 * go to the threads that run its chunks, so hashing takes its share of the cores instead of a
 * thread of its own competing with them, and no Node worker starts. A file's requests come one at
 * a time (OutputHasher sends the next when the last is answered), so its SHA-256 state is never
 * used by two threads at once, whichever thread takes each. The threads hold the process open
 * only while requests are in flight.
 */
export class HashThreads {
  private readonly threads: NativeThreads;
  /** The pool is this object's own (closed with it), not the engine's. */
  private readonly own: ChunkPool | null;

  /** `pool`: the engine's chunk threads; a number: start that many threads of its own. */
  constructor(pool: ChunkPool | number) {
    this.own = typeof pool === 'number' ? new ChunkPool(pool) : null;
    this.threads = (this.own ?? (pool as ChunkPool)).native;
  }

  /** One request about one file; a digest closes the file. */
  request(r: FileOp): Promise<HashValue> {
    return this.threads.hash(r);
  }

  /**
   * The checksum (hex) of a whole file, on the first free thread: a merge's companion files,
   * `pma verify`, finalizing a merge in parts.
   */
  async hashFile(path: string, checksum: Checksum): Promise<string> {
    return (await this.threads.hash({ op: 'file', path, checksum })).hex as string;
  }

  /** Closes the files being hashed (none may be in flight), and the threads if they are its own. */
  async close(): Promise<void> {
    this.threads.forgetHashes();
    await this.own?.close();
  }
}

/** The checksum of a whole file, hex. */
export type HashFile = (path: string, checksum: Checksum) => Promise<string>;

/**
 * Runs `f` with a hash of whole files on `threads` threads of its own, and stops them after.
 */
export async function withFileHashing<T>(threads: number, f: (hash: HashFile) => Promise<T>): Promise<T> {
  const t = new HashThreads(threads);
  try {
    return await f((path, checksum) => t.hashFile(path, checksum));
  } finally {
    await t.close();
  }
}
