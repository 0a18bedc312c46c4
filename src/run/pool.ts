import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { Piscina } from 'piscina';

import { PmaError } from '../errors.js';
import type { ChunkStats, NativeAnalysis, OpMoments } from '../native.js';
import { PACKAGE_ROOT } from '../util/package.js';
import type { WorkerChunk, WorkerReply } from './worker.js';

/**
 * Worker threads run compiled JavaScript. When pma itself runs from TypeScript sources (the test
 * runner), the workers use the build in dist/, which the tests' global setup compiles first when
 * it is older than src/. The file piscina loads is the CommonJS entry (worker-entry.cts says why).
 */
function workerFile(): string {
  const here = import.meta.url;
  return here.endsWith('.ts')
    ? join(PACKAGE_ROOT, 'dist', 'run', 'worker-entry.cjs')
    : fileURLToPath(new URL('./worker-entry.cjs', here));
}

/** The worker threads: each loads the addon once and runs one native call per task. */
export class ChunkPool {
  private readonly pool: Piscina;

  constructor(readonly threads: number) {
    this.pool = new Piscina({ filename: workerFile(), minThreads: threads, maxThreads: threads, idleTimeout: 60_000 });
  }

  // No AbortSignal is handed to piscina: it would kill a worker in the middle of a write. The
  // dispatcher stops instead, and sets the chunk's cancel flag, which the engine polls.
  private async call<T>(name: 'mergeChunk' | 'analyzeChunk' | 'hashFile', arg: unknown): Promise<T> {
    let r: WorkerReply<T>;
    try {
      r = (await this.pool.run(arg, { name })) as WorkerReply<T>;
    } catch (e) {
      throw new PmaError('E_INTERNAL', `worker failed: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    }
    if (r.ok) return r.value;
    throw PmaError.fromWire(r.error);
  }

  /** Merges one chunk: reads, averages and writes its ops. */
  merge(chunk: WorkerChunk): Promise<ChunkStats> {
    return this.call('mergeChunk', chunk);
  }

  /** The chunk's moments for pma analyze (reads only). */
  analyze(reads: NativeAnalysis): Promise<OpMoments[]> {
    return this.call('analyzeChunk', reads);
  }

  /** SHA-256 of a file, hex, computed on a worker thread. */
  hash(path: string): Promise<string> {
    return this.call('hashFile', path);
  }

  async close(): Promise<void> {
    await this.pool.destroy();
  }
}
