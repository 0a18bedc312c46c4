import { PmaError } from '../errors.js';
import { verify } from '../verify.js';
import type { Command } from './command.js';
import { JSON_FLAG } from './common-flags.js';
import type { CommandSpec } from './flags.js';

export const VERIFY_SPEC: CommandSpec = {
  name: 'verify',
  usage: '<merged-dir> [--json]',
  summary: "re-check a merge's headers and checksums",
  about: `Re-reads a checkpoint written by pma merge: checks every safetensors header and the shard index,
and recomputes the checksum of every file (BLAKE3, or SHA-256: the one its pma.json records)
against the sums recorded there.`,
  positionals: { min: 1, max: 1, wrong: 'pma verify needs one merged checkpoint directory (see pma verify --help)' },
  groups: [{ title: 'Options', flags: [JSON_FLAG] }],
  footer: `Exit status: 0 intact, 2 a header, the index or a checksum is wrong (or no pma.json), 1 the
output could not be read.`,
};

export const verifyCommand: Command = {
  spec: VERIFY_SPEC,
  async run({ flags, positionals }, io) {
    const r = await verify(positionals[0] as string);
    if (flags.json) {
      io.out(`${JSON.stringify(r, null, 2)}\n`);
    } else {
      const lines = r.files.map((f) => `${f.ok ? 'ok      ' : 'FAILED  '}${f.name}`);
      for (const f of r.unrecorded) lines.push(`extra   ${f} (not recorded in pma.json)`);
      lines.push(
        r.ok
          ? `${r.out}: intact (${r.tensors} tensors, ${r.files.length} files checked, ${r.checksum})`
          : `${r.out}: ${r.problems.join('; ')}`,
      );
      io.out(`${lines.join('\n')}\n`);
    }
    if (!r.ok)
      throw new PmaError('E_CORRUPT', `${r.out} does not match its pma.json: ${r.problems.join('; ')}`, {
        file: r.out,
      });
    return 0;
  },
};
