import { parseArgs } from 'node:util';

import { formatTokens } from '../checkpoints/tokens.js';
import { recommend } from '../recommend.js';
import type { Io } from './io.js';

export const RECOMMEND_HELP = `Usage: pma recommend --total-params N [--active-params N] [--tokens-per-step T] [--json]

Prints the checkpoint interval (in tokens) and the number of checkpoints to merge that the PMA
paper found best at your model's scale, and the pma merge options that select that window.

Options:
  --total-params N      total parameters: 13B, 700M, ...
  --active-params N     parameters active per token (fewer than the total: a mixture of experts)
  --tokens-per-step T   tokens per optimizer step, to give the interval in steps as well
  --json                the numbers as JSON
  -h, --help            this help

Example:
  pma recommend --total-params 13B --active-params 1.3B --tokens-per-step 4M
`;

export async function recommendCommand(argv: string[], io: Io): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      'total-params': { type: 'string' },
      'active-params': { type: 'string' },
      'tokens-per-step': { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    io.out(RECOMMEND_HELP);
    return 0;
  }
  const r = recommend({
    totalParams: values['total-params'] as string,
    ...(values['active-params'] !== undefined ? { activeParams: values['active-params'] } : {}),
    ...(values['tokens-per-step'] !== undefined ? { tokensPerStep: values['tokens-per-step'] } : {}),
  });
  if (values.json) {
    io.out(`${JSON.stringify(r, null, 2)}\n`);
    return 0;
  }
  const model = r.architecture === 'moe' ? `${formatTokens(r.activeParams)}/${formatTokens(r.totalParams)} MoE (active/total)` : `${formatTokens(r.totalParams)} dense`;
  const steps = r.intervalSteps === undefined ? '' : ` (${r.intervalSteps} steps)`;
  io.out([
    `model     ${model}`,
    `interval  save a checkpoint every ${formatTokens(r.intervalTokens)} tokens${steps}`,
    `merge     the last ${r.n} checkpoints, a window of ${formatTokens(r.windowTokens)} tokens`,
    `          pma merge <run> ${r.mergeArgs.join(' ')} --out <dir>`,
    `basis     ${r.basis}${r.extrapolated ? '; outside these sizes, scaled in proportion to the nearest (extrapolated)' : ''}`,
    `source    ${r.source}`,
    `caveat    ${r.caveat}`,
  ].join('\n') + '\n');
  return 0;
}
