import { availableParallelism } from 'node:os';

import { cudaVersion, devices } from '../run/devices.js';
import type { Command } from './command.js';
import { JSON_FLAG } from './common-flags.js';
import type { CommandSpec } from './flags.js';
import { formatBytes } from './format.js';

export const DEVICES_SPEC: CommandSpec = {
  name: 'devices',
  usage: '[--json]',
  summary: 'the CPU kernels and GPUs pma can use',
  about: `Lists where this build of pma can merge: the CPU's kernels, whether the addon was built with
CUDA (and for which GPU architectures), the driver, and each GPU with its memory. Never fails
for want of a GPU or a driver: it says what is missing.`,
  positionals: { min: 0, max: 0, wrong: 'pma devices takes no arguments (see pma devices --help)' },
  groups: [{ title: 'Options', flags: [JSON_FLAG] }],
};

export const devicesCommand: Command = {
  spec: DEVICES_SPEC,
  run({ flags }, io) {
    const r = devices(availableParallelism());
    if (flags.json) {
      io.out(`${JSON.stringify(r, null, 2)}\n`);
      return 0;
    }
    const c = r.cuda;
    const lines = [`cpu       ${r.cpu.cores} cores, kernels ${r.cpu.kernels.join(', ')} (best ${r.cpu.best})`];
    lines.push(
      c.built
        ? `cuda      built for ${c.archs}, runtime ${cudaVersion(c.runtimeVersion)}, needs ${c.driverNeeded}; driver ${c.driverVersion === 0 ? 'none' : `${c.driverRelease ? `${c.driverRelease}, ` : ''}CUDA ${cudaVersion(c.driverVersion)}`}`
        : 'cuda      not in this build (built without nvcc; reinstall with PMA_CUDA=1 on a machine with the CUDA toolkit)',
    );
    if (c.built && c.devices.length === 0) lines.push(`gpus      none (${c.error ?? 'no CUDA device found'})`);
    for (const d of c.devices) {
      const state = d.usable ? '' : `  unusable: ${d.unusableReason ?? ''}`;
      lines.push(
        `cuda:${d.index}    ${d.name}, compute ${d.computeCapability}, ${d.multiprocessors} SMs, ${d.freeMemory === undefined ? '' : `${formatBytes(d.freeMemory)} free of `}${formatBytes(d.totalMemory)}, ${d.pciBusId}${state}`,
      );
    }
    io.out(`${lines.join('\n')}\n`);
    return 0;
  },
};
