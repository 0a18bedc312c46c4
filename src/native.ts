import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

import type { FloatDType } from './dtypes.js';
import { PmaError, type PmaErrorWire } from './errors.js';
import type { Accumulate, Checksum, PlanOp } from './plan/types.js';
import { PACKAGE_ROOT } from './util/package.js';

/**
 * The whole surface of the native addon, typed. Every other file goes through `native()`, never
 * through the raw binding, so argument shapes and error translation live in one place. The ops a
 * chunk carries are the plan's own (src/plan/types.ts): the plan is what the engine executes.
 */
export type KernelName = 'scalar' | 'avx2' | 'avx512';
export type KernelChoice = KernelName | 'auto';
export type IoMode = 'pread' | 'mmap';
export type WriteMode = 'direct' | 'buffered';
export type { Accumulate };

/** What the engine reads: input files and the ops that name ranges of them. */
export interface NativeReads {
  inputs: string[];
  ops: PlanOp[];
  /**
   * Element 0 set non-zero (Atomics.store, from any thread) stops the chunk within one block:
   * it fails with E_ABORTED. Over a SharedArrayBuffer, so every worker sees the same flag.
   */
  cancel?: Int32Array;
}

/** A chunk of `pma analyze`: what it reads, and the kernel that sums the products. */
export interface NativeAnalysis extends NativeReads {
  kernel: KernelChoice;
}

/** A chunk of a merge: what it reads, where it writes, and how the engine runs it. */
export interface NativeChunk extends NativeReads {
  outputs: string[];
  weights32: number[];
  weights64: number[];
  accumulate: Accumulate;
  kernel: KernelChoice;
  io: IoMode;
  /** Drop the chunk's input and output pages from the page cache when done. */
  dropCache: boolean;
  /** 'direct': the 4 KiB-aligned middle of each output run with O_DIRECT (where supported). */
  write: WriteMode;
  /** -1: the CPU kernels; otherwise the CUDA device index the chunk runs on. */
  device: number;
  /** Device memory (and pinned host memory) this worker may use on `device`, in bytes. */
  gpuMemory: number;
}

export interface ChunkStats {
  bytesRead: number;
  bytesWritten: number;
  /** NaN/Inf counts in the inputs: [op index in the chunk, input (checkpoint) index, count]. */
  nonfinite: [number, number, number][];
  /** Seconds of the chunk's thread: in all (`engine`), and in reading, scanning, writing. */
  seconds: EngineSeconds;
}

/**
 * Seconds of the engine's threads, summed over them: `engine` in all, of which reading the inputs,
 * scanning them for NaN/Inf and writing the output (waits for writeback included); the rest is
 * arithmetic. On a GPU only `engine` is measured (the others are 0).
 */
export interface EngineSeconds {
  engine: number;
  read: number;
  scan: number;
  write: number;
}

/**
 * Sums over one op's elements, relative to the oldest checkpoint (e_k = x_k - x_0), from which
 * `pma analyze` derives norms, cosines and distances (see native/engine/analyze.h).
 */
export interface OpMoments {
  /** sum e_k e_l for 1 <= k <= l < n, the upper triangle row by row. */
  gram: number[];
  /** sum x_newest e_k for 1 <= k < n. */
  cross: number[];
  newestSq: number;
  /** Elements summed (0 for copies). */
  count: number;
}

export interface CpuInfo {
  avx2: boolean;
  avx512: boolean;
  kernels: KernelName[];
  best: KernelName;
}

export interface MergeBuffersArgs {
  inputs: Uint8Array[];
  inDtype: FloatDType;
  outDtype: FloatDType;
  weights32: number[];
  weights64: number[];
  accumulate: Accumulate;
  /** The CPU kernel; ignored when `device` names a GPU. */
  kernel: KernelChoice;
  /** A CUDA device index to merge on instead of the CPU (default -1: the CPU). */
  device?: number;
}

/** A GPU as the driver describes it; read without creating a CUDA context on it. */
export interface NativeCudaDevice {
  index: number;
  name: string;
  pciBusId: string;
  /** "8.0", "9.0", ... */
  computeCapability: string;
  multiprocessors: number;
  totalMemory: number;
  /** From NVML; absent when the driver's NVML library is not there. */
  freeMemory?: number;
}

/** What the addon reports of CUDA; run/devices.ts decides which GPUs this build can use. */
export interface NativeCudaInfo {
  /** The addon was built with CUDA (the machine may still have no GPU). */
  built: boolean;
  /** The build's targets, e.g. "80-real,90-real,90-virtual". */
  archs: string;
  /** The CUDA runtime linked in: 13000 = CUDA 13.0; 0 when unknown. */
  runtimeVersion: number;
  /** The CUDA version the driver supports (12040 = 12.4); 0 when no driver is installed. */
  driverVersion: number;
  /** The driver's own version ("550.54.15", from NVML), when known. */
  driverRelease?: string;
  /** Why no device is listed, when none is. */
  error?: string;
  /** Staging per worker and GPU: this many slots of at most maxSlotBytes each (native/cuda/cuda.h). */
  stagingSlots: number;
  maxSlotBytes: number;
  devices: NativeCudaDevice[];
}

export interface CudaBenchArgs {
  device: number;
  inDtype: FloatDType;
  outDtype: FloatDType;
  inputs: number;
  /** Elements per input. */
  count: number;
  iterations: number;
}

export interface CudaBenchResult {
  /** Bytes the merge kernel reads and writes per second, GB/s. */
  kernelGBps: number;
  /** A device-to-device copy moving the same bytes, GB/s. */
  copyGBps: number;
  h2dGBps: number;
  d2hGBps: number;
}

/** A zip member's running CRC-32, fed by the bytes of a hash pass that overlap [start, end). */
export interface MemberCrc {
  start: number;
  end: number;
  crc: number;
}

/**
 * A request about one output file being hashed (native/engine/output_hash.h): hash [from, to)
 * next, feeding the CRC-32 of the members given; the CRC-32 of [start, end) alone; write a CRC-32
 * field; the digest, which closes the file. `file` numbers the file: its state is kept under it.
 */
export type FileOp = { file: number; path: string; writable: boolean; checksum: Checksum } & (
  | { op: 'update'; from: number; to: number; crcs: MemberCrc[]; drop: boolean }
  | { op: 'crc'; start: number; end: number }
  | { op: 'put'; at: number; value: number }
  | { op: 'digest' }
);

/** A request of the output hasher, or the checksum of a whole file by path. */
export type HashRequest = FileOp | { op: 'file'; path: string; checksum: Checksum };

/** What a hash request answers: seconds reading and hashing and the members' CRC-32 (update), a CRC-32, a digest. */
export type HashValue = { read?: number; update?: number; crcs?: number[]; crc?: number; hex?: string };

interface RawThreads {
  runChunk(chunk: NativeChunk, gpus: number[]): Promise<ChunkStats>;
  analyzeChunk(chunk: NativeAnalysis): Promise<OpMoments[]>;
  hash(request: HashRequest): Promise<HashValue>;
  forgetHashes(): void;
  diskBusy(): DiskBusy;
  close(): void;
}

/** How busy the direct writes (native/engine/direct_writes.h) kept the disk since the threads started. */
export interface DiskBusy {
  /** Wall seconds during which at least one write was in flight. */
  seconds: number;
  /** Bytes written. */
  bytes: number;
}

/**
 * Native threads that run chunks (native/engine/chunk_threads.h): each call queues one and
 * resolves with its result, or rejects with the PmaError the sync call would throw. They keep the
 * process alive only while chunks are in flight.
 */
export interface NativeThreads {
  /**
   * A merge chunk. On GPUs (`gpus` not empty) thread i merges on gpus[i mod gpus.length], so its
   * pinned staging is held once; `chunk.device` is then ignored.
   */
  runChunk(chunk: NativeChunk, gpus: readonly number[]): Promise<ChunkStats>;
  analyzeChunk(chunk: NativeAnalysis): Promise<OpMoments[]>;
  /**
   * A request of the output hasher (one at a time per file), or the checksum of a whole file by
   * path (op 'file'), run on the threads like a chunk.
   */
  hash(request: HashRequest): Promise<HashValue>;
  /** Closes every file being hashed (none may have a request in flight). */
  forgetHashes(): void;
  /** The direct writes' time on the disk so far (zero for chunks written through the page cache). */
  diskBusy(): DiskBusy;
  /** Waits for the chunks queued (the JS thread blocks), then ends the threads. Idempotent. */
  close(): void;
}

interface RawAddon {
  cuda: boolean;
  Threads: new (count: number, hashOnly: number) => RawThreads;
  cpuFeatures(): CpuInfo;
  runChunk(chunk: NativeChunk): ChunkStats;
  analyzeChunk(chunk: NativeAnalysis): OpMoments[];
  mergeBuffers(args: MergeBuffersArgs & { device: number }): Uint8Array;
  cudaInfo(): NativeCudaInfo;
  cudaBench(args: CudaBenchArgs): CudaBenchResult;
  dropCache(path: string, offset: number, length: number): void;
  preallocate(path: string, length: number): boolean;
  crc32(bytes: Uint8Array, crc: number): number;
  blake3(bytes: Uint8Array, kernel: KernelChoice): string;
  countNonfinite(bytes: Uint8Array, dtype: FloatDType): number;
}

export interface Native {
  /** The addon was built with CUDA. */
  readonly cuda: boolean;
  cpuFeatures(): CpuInfo;
  /**
   * `count` threads (1 to 1024) that run chunks and hash requests off the JS thread, and
   * `hashOnly` more (0 to 64, default 0) that run only hash requests.
   */
  threads(count: number, hashOnly?: number): NativeThreads;
  runChunk(chunk: NativeChunk): ChunkStats;
  /**
   * Reads the chunk's merge ops like runChunk and returns their moments; writes nothing. Every
   * kernel gives the same bits.
   */
  analyzeChunk(chunk: NativeAnalysis): OpMoments[];
  mergeBuffers(args: MergeBuffersArgs): Uint8Array;
  /**
   * The build's CUDA support and the GPUs this process can see; never throws for want of a GPU and
   * creates no CUDA context. Which GPUs are usable: cudaInfo() in run/devices.ts.
   */
  cudaInfo(): NativeCudaInfo;
  cudaBench(args: CudaBenchArgs): CudaBenchResult;
  /** Drops a byte range of a file from the page cache (a hint). */
  dropCache(path: string, offset: number, length: number): void;
  /**
   * Allocates the first `length` bytes of an existing file without writing them (fallocate), so
   * that the merge's direct writes only overwrite; false where the filesystem cannot. Out of space
   * is E_NOSPACE naming the file.
   */
  preallocate(path: string, length: number): boolean;
  /** zip's CRC-32 of `bytes` (zlib's value), continuing from `crc` (0 to start): a DCP output's rewritten members. */
  crc32(bytes: Uint8Array, crc: number): number;
  /**
   * The BLAKE3 digest (hex) of `bytes`, as the hash threads compute it, with the SIMD path of
   * `kernel` ('auto': the best this CPU has; E_UNSUPPORTED where the CPU lacks it).
   */
  blake3(bytes: Uint8Array, kernel?: KernelChoice): string;
  /** NaN and infinite values among `bytes` read as `dtype` (the merge's own count). */
  countNonfinite(bytes: Uint8Array, dtype: FloatDType): number;
}

/** The addon built here (build/), else the prebuild shipped in the npm tarball (found without the install script). */
function addonPath(): string {
  const candidates = [
    join(PACKAGE_ROOT, 'build', 'Release', 'pma.node'),
    join(PACKAGE_ROOT, 'build', 'Debug', 'pma.node'),
    join(PACKAGE_ROOT, 'prebuilds', `${process.platform}-${process.arch}`, 'pma.node'),
  ];
  const found = candidates.find((p) => existsSync(p));
  if (!found) {
    throw new PmaError(
      'E_UNSUPPORTED',
      `the native addon is not built (looked for ${candidates.join(', ')}); run npm install or npm run build`,
    );
  }
  return found;
}

/** Native failures arrive as Errors with pmaCode/file/tensor set by addon.cc's one guard. */
function translate(e: unknown): PmaError {
  if (e instanceof PmaError) return e;
  const err = e as (Error & { pmaCode?: string; file?: string; tensor?: string }) | null;
  if (typeof err?.pmaCode !== 'string') return PmaError.from(e);
  const wire: PmaErrorWire = { code: err.pmaCode, message: err.message };
  if (err.file) wire.file = err.file;
  if (err.tensor) wire.tensor = err.tensor;
  if (err.stack) wire.stack = err.stack;
  return PmaError.fromWire(wire);
}

/** As guarded(), for a call that returns a promise: its rejection is translated too. */
function guardedAsync<A extends unknown[], R>(f: (...a: A) => Promise<R>): (...a: A) => Promise<R> {
  return async (...a: A) => {
    try {
      return await f(...a);
    } catch (e) {
      throw translate(e);
    }
  };
}

function guarded<A extends unknown[], R>(f: (...a: A) => R): (...a: A) => R {
  return (...a: A) => {
    try {
      return f(...a);
    } catch (e) {
      throw translate(e);
    }
  };
}

let loaded: Native | undefined;

/**
 * The native addon, loaded once per thread: build/Release (a local build, CUDA or CPU) or the
 * prebuild shipped in the package. Throws E_UNSUPPORTED when there is neither.
 *
 * @example
 * ```ts
 * import { native } from 'pma';
 * const cpu = native().cpuFeatures();
 * console.log(`kernels ${cpu.kernels.join(', ')}, best ${cpu.best}; CUDA built in: ${native().cuda}`);
 * ```
 */
export function native(): Native {
  if (loaded) return loaded;
  const require = createRequire(import.meta.url);
  let raw: RawAddon;
  try {
    raw = require(addonPath()) as RawAddon;
  } catch (e) {
    throw e instanceof PmaError
      ? e
      : new PmaError('E_UNSUPPORTED', `cannot load the native addon: ${(e as Error).message}`, { cause: e });
  }
  loaded = {
    cuda: raw.cuda,
    cpuFeatures: guarded(() => raw.cpuFeatures()),
    threads: guarded((count: number, hashOnly = 0) => {
      const t = new raw.Threads(count, hashOnly);
      return {
        runChunk: guardedAsync((c: NativeChunk, gpus: readonly number[]) => t.runChunk(c, [...gpus])),
        analyzeChunk: guardedAsync((c: NativeAnalysis) => t.analyzeChunk(c)),
        hash: guardedAsync((r: HashRequest) => t.hash(r)),
        forgetHashes: guarded(() => t.forgetHashes()),
        diskBusy: guarded(() => t.diskBusy()),
        close: guarded(() => t.close()),
      };
    }),
    runChunk: guarded((c: NativeChunk) => raw.runChunk(c)),
    analyzeChunk: guarded((c: NativeAnalysis) => raw.analyzeChunk(c)),
    mergeBuffers: guarded((a: MergeBuffersArgs) => raw.mergeBuffers({ ...a, device: a.device ?? -1 })),
    cudaInfo: guarded(() => raw.cudaInfo()),
    cudaBench: guarded((a: CudaBenchArgs) => raw.cudaBench(a)),
    dropCache: guarded((p: string, off: number, len: number) => raw.dropCache(p, off, len)),
    preallocate: guarded((p: string, len: number) => raw.preallocate(p, len)),
    crc32: guarded((b: Uint8Array, crc: number) => raw.crc32(b, crc)),
    blake3: guarded((b: Uint8Array, kernel: KernelChoice = 'auto') => raw.blake3(b, kernel)),
    countNonfinite: guarded((b: Uint8Array, dtype: FloatDType) => raw.countNonfinite(b, dtype)),
  };
  return loaded;
}
