import { PmaError } from '../errors.js';
import { native, type CudaDeviceInfo, type CudaInfo } from '../native.js';
import * as v from '../validate.js';

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
  if (new Set(indices).size !== indices.length) throw v.invalid('device', 'each CUDA device at most once', value);
  return { kind: 'cuda', indices };
}

/** The name of a resolved device, as the summary and pma.json print it. */
export function deviceName(d: ResolvedDevice): string {
  return d.kind === 'cpu' ? 'cpu' : `cuda:${d.devices.map((x) => x.index).join(',')}`;
}

/** The default budget per device: a tenth of its free memory, at most 1 GiB. */
export function defaultGpuMemory(free: number): number {
  return Math.max(64 * 2 ** 20, Math.min(2 ** 30, Math.floor(free / 10)));
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
  const info = native().cudaInfo();
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
  const budget = memory ?? defaultGpuMemory(Math.min(...devices.map((d) => d.freeMemory)));
  return { kind: 'cuda', devices, memory: budget };
}

/** Worker threads when none are asked for: every core on the CPU; on GPUs, readers enough to feed them. */
export function defaultThreads(device: ResolvedDevice, cores: number): number {
  return device.kind === 'cpu' ? cores : Math.max(1, Math.min(cores, Math.max(8, 4 * device.devices.length)));
}

/** Smallest per-worker GPU budget: three staging slots of 1 MiB. */
export const MIN_GPU_MEMORY_PER_THREAD = 3 * 2 ** 20;

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
  return { cpu: { cores, best: cpu.best, kernels: cpu.kernels }, cuda: native().cudaInfo() };
}

/** 13000 -> "13.0". */
export function cudaVersion(v: number): string {
  return v > 0 ? `${Math.floor(v / 1000)}.${Math.floor((v % 1000) / 10)}` : 'none';
}
