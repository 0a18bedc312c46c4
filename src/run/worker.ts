import { createHash } from 'node:crypto';
import { closeSync, openSync } from 'node:fs';

import { PmaError, fsError, type PmaErrorWire } from '../errors.js';
import { HASH_BLOCK, hashRange } from '../output/hash-range.js';
import { native, type ChunkStats, type NativeAnalysis, type NativeChunk, type OpMoments } from '../native.js';

/**
 * The piscina worker: one native call per task. A reply is plain data either way: a failure
 * travels as a PmaError's wire form (code, message, file, tensor, stack), since an Error's own
 * fields do not survive the trip between threads.
 */
export type WorkerReply<T> = { ok: true; value: T } | { ok: false; error: PmaErrorWire };

function reply<T>(f: () => T): WorkerReply<T> {
  try {
    return { ok: true, value: f() };
  } catch (e) {
    return { ok: false, error: PmaError.from(e).toWire() };
  }
}

/** A merge chunk as the engine sends it: on GPUs (`gpus` not empty) the worker picks its own. */
export interface WorkerChunk {
  chunk: NativeChunk;
  gpus: number[];
  /** Shared by the engine's workers: each takes the next number once, and merges on that GPU. */
  gpuCounter: Int32Array;
}

// This worker's turn in the engine's GPU counter, taken on its first GPU chunk. A pool belongs to
// one engine, so a worker never serves two.
let gpuTurn: number | undefined;

/** A merge chunk: reads, merges and writes. */
export function mergeChunk(w: WorkerChunk): WorkerReply<ChunkStats> {
  return reply(() => {
    if (w.gpus.length === 0) return native().runChunk(w.chunk);
    gpuTurn ??= Atomics.add(w.gpuCounter, 0, 1);
    return native().runChunk({ ...w.chunk, device: w.gpus[gpuTurn % w.gpus.length] as number });
  });
}

/** pma analyze: the chunk's moments instead of a merge. */
export function analyzeChunk(reads: NativeAnalysis): WorkerReply<OpMoments[]> {
  return reply(() => native().analyzeChunk(reads));
}

/** SHA-256 of a whole file, hex, on a worker so that several files hash at once. */
export function hashFile(path: string): WorkerReply<string> {
  return reply(() => {
    let fd = -1;
    try {
      fd = openSync(path, 'r');
      const h = createHash('sha256');
      hashRange(fd, path, 0, Infinity, h, Buffer.allocUnsafe(HASH_BLOCK));
      return h.digest('hex');
    } catch (e) {
      throw fsError(e, 'cannot read', path);
    } finally {
      if (fd >= 0) closeSync(fd);
    }
  });
}
