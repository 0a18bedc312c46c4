import {
  native,
  type ChunkStats,
  type NativeAnalysis,
  type NativeChunk,
  type NativeThreads,
  type OpMoments,
} from '../native.js';

/**
 * The threads a merge or an analysis runs its chunks on: native threads of the addon (one native
 * call per chunk, off the JS thread). Not Node worker threads: each of those costs 60-130 ms of a
 * core to start (a JS environment, the module graph, the addon), which on a small machine is time
 * taken from the merge itself (docs/performance.md, "Chunks and hashing on native threads").
 */
export class ChunkPool {
  /** The addon's threads: chunks here, and the output's hashing (src/output/hash-threads.ts). */
  readonly native: NativeThreads;

  /** `hashOnly`: threads beside the `threads` that only hash the output (see Engine.start). */
  constructor(
    readonly threads: number,
    hashOnly = 0,
  ) {
    this.native = native().threads(threads, hashOnly);
  }

  /** Merges one chunk: reads, averages and writes its ops. On GPUs, each thread keeps to one of `gpus`. */
  merge(chunk: NativeChunk, gpus: readonly number[] = []): Promise<ChunkStats> {
    return this.native.runChunk(chunk, gpus);
  }

  /** The chunk's moments for pma analyze (reads only). */
  analyze(reads: NativeAnalysis): Promise<OpMoments[]> {
    return this.native.analyzeChunk(reads);
  }

  /** Ends the threads once the chunks queued are done (the dispatcher has settled them all by then). */
  close(): Promise<void> {
    this.native.close();
    return Promise.resolve();
  }
}
