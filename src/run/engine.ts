import { availableParallelism, totalmem } from 'node:os';
import { join } from 'node:path';

import { PmaError } from '../errors.js';
import {
  native,
  type ChunkStats,
  type KernelChoice,
  type KernelName,
  type NativeChunk,
  type WriteMode,
} from '../native.js';
import type { MergePlan } from '../plan/types.js';
import {
  defaultThreads,
  deviceName,
  gpuStaging,
  MIN_GPU_MEMORY_PER_THREAD,
  resolveDevice,
  type GpuStaging,
  type ResolvedDevice,
} from './devices.js';
import type { ResolvedEngineOptions } from './options.js';
import { HashThreads, hashThreadCount } from '../output/hash-threads.js';
import { ChunkPool } from './pool.js';

/**
 * The devices, worker threads and GPU staging these options give on this machine, checked: what
 * Engine.start runs with, and what `pma merge --dry-run` reports. Creates no CUDA context.
 */
export function resolveDevices(o: ResolvedEngineOptions): {
  device: ResolvedDevice;
  threads: number;
  staging: GpuStaging | null;
} {
  const device = resolveDevice(o.device, o.gpuMemory, o.deviceLabel);
  const threads = o.threads ?? defaultThreads(device, availableParallelism());
  if (device.kind !== 'cuda') return { device, threads, staging: null };
  const staging = gpuStaging(device.memory, device.devices.length, threads, device.slots, device.maxSlotBytes);
  if (staging.perWorker < MIN_GPU_MEMORY_PER_THREAD) {
    throw new PmaError(
      'E_USAGE',
      `invalid gpuMemory: expected at least ${MIN_GPU_MEMORY_PER_THREAD * staging.workersPerGpu} bytes for ${staging.workersPerGpu} threads per GPU (3 MiB each), got ${device.memory}`,
    );
  }
  return { device, threads, staging };
}

/** The CPU kernel a choice names on this machine ('auto': the best); E_UNSUPPORTED if it has not it. */
export function cpuKernel(choice: KernelChoice): KernelName {
  const cpu = native().cpuFeatures();
  const kernel = choice === 'auto' ? cpu.best : choice;
  if (!cpu.kernels.includes(kernel)) {
    throw new PmaError(
      'E_UNSUPPORTED',
      `kernel ${kernel} is not supported by this CPU (available: ${cpu.kernels.join(', ')})`,
    );
  }
  return kernel;
}

/**
 * The engine a merge runs on: the kernel, the devices, the addon's threads (the chunks and the
 * output's hashing share them), and the settings every native chunk carries. close() ends the
 * threads.
 */
export class Engine {
  private constructor(
    readonly kernel: KernelName,
    readonly device: ResolvedDevice,
    readonly pool: ChunkPool,
    private readonly o: ResolvedEngineOptions,
    /** On GPUs: how the workers stage their data (reported with the merge). */
    readonly staging: GpuStaging | null,
    /** The output's hashing, on the same threads as the chunks. */
    readonly hashing: HashThreads,
  ) {}

  /** Checks the kernel and the devices against this machine, then starts the workers. */
  static start(o: ResolvedEngineOptions): Engine {
    const kernel = cpuKernel(o.kernel);
    const { device, threads, staging } = resolveDevices(o);
    // The output's hashing runs on the merge's threads, ahead of its chunks. Where they leave cores
    // free (--threads 1 on two cores), threads that only hash take some of them, so that the
    // sequential hash is not the one thread's work on top of the chunks.
    const idle = device.kind === 'cpu' ? Math.max(0, availableParallelism() - threads) : 0;
    const pool = new ChunkPool(threads, Math.min(idle, hashThreadCount(Infinity)));
    return new Engine(kernel, device, pool, o, staging, new HashThreads(pool));
  }

  get threads(): number {
    return this.pool.threads;
  }

  /** 'cpu', or the GPUs used: 'cuda:0', 'cuda:0,1'. */
  get deviceName(): string {
    return deviceName(this.device);
  }

  /** Why --device auto chose the CPU, when it did. */
  get deviceNote(): string | undefined {
    return this.device.kind === 'cpu' && this.device.reason
      ? `--device auto chose the CPU: ${this.device.reason}`
      : undefined;
  }

  /** Whether the merge drops the page cache behind it: asked for, or (auto) inputs over half of RAM. */
  dropsCache(plan: MergePlan): boolean {
    return this.o.pageCache === 'drop' || (this.o.pageCache === 'auto' && plan.totals.inputBytes > totalmem() / 2);
  }

  /**
   * Runs chunk `i` of `plan` on the pool, writing into `dir` (and dropping what it read and wrote
   * from the page cache, with `dropCache`: see dropsCache). On GPUs each thread merges on one GPU,
   * always the same, so that its pinned staging is held once, not once per GPU; the GPUs get
   * chunks as fast as their threads take them.
   */
  mergeChunk(plan: MergePlan, i: number, dir: string, cancel: Int32Array, dropCache: boolean): Promise<ChunkStats> {
    const gpus = this.device.kind === 'cuda' ? this.device.devices.map((d) => d.index) : [];
    return this.pool.merge(this.nativeChunk(plan, i, dir, cancel, dropCache), gpus);
  }

  private nativeChunk(plan: MergePlan, i: number, dir: string, cancel: Int32Array, dropCache: boolean): NativeChunk {
    const c = plan.chunks[i] as MergePlan['chunks'][number];
    return {
      inputs: c.inputs,
      outputs: c.outputs.map((name) => join(dir, name)),
      weights32: plan.weights.w32,
      weights64: plan.weights.w64,
      accumulate: plan.accumulate,
      kernel: this.kernel,
      io: this.o.io,
      dropCache,
      write: this.writeMode(dropCache),
      device: -1,
      gpuMemory: this.staging?.perWorker ?? 0,
      cancel,
      ops: c.ops,
    };
  }

  /**
   * 'auto': direct on the CPU (its writer threads keep the chunk threads computing, and no page
   * cache is filled: docs/performance.md, "Direct writes on writer threads"); on GPUs, whose
   * pipeline writes direct from a thread of each chunk, only when the page cache is dropped anyway.
   */
  private writeMode(dropCache: boolean): WriteMode {
    if (this.o.write !== 'auto') return this.o.write;
    return this.device.kind !== 'cuda' || dropCache ? 'direct' : 'buffered';
  }

  async close(): Promise<void> {
    await this.hashing.close();
    await this.pool.close();
  }
}
