import { parseArgs } from 'node:util';

import { inspect } from '../inspect.js';
import { formatBytes } from './format.js';
import type { Io } from './io.js';

export const INSPECT_HELP = `Usage: pma inspect <run-dir | checkpoint...> [--tensors] [--json]

Lists the checkpoints found (ordered by step), their files, tensor counts, dtypes and sizes,
and whether they agree on tensor names, shapes and dtypes. Reads headers only.

Options:
  --tensors   also list the newest checkpoint's tensors
  --json      print the result as JSON
  -h, --help  this help

Examples:
  pma inspect runs/exp7
  pma inspect runs/exp7/checkpoint-7000 runs/exp7/checkpoint-8000 --tensors
`;

export async function inspectCommand(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: { tensors: { type: 'boolean' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) {
    io.out(INSPECT_HELP);
    return 0;
  }
  if (positionals.length === 0) {
    io.err(INSPECT_HELP);
    return 2;
  }
  const r = await inspect(positionals);
  if (values.json) {
    io.out(`${JSON.stringify(r, null, 2)}\n`);
    return 0;
  }
  const lines: string[] = [];
  lines.push(`${r.checkpoints.length} checkpoint(s)${r.source === 'run' ? ` in ${positionals[0]}` : ''}, oldest first:`);
  for (const c of r.checkpoints) {
    const dt = Object.entries(c.dtypes).map(([d, n]) => `${d}x${n}`).join(' ');
    lines.push(`  ${String(c.step ?? '-').padStart(10)}  ${c.name}  ${c.layout === 'sharded' ? `${c.files} shards` : '1 file'}  ${c.tensors} tensors  ${formatBytes(c.bytes)}  ${dt}`);
  }
  for (const s of r.skipped) lines.push(`  skipped ${s.path}: ${s.reason}`);
  lines.push(r.mismatch === null ? 'all checkpoints hold the same tensors, shapes and dtypes' : `MISMATCH: ${r.mismatch}`);
  if (values.tensors) {
    lines.push('tensors of the newest checkpoint:');
    for (const t of r.tensors) lines.push(`  ${t.name}  ${t.dtype}  [${t.shape.join(', ')}]  ${formatBytes(t.bytes)}`);
  }
  io.out(`${lines.join('\n')}\n`);
  return 0;
}
