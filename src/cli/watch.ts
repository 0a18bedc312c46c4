import { availableParallelism, setPriority } from 'node:os';
import { parseArgs } from 'node:util';

import { PmaError } from '../errors.js';
import { watchRun, type WatchOptions } from '../watch.js';
import { formatDuration } from './format.js';
import { MERGE_FLAGS } from './merge.js';
import type { Io } from './io.js';

export const WATCH_HELP = `Usage: pma watch <run-dir> --out <dir> [--last N | --interval T --window T] [options]

Waits for new checkpoints in a training run. Each time one is complete, merges the newest window
of complete checkpoints into <out>/merged-step-<S>/ (atomically), keeps the newest --keep, and
runs --exec. A checkpoint is complete when its index and every shard are present at the sizes
their headers claim and its files have not changed for --settle (or its --marker file exists):
a half-written checkpoint is never merged. State is kept in <out>/.pma-watch.json, so a restarted
watcher carries on (and resumes a merge it was stopped in). Runs at low CPU and I/O priority
(nice 10) with --threads 2 by default, so the trainer keeps the machine. Ctrl-C stops it.

Options:
  --out DIR            where the merges go (required)
  --last N, --interval T, --window T, --tokens-per-step T, --from-step S
                       the window, as for pma merge
  --every K            merge on every K-th new checkpoint (default 1)
  --keep M             keep the newest M merges, delete older ones (default: keep all)
  --settle D           how long a checkpoint's files must stay unchanged (default 60s)
  --poll D             how often to look at the run directory (default 10s)
  --marker NAME        a file whose presence marks a checkpoint complete (e.g. .complete);
                       --marker latest: the run's latest file (DeepSpeed) names the newest
                       complete checkpoint
  --exec "CMD {dir}"   a shell command to run after each merge, {dir} the merge's directory
  --to-step, --method, --alpha, --schedule, --weights, --dtype, --accumulate, --on-nonfinite,
  --threads, --device, --gpu-memory, --kernel   as for pma merge
  --json               one JSON line per merge on stdout
  -h, --help           this help

Example:
  pma watch runs/exp7 --out runs/exp7-pma --last 10 --keep 3 --exec "python eval.py {dir}"
`;

const PASS_THROUGH = {
  ...MERGE_FLAGS,
  every: 'mergeEvery',
  keep: 'keep',
  settle: 'settleMs',
  poll: 'pollMs',
  marker: 'marker',
  exec: 'exec',
} as const;

export async function watchCommand(argv: string[], io: Io): Promise<number> {
  const strings = Object.fromEntries(Object.keys(PASS_THROUGH).map((k) => [k, { type: 'string' as const }]));
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: { ...strings, out: { type: 'string', short: 'o' }, weights: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) {
    io.out(WATCH_HELP);
    return 0;
  }
  if (positionals.length !== 1) throw new PmaError('E_USAGE', 'pma watch needs exactly one run directory (see pma watch --help)');
  if (values.out === undefined) throw new PmaError('E_USAGE', 'pma watch needs --out <dir>');
  const opts: Record<string, unknown> = { run: positionals[0], out: values.out, threads: String(Math.min(2, availableParallelism())) };
  for (const [flag, key] of Object.entries(PASS_THROUGH)) {
    const v = (values as Record<string, unknown>)[flag];
    if (v !== undefined) opts[key] = v;
  }
  if (values.weights !== undefined) opts.weights = String(values.weights).split(',');
  try {
    // Under CFQ and BFQ a process's I/O priority follows its nice value.
    setPriority(10);
  } catch {
    /* not allowed here: run at normal priority */
  }
  const ac = new AbortController();
  const stop = () => ac.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    io.err(`pma watch: watching ${positionals[0]} (Ctrl-C to stop)\n`);
    for await (const m of watchRun({ ...(opts as unknown as WatchOptions), signal: ac.signal })) {
      const r = m.result;
      if (values.json) {
        io.out(`${JSON.stringify({ step: m.step, dir: m.dir, checkpoints: r.plan.checkpoints.map((c) => c.path), weights: r.plan.weights.w64, seconds: r.elapsedMs / 1000, removed: m.removed, execStatus: m.execStatus ?? null })}\n`);
      } else {
        const exec = m.execStatus === undefined ? '' : `; exec exited ${m.execStatus}`;
        io.out(`merged step ${m.step}: ${r.plan.checkpoints.length} checkpoints -> ${m.dir} in ${formatDuration(r.elapsedMs)}${m.removed.length > 0 ? `; removed ${m.removed.join(', ')}` : ''}${exec}\n`);
      }
    }
  } catch (e) {
    if (!(ac.signal.aborted && e instanceof PmaError && e.code === 'E_ABORTED')) throw e;
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
  io.err('pma watch: stopped\n');
  return 0;
}
