import { partsStatus } from '../parts.js';
import type { Command } from './command.js';
import { JSON_FLAG } from './common-flags.js';
import type { CommandSpec } from './flags.js';

export const STATUS_SPEC: CommandSpec = {
  name: 'status',
  usage: '<out | out.partial> [--json]',
  summary: 'where each part of a merge in parts stands',
  about: `Shows each part of a merge run in parts (pma merge --part I/N): done (host and time), running
(the lock's holder: pid, host, last heartbeat), stopped part-way (rerun it: it resumes) or not
started; or that the merge is finalized.`,
  positionals: { min: 1, max: 1, wrong: 'pma status needs the output directory of a merge in parts' },
  groups: [{ title: 'Options', flags: [JSON_FLAG] }],
  examples: ['pma status /shared/merged', 'pma status /shared/merged.partial --json'],
  footer: `Exit status: 0 (whatever the parts' states), 2 no merge in parts there.`,
};

export const statusCommand: Command = {
  spec: STATUS_SPEC,
  async run({ flags, positionals }, io) {
    const s = await partsStatus(positionals[0] as string);
    if (flags.json) {
      io.out(`${JSON.stringify(s, null, 2)}\n`);
      return 0;
    }
    if (s.finalized) {
      io.out(`${s.out}: finalized\n`);
      return 0;
    }
    const done = s.parts.filter((p) => p.state === 'done').length;
    io.out(`${s.out}: ${done} of ${s.count} part(s) done\n${s.lines.map((l) => `  ${l}\n`).join('')}`);
    return 0;
  },
};
