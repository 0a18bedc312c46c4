import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import type { NativeCudaDevice, NativeCudaInfo } from '../native.js';
import { PACKAGE_ROOT } from '../util/package.js';

/**
 * Which GPUs a CUDA build of pma can run on, decided from facts the driver gives without creating
 * a context: the build's targets, the device's compute capability, and the driver's and runtime's
 * CUDA versions. A merge still tests the device for real when it first uses it (the kernel load
 * in native/cuda/pipeline.cu), so a wrong answer here is a clear error, never a wrong result.
 */

/** One build target, as CMake writes it: "90-real" (machine code), "90-virtual" (PTX), "90a-real". */
export interface CudaArch {
  /** 90 for sm_90, 100 for sm_100. */
  sm: number;
  /** "a": this exact compute capability only; "f": its family (same major); "": the usual rules. */
  variant: '' | 'a' | 'f';
  real: boolean;
  virtual: boolean;
}

/** The build's targets: "80-real,90-real,90-virtual" (commas or semicolons; "80" is both kinds). */
export function parseArchs(text: string): CudaArch[] {
  const out: CudaArch[] = [];
  for (const item of text.split(/[,;]/)) {
    const m = /^(\d+)([af]?)(?:-(real|virtual))?$/.exec(item.trim());
    if (!m) continue;
    out.push({
      sm: Number(m[1]),
      variant: (m[2] ?? '') as CudaArch['variant'],
      real: m[3] !== 'virtual',
      virtual: m[3] !== 'real',
    });
  }
  return out;
}

/** "9.0" -> 90; "12.0" -> 120. */
function smOf(cc: string): number {
  const [major, minor] = cc.split('.').map(Number);
  return (major ?? 0) * 10 + (minor ?? 0);
}

/**
 * How a device runs the build: its own machine code ('sass': built for the same major version
 * and an equal or lower minor one), PTX that the driver compiles ('ptx': built for an equal or
 * lower compute capability), or not at all (null).
 */
export function kernelFor(cc: string, archs: readonly CudaArch[]): 'sass' | 'ptx' | null {
  const sm = smOf(cc);
  const major = Math.floor(sm / 10);
  const sameMajor = (a: CudaArch) => Math.floor(a.sm / 10) === major && a.sm <= sm;
  const runs = (a: CudaArch) => (a.variant === 'a' ? a.sm === sm : a.variant === 'f' ? sameMajor(a) : null);
  if (archs.some((a) => a.real && (runs(a) ?? sameMajor(a)))) return 'sass';
  if (archs.some((a) => a.virtual && (runs(a) ?? a.sm <= sm))) return 'ptx';
  return null;
}

/** 13000 -> "13.0", 12040 -> "12.4". */
export function cudaVersion(v: number): string {
  return v > 0 ? `${Math.floor(v / 1000)}.${Math.floor((v % 1000) / 10)}` : 'none';
}

/**
 * The oldest Linux driver of each CUDA major version. A runtime of CUDA X.Y runs on any driver of
 * CUDA X.0 or later (minor version compatibility), except that PTX built by X.Y needs a driver
 * of X.Y to compile it (NVIDIA's CUDA compatibility guide).
 */
let firstDrivers: Readonly<Record<string, string>> | undefined;
function firstDriver(major: number): string | undefined {
  // Read when first needed: a merge on the CPU never asks.
  firstDrivers ??= (
    JSON.parse(readFileSync(join(PACKAGE_ROOT, 'native', 'sources.json'), 'utf8')) as {
      cuda_toolkits: { drivers: Record<string, string> };
    }
  ).cuda_toolkits.drivers;
  return firstDrivers[String(major)];
}

/** The driver this build needs, in words: "CUDA 13.0 (Linux driver 580.65.06 or newer)". */
export function driverNeeded(runtimeVersion: number): string {
  const major = Math.floor(runtimeVersion / 1000);
  const release = firstDriver(major);
  return `CUDA ${major}.0${release ? ` (Linux driver ${release} or newer)` : ''}`;
}

/** Why no GPU can be used with this driver, or undefined when the driver is recent enough. */
export function driverProblem(info: NativeCudaInfo): string | undefined {
  if (!info.built) return undefined;
  if (info.driverVersion === 0) return 'no NVIDIA driver was found (libcuda.so.1 did not load)';
  const major = Math.floor(info.runtimeVersion / 1000);
  if (info.runtimeVersion === 0 || info.driverVersion >= major * 1000) return undefined;
  const found = `driver ${info.driverRelease ? `${info.driverRelease}, ` : ''}CUDA ${cudaVersion(info.driverVersion)}`;
  const older =
    major > 12
      ? `, or rebuild pma with a CUDA 12 toolkit (PMA_CUDA=1 CUDA_HOME=/usr/local/cuda-12.9 npm rebuild pma), which needs ${driverNeeded(12000)}`
      : '';
  return `${found} found, ${driverNeeded(info.runtimeVersion)} needed by this build (CUDA ${cudaVersion(info.runtimeVersion)} runtime): update the driver${older}`;
}

/** Why this build cannot run on the device, or undefined when it can. */
export function deviceProblem(
  d: NativeCudaDevice,
  info: NativeCudaInfo,
  archs: readonly CudaArch[],
): string | undefined {
  const kernel = kernelFor(d.computeCapability, archs);
  const sm = smOf(d.computeCapability);
  const rebuild = `rebuild with PMA_CUDA_ARCHS=${sm}-real`;
  if (kernel === null)
    return `compute capability ${d.computeCapability} is not among this build's targets (${info.archs}); ${rebuild}`;
  if (kernel === 'ptx' && info.driverVersion < info.runtimeVersion)
    return `compute capability ${d.computeCapability} runs this build's PTX, which the driver compiles: that needs CUDA ${cudaVersion(info.runtimeVersion)}, and the driver has CUDA ${cudaVersion(info.driverVersion)}; update the driver, or ${rebuild}`;
  return undefined;
}
