import { writeFile } from 'node:fs/promises';

import { analyze } from '../analyze/analyze.js';
import { reportHtml } from '../analyze/report.js';
import { fsError } from '../errors.js';
import type { Command } from './command.js';
import { KERNEL_FLAG, SELECTION_FLAGS, SELECTION_TITLE } from './common-flags.js';
import type { CommandSpec } from './flags.js';
import { untilStopped } from './stop.js';

export const ANALYZE_SPEC: CommandSpec = {
  name: 'analyze',
  usage: '<run-dir | checkpoint...> [--last N ...] [--report report.html] [--json]',
  summary: 'how the checkpoints deviate from their average',
  about: `How the selected checkpoints deviate from their average, per tensor, per layer and overall: each
checkpoint's distance from the mean, the pairwise cosine of those deviations (negative: they
cancel in the average), the distance between consecutive checkpoints, and the share of the
newest checkpoint's norm the average changes. Reads like a merge (chunk by chunk, bounded
memory, on the native engine) and writes nothing but the report.`,
  positionals: {
    min: 1,
    max: Infinity,
    wrong: 'pma analyze needs a run directory or checkpoints (see pma analyze --help)',
  },
  groups: [
    { title: SELECTION_TITLE, flags: SELECTION_FLAGS },
    {
      title: 'Options',
      flags: [
        {
          name: 'report',
          type: 'string',
          value: 'FILE',
          help: 'write a self-contained HTML page with charts (SVG, no network)',
        },
        { name: 'json', type: 'boolean', help: 'print every number as JSON' },
        {
          name: 'threads',
          type: 'string',
          option: 'threads',
          value: 'N',
          help: 'worker threads (default: the number of cores)',
        },
        KERNEL_FLAG,
      ],
    },
  ],
  examples: ['pma analyze runs/exp7 --last 10 --report exp7-pma.html'],
};

const fmt = (x: number | null) => (x === null ? '-' : x.toPrecision(3));

export const analyzeCommand: Command = {
  spec: ANALYZE_SPEC,
  async run({ options, flags, positionals }, io) {
    const r = await untilStopped((signal) => analyze({ ...options, inputs: positionals, signal }));
    for (const w of r.warnings) io.err(`warning: ${w}\n`);
    const report = typeof flags.report === 'string' ? flags.report : undefined;
    if (report !== undefined) {
      await writeFile(report, reportHtml(r)).catch((e: unknown) => {
        throw fsError(e, 'cannot write the report', report);
      });
    }
    if (flags.json) {
      io.out(`${JSON.stringify(r, null, 2)}\n`);
      return 0;
    }
    const lines = [
      `${r.checkpoints.length} checkpoints, oldest first: ${r.checkpoints.map((c) => c.step ?? c.name).join(', ')}`,
      `the average changes the newest checkpoint by ${fmt(r.overall.removedShare)} of its norm; mean pairwise cosine of the deviations ${fmt(r.overall.meanPairCosine)}`,
      `deviation from the mean per checkpoint: ${r.overall.deviationNorm.map(fmt).join(', ')}`,
      `distance between consecutive checkpoints: ${r.overall.consecutive.map(fmt).join(', ')}`,
      'layer        share changed  mean cosine',
      ...r.layers.map(
        (l) => `${l.layer.padEnd(12)} ${fmt(l.removedShare).padStart(13)}  ${fmt(l.meanPairCosine).padStart(11)}`,
      ),
    ];
    if (report !== undefined) lines.push(`report: ${report}`);
    io.out(`${lines.join('\n')}\n`);
    return 0;
  },
};
