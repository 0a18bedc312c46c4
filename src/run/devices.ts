import { PmaError } from '../errors.js';
import { native, type NativeCudaDevice, type NativeCudaInfo } from '../native.js';
import * as v from '../validate.js';
import { deviceProblem, driverNeeded, driverProblem, parseArchs } from './cuda-compat.js';

export { cudaVersion } from './cuda-compat.js';

/** A GPU, and whether this build can merge on it. */
export interface CudaDeviceInfo extends NativeCudaDevice {
  /** False when this build cannot run on it (its compute capability, or the driver). */
  usable: boolean;
  unusableReason?: string;
}

/** The build's CUDA support and the GPUs this process sees (no CUDA context is created). */
export interface CudaInfo extends Omit<NativeCudaInfo, 'devices'> {
  /** The driver this build needs, in words: "CUDA 13.0 (Linux driver 580.65.06 or newer)"; null without CUDA. */
  driverNeeded: string | null;
  devices: CudaDeviceInfo[];
}

/** The addon's report, with each GPU's usability decided (run/cuda-compat.ts). *
 * @example
 * ```ts
 * import { cudaInfo } from 'pma';
 * const c = cudaInfo();
 * console.log(c.built ? `CUDA build, needs ${c.driverNeeded}` : 'built without CUDA', c.error ?? '');
 * for (const d of c.devices) console.log(d.index, d.name, d.usable ? 'usable' : d.unusableReason);
 * ```
 */
export function cudaInfo(): CudaInfo {
  const raw = native().cudaInfo();
  const driver = driverProblem(raw);
  const archs = parseArchs(raw.archs);
  const devices = raw.devices.map((d): CudaDeviceInfo => {
    const why = driver ?? deviceProblem(d, raw, archs);
    return why === undefined ? { ...d, usable: true } : { ...d, usable: false, unusableReason: why };
  });
  // A runtime newer than the driver fails cudaGetDeviceCount itself: say it in plain words.
  const error =
    driver && devices.length === 0 ? `${driver}; the CUDA runtime says: ${raw.error ?? 'no device'}` : raw.error;
  return {
    ...raw,
    ...(error === undefined ? {} : { error }),
    driverNeeded: raw.built ? driverNeeded(raw.runtimeVersion) : null,
    devices,
  };
}

/**
 * Where the arithmetic runs. 'cpu'; 'cuda' (device 0); 'cuda:0,1' (those devices); 'cuda:all'
 * (every usable device); 'auto' (device 0 when this build has CUDA and a usable GPU is present,
 * else the CPU). The bytes are the same on every device.
 */
export type DeviceOption = 'cpu' | 'auto' | 'cuda' | 'cuda:all' | `cuda:${string}`;

export type DeviceRequest = { kind: 'cpu' } | { kind: 'auto' } | { kind: 'cuda'; indices: number[] | 'all' };

export type ResolvedDevice =
  | { kind: 'cpu'; /** Why 'auto' chose the CPU, when it did. */ reason?: string }
  | {
      kind: 'cuda';
      devices: CudaDeviceInfo[];
      /** Bytes of device (and pinned host) memory per device. */ memory: number;
      /** The addon's staging: slots per worker, and the most a slot holds. */
      slots: number;
      maxSlotBytes: number;
    };

const DEVICE_EXPECTED = 'cpu, auto, cuda, cuda:all or cuda:<i>[,<j>...]';

export function parseDevice(value: unknown): DeviceRequest {
  if (value === undefined || value === 'cpu') return { kind: 'cpu' };
  if (value === 'auto') return { kind: 'auto' };
  if (value === 'cuda') return { kind: 'cuda', indices: [0] };
  if (value === 'cuda:all') return { kind: 'cuda', indices: 'all' };
  const m = typeof value === 'string' ? /^cuda:(\d+(?:,\d+)*)$/.exec(value) : null;
  if (!m) throw v.invalid('device', DEVICE_EXPECTED, value);
  const indices = (m[1] as string).split(',').map(Number);
  // PMA_TEST_REPEAT_GPU=1 (tests only): a GPU named twice counts as two, so that a machine with one
  // GPU runs the multi-GPU paths (workers spread over "two" GPUs, each with its own staging).
  if (new Set(indices).size !== indices.length && process.env.PMA_TEST_REPEAT_GPU !== '1')
    throw v.invalid('device', 'each CUDA device at most once', value);
  return { kind: 'cuda', indices };
}

/** The name of a resolved device, as the summary and pma.json print it. */
export function deviceName(d: ResolvedDevice): string {
  return d.kind === 'cpu' ? 'cpu' : `cuda:${d.devices.map((x) => x.index).join(',')}`;
}

/**
 * The default budget per device: a tenth of its free memory (of its total memory when the driver
 * has no NVML to tell), at least 64 MiB, at most 1 GiB.
 */
export function defaultGpuMemory(d: Pick<NativeCudaDevice, 'freeMemory' | 'totalMemory'>): number {
  return Math.max(64 * 2 ** 20, Math.min(2 ** 30, Math.floor((d.freeMemory ?? d.totalMemory) / 10)));
}

function noCuda(info: CudaInfo, what: string): PmaError {
  if (!info.built) {
    return new PmaError(
      'E_UNSUPPORTED',
      `--device ${what}: this build of pma has no CUDA support (it was built without nvcc); reinstall with the CUDA toolkit on PATH or PMA_CUDA=1, or use --device cpu`,
    );
  }
  return new PmaError(
    'E_UNSUPPORTED',
    `--device ${what}: no CUDA device is usable here (${info.error ?? 'none found'}); use --device cpu or auto`,
  );
}

/**
 * Turns a request into devices, asking the driver only when a GPU is wanted. `memory` (bytes per
 * device) defaults to defaultGpuMemory() of the least free device.
 */
export function resolveDevice(req: DeviceRequest, memory: number | undefined, label: string): ResolvedDevice {
  if (req.kind === 'cpu') return { kind: 'cpu' };
  const info = cudaInfo();
  const usable = info.devices.filter((d) => d.usable);
  let devices: CudaDeviceInfo[];
  if (req.kind === 'auto') {
    const first = usable[0];
    if (!first) {
      const why = !info.built
        ? 'built without CUDA'
        : info.devices.length > 0
          ? info.devices.map((d) => d.unusableReason).join('; ')
          : (info.error ?? 'no CUDA device');
      return { kind: 'cpu', reason: why };
    }
    devices = [first];
  } else if (req.indices === 'all') {
    if (usable.length === 0) throw noCuda(info, label);
    devices = usable;
  } else {
    if (info.devices.length === 0) throw noCuda(info, label);
    devices = req.indices.map((i) => {
      const d = info.devices.find((x) => x.index === i);
      if (!d)
        throw new PmaError(
          'E_UNSUPPORTED',
          `--device ${label}: there is no CUDA device ${i} (this machine has ${info.devices.length}: 0 to ${info.devices.length - 1})`,
        );
      if (!d.usable)
        throw new PmaError(
          'E_UNSUPPORTED',
          `--device ${label}: CUDA device ${i} (${d.name}) cannot run this build: ${d.unusableReason ?? 'unusable'}`,
        );
      return d;
    });
  }
  const budget = memory ?? Math.min(...devices.map(defaultGpuMemory));
  return { kind: 'cuda', devices, memory: budget, slots: info.stagingSlots, maxSlotBytes: info.maxSlotBytes };
}

/** Worker threads when none are asked for: every core on the CPU; on GPUs, readers enough to feed them. */
export function defaultThreads(device: ResolvedDevice, cores: number): number {
  return device.kind === 'cpu' ? cores : Math.max(1, Math.min(cores, Math.max(8, 4 * device.devices.length)));
}

/** Smallest per-worker GPU budget: three staging slots of 1 MiB. */
export const MIN_GPU_MEMORY_PER_THREAD = 3 * 2 ** 20;

/** How a merge on GPUs stages its data: each worker thread merges on one GPU, with slots of its own. */
export interface GpuStaging {
  /** Worker threads per GPU (the workers are spread over the GPUs). */
  workersPerGpu: number;
  /** Staging slots per worker. */
  slots: number;
  /** Bytes of --gpu-memory each worker may use on its GPU. */
  perWorker: number;
  /** Bytes of one staging slot, pinned on the host and on the device (capped: see native/cuda/cuda.h). */
  slotBytes: number;
  /** Pinned host memory of the merge: every worker's slots. */
  pinnedBytes: number;
  /** Device memory the slots take on each GPU. */
  deviceBytes: number;
}

/** The staging of `threads` workers on `gpus` GPUs with `memory` bytes each (the addon's slot rule). */
export function gpuStaging(
  memory: number,
  gpus: number,
  threads: number,
  slots: number,
  maxSlotBytes: number,
): GpuStaging {
  const workersPerGpu = Math.ceil(threads / gpus);
  const perWorker = Math.floor(memory / workersPerGpu);
  // As native/cuda/pipeline.cu cuts it: a third of the worker's budget, capped, 256-byte aligned.
  const slotBytes = Math.floor(Math.min(Math.floor(perWorker / slots), maxSlotBytes) / 256) * 256;
  return {
    workersPerGpu,
    slots,
    perWorker,
    slotBytes,
    pinnedBytes: threads * slots * slotBytes,
    deviceBytes: workersPerGpu * slots * slotBytes,
  };
}

export interface DevicesReport {
  cpu: { cores: number; best: string; kernels: string[] };
  cuda: CudaInfo;
}

/** What this build and machine can merge on: `pma devices`. *
 * @example
 * ```ts
 * import { availableParallelism } from 'node:os';
 * import { devices } from 'pma';
 * const d = devices(availableParallelism());
 * console.log(d.cpu.kernels, d.cuda.built, d.cuda.devices.filter((g) => g.usable).length);
 * ```
 */
export function devices(cores: number): DevicesReport {
  const cpu = native().cpuFeatures();
  return { cpu: { cores, best: cpu.best, kernels: cpu.kernels }, cuda: cudaInfo() };
}
