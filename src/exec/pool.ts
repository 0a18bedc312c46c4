import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { Piscina } from 'piscina';

import { PmaError, isPmaErrorCode } from '../errors.js';
import { PACKAGE_ROOT, type ChunkStats, type NativeChunk, type OpMoments } from '../native.js';
import type { AnalyzeReply, HashReply, WorkerReply } from './worker.js';

/**
 * Worker threads run compiled JavaScript. When pma itself runs from TypeScript sources (the test
 * runner), the workers still use the build in dist/, which `npm test` compiles first.
 */
function workerFile(): string {
  const here = import.meta.url;
  return here.endsWith('.ts') ? join(PACKAGE_ROOT, 'dist', 'exec', 'worker.js') : fileURLToPath(new URL('./worker.js', here));
}

export class ChunkPool {
  private readonly pool: Piscina;

  constructor(readonly threads: number) {
    this.pool = new Piscina({ filename: workerFile(), minThreads: threads, maxThreads: threads, idleTimeout: 60_000 });
  }

  // No AbortSignal is handed to piscina: it would kill a worker in the middle of a write. The
  // executor stops dispatching instead, and sets the chunk's cancel flag, which the engine polls.
  async run(chunk: NativeChunk): Promise<ChunkStats> {
    return (await this.call<WorkerReply>(chunk, 'default')).stats;
  }

  /** The chunk's moments for pma analyze (reads only). */
  async analyze(chunk: NativeChunk): Promise<OpMoments[]> {
    return (await this.call<AnalyzeReply>(chunk, 'analyzeChunk')).moments;
  }

  private async call<R extends WorkerReply | AnalyzeReply>(chunk: NativeChunk, name: string): Promise<Extract<R, { ok: true }>> {
    let reply: R;
    try {
      reply = (await this.pool.run(chunk, { name })) as R;
    } catch (e) {
      throw new PmaError('E_INTERNAL', `worker failed: ${(e as Error)?.message ?? e}`, { cause: e });
    }
    if (reply.ok) return reply as Extract<R, { ok: true }>;
    const details: { file?: string; tensor?: string } = {};
    if (reply.file) details.file = reply.file;
    if (reply.tensor) details.tensor = reply.tensor;
    throw new PmaError(isPmaErrorCode(reply.code) ? reply.code : 'E_INTERNAL', reply.message, details);
  }

  /** SHA-256 of a file, hex, computed on a worker thread. */
  async hash(path: string): Promise<string> {
    const reply = (await this.pool.run(path, { name: 'hashFile' })) as HashReply;
    if (reply.ok) return reply.sha256;
    throw new PmaError(isPmaErrorCode(reply.code) ? reply.code : 'E_IO', reply.message, reply.file ? { file: reply.file } : {});
  }

  async close(): Promise<void> {
    await this.pool.destroy();
  }
}
