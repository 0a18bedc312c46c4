import { describe, expect, it } from 'vitest';

import { native, type NativeCudaDevice, type NativeCudaInfo } from '../../src/native.js';
import { deviceProblem, driverNeeded, driverProblem, kernelFor, parseArchs } from '../../src/run/cuda-compat.js';
import { cudaInfo } from '../../src/run/devices.js';

// The default build's targets (native/sources.json), as CMake passes them to the addon.
const DEFAULT = parseArchs('80-real,90-real,90-virtual');

const info = (o: Partial<NativeCudaInfo>): NativeCudaInfo => ({
  built: true,
  archs: '80-real,90-real,90-virtual',
  runtimeVersion: 13000,
  driverVersion: 13000,
  stagingSlots: 3,
  maxSlotBytes: 2 ** 28,
  devices: [],
  ...o,
});
const gpu = (cc: string): NativeCudaDevice => ({
  index: 0,
  name: `a GPU of compute capability ${cc}`,
  pciBusId: '00000000:01:00.0',
  computeCapability: cc,
  multiprocessors: 100,
  totalMemory: 80e9,
});

describe('which GPUs a build runs on, without a context', () => {
  it('reads the targets as CMake writes them', () => {
    expect(parseArchs('80-real;90a-real;100f-virtual;120')).toEqual([
      { sm: 80, variant: '', real: true, virtual: false },
      { sm: 90, variant: 'a', real: true, virtual: false },
      { sm: 100, variant: 'f', real: false, virtual: true },
      { sm: 120, variant: '', real: true, virtual: true },
    ]);
  });

  it.each([
    ['8.0', 'sass'], // A100
    ['8.6', 'sass'], // A10, RTX 3090: sm_80 machine code runs on later minors
    ['8.9', 'sass'], // L4, L40S
    ['9.0', 'sass'], // H100, H200
    ['10.0', 'ptx'], // B200: compute_90 PTX, compiled by the driver
    ['12.0', 'ptx'], // RTX 5090
    ['7.0', null], // V100: older than every target
    ['7.5', null], // T4
  ] as const)('compute capability %s runs the default build as %s', (cc, want) => {
    expect(kernelFor(cc, DEFAULT)).toBe(want);
  });

  it('runs arch-specific machine code on that compute capability only', () => {
    expect(kernelFor('9.0', parseArchs('90a-real'))).toBe('sass');
    expect(kernelFor('10.0', parseArchs('90a-real'))).toBe(null);
    expect(kernelFor('10.3', parseArchs('100f-real'))).toBe('sass');
    expect(kernelFor('12.0', parseArchs('100f-real'))).toBe(null);
  });

  it('says in plain words when the driver is older than the build needs', () => {
    const why = driverProblem(info({ driverVersion: 12040, driverRelease: '550.54.15' }));
    expect(why).toBe(
      'driver 550.54.15, CUDA 12.4 found, CUDA 13.0 (Linux driver 580.65.06 or newer) needed by this build (CUDA 13.0 runtime): update the driver, or rebuild pma with a CUDA 12 toolkit (PMA_CUDA=1 CUDA_HOME=/usr/local/cuda-12.9 npm rebuild pma), which needs CUDA 12.0 (Linux driver 525.60.13 or newer)',
    );
    expect(driverProblem(info({ driverVersion: 0 }))).toMatch(/^no NVIDIA driver was found/);
  });

  it('lets a CUDA 12.x build run on any CUDA 12 driver (minor version compatibility)', () => {
    expect(driverProblem(info({ runtimeVersion: 12090, driverVersion: 12000 }))).toBeUndefined();
    expect(driverNeeded(12090)).toBe('CUDA 12.0 (Linux driver 525.60.13 or newer)');
    // ... except where the kernel is PTX, which needs the toolkit's own version to compile.
    const i = info({ runtimeVersion: 12090, driverVersion: 12040 });
    expect(deviceProblem(gpu('9.0'), i, DEFAULT)).toBeUndefined();
    expect(deviceProblem(gpu('10.0'), i, DEFAULT)).toMatch(
      /runs this build's PTX, .* needs CUDA 12\.9, and the driver has CUDA 12\.4; update the driver, or rebuild with PMA_CUDA_ARCHS=100-real$/,
    );
  });

  it('names the rebuild that would cover an older GPU', () => {
    expect(deviceProblem(gpu('7.0'), info({}), DEFAULT)).toBe(
      "compute capability 7.0 is not among this build's targets (80-real,90-real,90-virtual); rebuild with PMA_CUDA_ARCHS=70-real",
    );
  });

  it.skipIf(native().cuda)('reports a build without CUDA as such', () => {
    const c = cudaInfo();
    expect(c.driverNeeded).toBeNull();
    expect(c.devices).toEqual([]);
    expect(c.error).toBe('built without CUDA');
  });

  it.skipIf(!native().cuda || native().cudaInfo().driverVersion > 0)(
    'says that a CUDA build found no driver, and which one it needs (a machine without an NVIDIA driver)',
    () => {
      const c = cudaInfo();
      expect(c.driverNeeded).toMatch(/^CUDA \d+\.0/);
      expect(c.devices).toEqual([]);
      expect(c.error).toMatch(/^no NVIDIA driver was found \(libcuda\.so\.1 did not load\); the CUDA runtime says: .+/);
    },
  );
});
