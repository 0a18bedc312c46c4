import type { Command } from './command.js';
import { helpText } from './flags.js';

/**
 * docs/cli.md: every command's help, made from the same tables as the parsers, so the reference
 * cannot drift from the tool (scripts/cli-docs.mjs writes it; a test checks it is current).
 */
export function cliReference(commands: readonly Command[]): string {
  const parts = [
    '# pma command-line reference',
    '',
    '<!-- Generated from the command tables in src/cli/ by `node scripts/cli-docs.mjs`; do not edit. -->',
    '',
    'Every command prints the same text with `--help`. Exit status: 0 done, 2 bad usage or bad input',
    '(the message names the file, the tensor and what was expected), 1 any other failure',
    '(interrupted, out of space, I/O, a bug). Errors are printed as `pma: error [CODE]: message`;',
    'the codes are listed in [reliability.md](reliability.md).',
    '',
    ...commands.map((c) => `- [pma ${c.spec.name}](#pma-${c.spec.name}): ${c.spec.summary}`),
    '',
  ];
  for (const c of commands) parts.push(`## pma ${c.spec.name}`, '', '```text', helpText(c.spec).trimEnd(), '```', '');
  return parts.join('\n');
}
