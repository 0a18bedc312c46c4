import { writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';

import { analyze, type AnalyzeOptions } from '../analyze/analyze.js';
import { reportHtml } from '../analyze/report.js';
import { fsError, PmaError } from '../errors.js';
import type { Io } from './io.js';
import { MERGE_FLAGS } from './merge.js';

export const ANALYZE_HELP = `Usage: pma analyze <run-dir | checkpoint...> [--last N ...] [--report report.html] [--json]

How the selected checkpoints deviate from their average, per tensor, per layer and overall: each
checkpoint's distance from the mean, the pairwise cosine of those deviations (negative: they
cancel in the average), the distance between consecutive checkpoints, and the share of the
newest checkpoint's norm the average changes. Reads like a merge (chunk by chunk, bounded
memory, on the native engine) and writes nothing but the report.

Options:
  --last N, --every K, --from-step S, --to-step S, --interval T, --window T, --tokens-per-step T
                         the selection, as for pma merge
  --report FILE          write a self-contained HTML page with charts (SVG, no network)
  --json                 print every number as JSON
  --threads N            worker threads (default: the number of cores)
  -h, --help             this help

Example:
  pma analyze runs/exp7 --last 10 --report exp7-pma.html
`;

const FLAGS = ['last', 'every', 'from-step', 'to-step', 'interval', 'window', 'tokens-per-step', 'threads'] as const;
const fmt = (x: number | null) => (x === null ? '-' : x.toPrecision(3));

export async function analyzeCommand(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: { ...Object.fromEntries(FLAGS.map((f) => [f, { type: 'string' as const }])), report: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) {
    io.out(ANALYZE_HELP);
    return 0;
  }
  if (positionals.length === 0) throw new PmaError('E_USAGE', 'pma analyze needs a run directory or checkpoints (see pma analyze --help)');
  const opts: Record<string, unknown> = { inputs: positionals };
  for (const f of FLAGS) {
    const v = (values as Record<string, unknown>)[f];
    if (v !== undefined) opts[(MERGE_FLAGS as Record<string, string>)[f] ?? f] = v;
  }
  const ac = new AbortController();
  const stop = () => ac.abort();
  process.once('SIGINT', stop);
  let r;
  try {
    r = await analyze({ ...(opts as unknown as AnalyzeOptions), signal: ac.signal });
  } finally {
    process.off('SIGINT', stop);
  }
  if (values.report !== undefined) {
    await writeFile(values.report, reportHtml(r)).catch((e: unknown) => { throw fsError(e, 'cannot write the report', values.report as string); });
  }
  if (values.json) {
    io.out(`${JSON.stringify(r, null, 2)}\n`);
  } else {
    const lines = [
      `${r.checkpoints.length} checkpoints, oldest first: ${r.checkpoints.map((c) => c.step ?? c.name).join(', ')}`,
      `the average changes the newest checkpoint by ${fmt(r.overall.removedShare)} of its norm; mean pairwise cosine of the deviations ${fmt(r.overall.meanPairCosine)}`,
      `deviation from the mean per checkpoint: ${r.overall.deviationNorm.map(fmt).join(', ')}`,
      `distance between consecutive checkpoints: ${r.overall.consecutive.map(fmt).join(', ')}`,
      'layer        share changed  mean cosine',
      ...r.layers.map((l) => `${l.layer.padEnd(12)} ${fmt(l.removedShare).padStart(13)}  ${fmt(l.meanPairCosine).padStart(11)}`),
    ];
    if (values.report !== undefined) lines.push(`report: ${values.report}`);
    io.out(`${lines.join('\n')}\n`);
  }
  return 0;
}
