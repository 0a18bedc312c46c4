import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { Piscina } from 'piscina';

import { PmaError, isPmaErrorCode } from '../errors.js';
import { PACKAGE_ROOT, type ChunkStats, type NativeChunk } from '../native.js';
import type { HashReply, WorkerReply } from './worker.js';

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
    let reply: WorkerReply;
    try {
      reply = (await this.pool.run(chunk)) as WorkerReply;
    } catch (e) {
      throw new PmaError('E_INTERNAL', `worker failed: ${(e as Error)?.message ?? e}`, { cause: e });
    }
    if (reply.ok) return reply.stats;
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
