import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';

import { cudaVersion, devices } from '../devices.js';
import { formatBytes } from './format.js';
import type { Io } from './io.js';

export const DEVICES_HELP = `Usage: pma devices [--json]

Lists where this build of pma can merge: the CPU's kernels, whether the addon was built with
CUDA (and for which GPU architectures), the driver, and each GPU with its memory. Never fails
for want of a GPU or a driver: it says what is missing.

Options:
  --json      print the result as JSON
  -h, --help  this help
`;

export async function devicesCommand(argv: string[], io: Io): Promise<number> {
  const { values } = parseArgs({ args: argv, strict: true, options: { json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } });
  if (values.help) {
    io.out(DEVICES_HELP);
    return 0;
  }
  const r = devices(availableParallelism());
  if (values.json) {
    io.out(`${JSON.stringify(r, null, 2)}\n`);
    return 0;
  }
  const c = r.cuda;
  const lines = [`cpu       ${r.cpu.cores} cores, kernels ${r.cpu.kernels.join(', ')} (best ${r.cpu.best})`];
  lines.push(c.built ? `cuda      built for ${c.archs}, runtime ${cudaVersion(c.runtimeVersion)}, driver ${cudaVersion(c.driverVersion)}` : 'cuda      not in this build (built without nvcc; reinstall with PMA_CUDA=1 on a machine with the CUDA toolkit)');
  if (c.built && c.devices.length === 0) lines.push(`gpus      none (${c.error ?? 'no CUDA device found'})`);
  for (const d of c.devices) {
    const state = d.usable ? '' : `  unusable: ${d.unusableReason ?? ''}`;
    lines.push(`cuda:${d.index}    ${d.name}, compute ${d.computeCapability}, ${d.multiprocessors} SMs, ${formatBytes(d.freeMemory)} free of ${formatBytes(d.totalMemory)}, ${d.pciBusId}${state}`);
  }
  io.out(`${lines.join('\n')}\n`);
  return 0;
}
