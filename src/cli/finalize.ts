import { finalize } from '../parts.js';
import type { Command } from './command.js';
import { JSON_FLAG } from './common-flags.js';
import type { CommandSpec } from './flags.js';
import { formatBytes, formatDuration } from './format.js';

export const FINALIZE_SPEC: CommandSpec = {
  name: 'finalize',
  usage: '<out> [--json]',
  summary: 'finish a merge split into parts',
  about: `Finishes a merge run in parts (pma merge --part I/N): checks that every part is complete for the
same plan (its record, the sizes and modification times of its files, the inputs unchanged), writes
the shard index, the companion files and pma.json (with every part's host, time, bytes and the
checksum it computed of its files), flushes, and renames <out>.partial to <out>. The part that
completes last does this itself; run it when that part was killed while finalizing, or as the job
that follows the parts. <out> may also be given as <out>.partial.`,
  positionals: { min: 1, max: 1, wrong: 'pma finalize needs the output directory of a merge in parts' },
  groups: [{ title: 'Options', flags: [JSON_FLAG] }],
  examples: ['pma finalize /shared/merged', 'sbatch --dependency=afterok:$ARRAY_JOB --wrap "pma finalize /shared/m"'],
  footer: `Exit status: 0 finalized (or finalized before), 1 parts are missing, running or failed (they
are named; nothing is written to <out>), 2 the output path is refused or an input changed.`,
};

export const finalizeCommand: Command = {
  spec: FINALIZE_SPEC,
  async run({ flags, positionals }, io) {
    const r = await finalize(positionals[0] as string);
    if (flags.json) {
      io.out(`${JSON.stringify(r, null, 2)}\n`);
    } else if (r.status === 'already') {
      io.out(`${r.out}: already finalized\n`);
    } else {
      io.out(
        `finalized ${r.out}: ${r.parts} part(s), ${r.files} file(s), ${formatBytes(r.bytes)} in ${formatDuration(r.elapsedMs)}\n`,
      );
    }
    return 0;
  },
};
