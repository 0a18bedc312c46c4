import { formatTokens } from '../checkpoints/tokens.js';
import { recommend, type RecommendOptions } from '../recommend.js';
import type { Command } from './command.js';
import type { CommandSpec } from './flags.js';

export const RECOMMEND_SPEC: CommandSpec = {
  name: 'recommend',
  usage: '--total-params N [--active-params N] [--tokens-per-step T] [--json]',
  summary: 'the checkpoint interval and N the PMA paper found best at that scale',
  about: `Prints the checkpoint interval (in tokens) and the number of checkpoints to merge that the PMA
paper found best at your model's scale, and the pma merge options that select that window.`,
  positionals: { min: 0, max: 0, wrong: 'pma recommend takes no positional arguments (see pma recommend --help)' },
  groups: [
    {
      title: 'Options',
      flags: [
        {
          name: 'total-params',
          type: 'string',
          option: 'totalParams',
          value: 'N',
          help: 'total parameters: 13B, 700M, ...',
        },
        {
          name: 'active-params',
          type: 'string',
          option: 'activeParams',
          value: 'N',
          help: ['parameters active per token (fewer than the total:', 'a mixture of experts)'],
        },
        {
          name: 'tokens-per-step',
          type: 'string',
          option: 'tokensPerStep',
          value: 'T',
          help: 'tokens per optimizer step, to give the interval in steps as well',
        },
        { name: 'json', type: 'boolean', help: 'the numbers as JSON' },
      ],
    },
  ],
  examples: ['pma recommend --total-params 13B --active-params 1.3B --tokens-per-step 4M'],
};

export const recommendCommand: Command = {
  spec: RECOMMEND_SPEC,
  run({ options, flags }, io) {
    const r = recommend(options as unknown as RecommendOptions);
    if (flags.json) {
      io.out(`${JSON.stringify(r, null, 2)}\n`);
      return 0;
    }
    const model =
      r.architecture === 'moe'
        ? `${formatTokens(r.activeParams)}/${formatTokens(r.totalParams)} MoE (active/total)`
        : `${formatTokens(r.totalParams)} dense`;
    const steps = r.intervalSteps === undefined ? '' : ` (${r.intervalSteps} steps)`;
    io.out(
      [
        `model     ${model}`,
        `interval  save a checkpoint every ${formatTokens(r.intervalTokens)} tokens${steps}`,
        `merge     the last ${r.n} checkpoints, a window of ${formatTokens(r.windowTokens)} tokens`,
        `          pma merge <run> ${r.mergeArgs.join(' ')} --out <dir>`,
        `basis     ${r.basis}${r.extrapolated ? '; outside these sizes, scaled in proportion to the nearest (extrapolated)' : ''}`,
        `source    ${r.source}`,
        `caveat    ${r.caveat}`,
      ].join('\n') + '\n',
    );
    return 0;
  },
};
