import { cudaInfo } from '../../src/run/devices.js';

const info = cudaInfo();

/** The GPUs this build can run on here; empty in CI (no GPU) and in a CPU-only build. */
export const usableGpus = info.devices.filter((d) => d.usable);

/** Why the GPU tests do not run here, or null when they do: shown in the test names. */
export const gpuSkipReason: string | null =
  usableGpus.length > 0
    ? null
    : !info.built
      ? 'this build has no CUDA (built without nvcc or with PMA_CUDA=0)'
      : info.devices.length > 0
        ? `no usable GPU: ${info.devices.map((d) => d.unusableReason).join('; ')}`
        : `no GPU: ${info.error ?? 'none found'}`;
