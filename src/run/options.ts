import type { IoMode, KernelChoice } from '../native.js';
import * as v from '../validate.js';
import { parseDevice, type DeviceOption, type DeviceRequest } from './devices.js';

export const KERNEL_CHOICES = ['auto', 'scalar', 'avx2', 'avx512'] as const;
export const IO_MODES = ['pread', 'mmap'] as const;
export const WRITE_MODES = ['auto', 'buffered', 'direct'] as const;
/** How results are written: a WriteMode, or 'auto' (direct on the CPU; on GPUs when the page cache is dropped). */
export type WriteChoice = (typeof WRITE_MODES)[number];
export const PAGE_CACHE_MODES = ['auto', 'keep', 'drop'] as const;
export type PageCacheMode = (typeof PAGE_CACHE_MODES)[number];

/** Where and how the chunks run. None of these changes a byte of the result. */
export interface EngineOptions {
  /** Worker threads; default: the number of cores on the CPU, up to 8 (4 per GPU) on GPUs. */
  threads?: number;
  /** CPU kernel; default 'auto' (the best this CPU has). */
  kernel?: KernelChoice;
  /**
   * 'cpu' (default), 'cuda' (GPU 0), 'cuda:0,1', 'cuda:all', or 'auto' (GPU 0 when this build has
   * CUDA and a usable GPU is present, else the CPU). Every device writes the same bytes.
   */
  device?: DeviceOption;
  /**
   * Device memory per GPU, bytes or "2GiB", shared by the workers; the same amount of pinned host
   * memory is used for staging. Default: a tenth of the GPU's free memory, at most 1 GiB.
   */
  gpuMemory?: number | string;
  io?: IoMode;
  /**
   * 'drop': drop inputs from the page cache behind the read position and outputs once on disk;
   * 'keep': leave the page cache alone; 'auto' (default): drop when the inputs exceed half of RAM.
   */
  pageCache?: PageCacheMode;
  /**
   * 'buffered': results go through the page cache, with early writeback; 'direct': the aligned
   * middle of each output run goes to disk with O_DIRECT where the filesystem allows, on writer
   * threads of its own, and the output's hash takes those bytes from memory; 'auto' (default):
   * direct on the CPU, and on GPUs when the merge drops the page cache (pageCache). The bytes are
   * the same; which is faster depends on the disk and the page cache (see docs/performance.md).
   */
  write?: WriteChoice;
}

export interface ResolvedEngineOptions {
  /** null: chosen once the device is known (defaultThreads). */
  threads: number | null;
  kernel: KernelChoice;
  device: DeviceRequest;
  /** The option as given, for messages. */
  deviceLabel: string;
  gpuMemory: number | undefined;
  io: IoMode;
  pageCache: PageCacheMode;
  write: WriteChoice;
}

/** The `kernel` option checked: 'auto' when not given. */
export function kernelOption(kernel: unknown): KernelChoice {
  return kernel === undefined ? 'auto' : v.oneOf('kernel', kernel, KERNEL_CHOICES);
}

export function resolveEngineOptions(o: EngineOptions): ResolvedEngineOptions {
  return {
    threads: o.threads === undefined ? null : v.integer('threads', o.threads, 1, 1024),
    kernel: kernelOption(o.kernel),
    device: parseDevice(o.device),
    deviceLabel: String(o.device ?? 'cpu'),
    gpuMemory: o.gpuMemory === undefined ? undefined : v.byteSize('gpuMemory', o.gpuMemory),
    io: o.io === undefined ? 'pread' : v.oneOf('io', o.io, IO_MODES),
    pageCache: o.pageCache === undefined ? 'auto' : v.oneOf('pageCache', o.pageCache, PAGE_CACHE_MODES),
    write: o.write === undefined ? 'auto' : v.oneOf('write', o.write, WRITE_MODES),
  };
}
