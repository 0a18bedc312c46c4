import { parseArgs } from 'node:util';

import { PmaError } from '../errors.js';
import { verify } from '../verify.js';
import type { Io } from './io.js';

export const VERIFY_HELP = `Usage: pma verify <merged-dir> [--json]

Re-reads a checkpoint written by pma merge: checks every safetensors header and the shard index,
and recomputes the SHA-256 of every file against the sums recorded in its pma.json.

Options:
  --json      print the result as JSON
  -h, --help  this help

Exit status: 0 intact, 2 a header, the index or a checksum is wrong (or no pma.json), 1 the
output could not be read.
`;

export async function verifyCommand(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, strict: true, options: { json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } });
  if (values.help) {
    io.out(VERIFY_HELP);
    return 0;
  }
  if (positionals.length !== 1) throw new PmaError('E_USAGE', 'pma verify needs one merged checkpoint directory (see pma verify --help)');
  const r = await verify(positionals[0] as string);
  if (values.json) {
    io.out(`${JSON.stringify(r, null, 2)}\n`);
  } else {
    const lines = r.files.map((f) => `${f.ok ? 'ok      ' : 'FAILED  '}${f.name}`);
    for (const f of r.unrecorded) lines.push(`extra   ${f} (not recorded in pma.json)`);
    lines.push(r.ok ? `${r.out}: intact (${r.tensors} tensors, ${r.files.length} files checked)` : `${r.out}: ${r.problems.join('; ')}`);
    io.out(`${lines.join('\n')}\n`);
  }
  if (!r.ok) throw new PmaError('E_CORRUPT', `${r.out} does not match its pma.json: ${r.problems.join('; ')}`, { file: r.out });
  return 0;
}
