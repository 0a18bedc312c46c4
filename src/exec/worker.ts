import { PmaError } from '../errors.js';
import { native, type ChunkStats, type NativeChunk } from '../native.js';

export type WorkerReply = { ok: true; stats: ChunkStats } | { ok: false; code: string; message: string; file?: string; tensor?: string };

/**
 * Piscina worker: one native call per chunk. Failures are returned as data, since an Error's own
 * fields (code, file, tensor) do not all survive the trip between threads.
 */
export default function runChunk(chunk: NativeChunk): WorkerReply {
  try {
    return { ok: true, stats: native().runChunk(chunk) };
  } catch (e) {
    const err = e instanceof PmaError ? e : new PmaError('E_INTERNAL', String((e as Error)?.message ?? e));
    const reply: WorkerReply = { ok: false, code: err.code, message: err.message };
    if (err.file) reply.file = err.file;
    if (err.tensor) reply.tensor = err.tensor;
    return reply;
  }
}
