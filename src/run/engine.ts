import { availableParallelism, totalmem } from 'node:os';
import { join } from 'node:path';

import { PmaError } from '../errors.js';
import { native, type KernelName, type NativeChunk } from '../native.js';
import type { MergePlan } from '../plan/types.js';
import {
  defaultThreads,
  deviceName,
  MIN_GPU_MEMORY_PER_THREAD,
  resolveDevice,
  type ResolvedDevice,
} from './devices.js';
import type { ResolvedEngineOptions } from './options.js';
import { ChunkPool } from './pool.js';

/**
 * The engine a merge runs on: the kernel, the devices, the worker pool, and the settings every
 * native chunk carries. Started before planning, so the threads and the addon load while the
 * headers are read; close() ends the workers.
 */
export class Engine {
  private constructor(
    readonly kernel: KernelName,
    readonly device: ResolvedDevice,
    readonly pool: ChunkPool,
    private readonly o: ResolvedEngineOptions,
  ) {}

  /** Checks the kernel and the devices against this machine, then starts the workers. */
  static start(o: ResolvedEngineOptions): Engine {
    const cpu = native().cpuFeatures();
    const kernel = o.kernel === 'auto' ? cpu.best : o.kernel;
    if (!cpu.kernels.includes(kernel)) {
      throw new PmaError(
        'E_UNSUPPORTED',
        `kernel ${kernel} is not supported by this CPU (available: ${cpu.kernels.join(', ')})`,
      );
    }
    const device = resolveDevice(o.device, o.gpuMemory, o.deviceLabel);
    const threads = o.threads ?? defaultThreads(device, availableParallelism());
    if (device.kind === 'cuda' && device.memory / threads < MIN_GPU_MEMORY_PER_THREAD) {
      throw new PmaError(
        'E_USAGE',
        `invalid gpuMemory: expected at least ${MIN_GPU_MEMORY_PER_THREAD * threads} bytes for ${threads} threads (3 MiB each), got ${device.memory}`,
      );
    }
    return new Engine(kernel, device, new ChunkPool(threads), o);
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
   * The native call for chunk `i` of `plan`, writing into `dir` (and dropping what it read and wrote
   * from the page cache, with `dropCache`: see dropsCache). Chunks go to the GPUs in turn
   * (chunk i on device i mod n), or all to the CPU; each worker may hold staging slots on every GPU.
   */
  mergeChunk(plan: MergePlan, i: number, dir: string, cancel: Int32Array, dropCache: boolean): NativeChunk {
    const c = plan.chunks[i] as MergePlan['chunks'][number];
    const gpus = this.device.kind === 'cuda' ? this.device.devices.map((d) => d.index) : [];
    return {
      inputs: c.inputs,
      outputs: c.outputs.map((name) => join(dir, name)),
      weights32: plan.weights.w32,
      weights64: plan.weights.w64,
      accumulate: plan.accumulate,
      kernel: this.kernel,
      io: this.o.io,
      dropCache,
      write: this.o.write,
      device: gpus.length > 0 ? (gpus[i % gpus.length] as number) : -1,
      gpuMemory: this.device.kind === 'cuda' ? Math.floor(this.device.memory / this.pool.threads) : 0,
      cancel,
      ops: c.ops,
    };
  }

  async close(): Promise<void> {
    await this.pool.close();
  }
}
