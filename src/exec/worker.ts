import { createHash } from 'node:crypto';
import { closeSync, openSync, readSync } from 'node:fs';

import { PmaError } from '../errors.js';
import { native, type ChunkStats, type NativeChunk, type OpMoments } from '../native.js';

type Failure = { ok: false; code: string; message: string; file?: string; tensor?: string };
export type WorkerReply = { ok: true; stats: ChunkStats } | Failure;
export type AnalyzeReply = { ok: true; moments: OpMoments[] } | Failure;
export type HashReply = { ok: true; sha256: string } | { ok: false; code: string; message: string; file?: string };

/**
 * Piscina worker: one native call per chunk. Failures are returned as data, since an Error's own
 * fields (code, file, tensor) do not all survive the trip between threads.
 */
export default function runChunk(chunk: NativeChunk): WorkerReply {
  try {
    return { ok: true, stats: native().runChunk(chunk) };
  } catch (e) {
    return failure(e);
  }
}

/** pma analyze: the chunk's moments instead of a merge. */
export function analyzeChunk(chunk: NativeChunk): AnalyzeReply {
  try {
    return { ok: true, moments: native().analyzeChunk(chunk) };
  } catch (e) {
    return failure(e);
  }
}

function failure(e: unknown): Failure {
  const err = e instanceof PmaError ? e : new PmaError('E_INTERNAL', String((e as Error)?.message ?? e));
  const reply: Failure = { ok: false, code: err.code, message: err.message };
  if (err.file) reply.file = err.file;
  if (err.tensor) reply.tensor = err.tensor;
  return reply;
}

const HASH_BLOCK = 8 * 2 ** 20;

/** SHA-256 of a whole file, on a worker so that several files hash at once. */
export function hashFile(path: string): HashReply {
  let fd = -1;
  try {
    fd = openSync(path, 'r');
    const h = createHash('sha256');
    const buf = Buffer.allocUnsafe(HASH_BLOCK);
    for (;;) {
      const n = readSync(fd, buf, 0, HASH_BLOCK, null);
      if (n === 0) break;
      h.update(buf.subarray(0, n));
    }
    return { ok: true, sha256: h.digest('hex') };
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    return { ok: false, code: 'E_IO', message: `cannot read ${path}: ${err.code ?? ''} ${err.message}`.trim(), file: path };
  } finally {
    if (fd >= 0) closeSync(fd);
  }
}
