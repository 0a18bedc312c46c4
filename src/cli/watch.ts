import { availableParallelism, setPriority } from 'node:os';

import { PmaError, isAbort } from '../errors.js';
import { watchRun, type WatchOptions } from '../watch.js';
import type { Command } from './command.js';
import {
  CHECKSUM_FLAG,
  DEVICE_FLAGS,
  DTYPE_FLAGS,
  FORMAT_FLAG,
  SELECTION_FLAGS,
  WEIGHT_FLAGS,
  outFlag,
} from './common-flags.js';
import { without, type CommandSpec } from './flags.js';
import { formatDuration } from './format.js';
import { untilStopped } from './stop.js';

export const WATCH_SPEC: CommandSpec = {
  name: 'watch',
  usage: '<run-dir> --out <dir> [--last N | --interval T --window T] [options]',
  summary: 'merge the newest window each time a checkpoint lands',
  about: `Waits for new checkpoints in a training run. Each time one is complete, merges the newest window
of complete checkpoints into <out>/merged-step-<S>/ (atomically), keeps the newest --keep, and
runs --exec. A checkpoint is complete when its index and every shard are present at the sizes
their headers claim and its files have not changed for --settle (or its --marker file exists):
a half-written checkpoint is never merged. State is kept in <out>/.pma-watch.json, so a restarted
watcher carries on (and resumes a merge it was stopped in). Runs at low CPU and I/O priority
(nice 10) with --threads 2 by default, so the trainer keeps the machine. Ctrl-C stops it.`,
  positionals: { min: 1, max: 1, wrong: 'pma watch needs exactly one run directory (see pma watch --help)' },
  groups: [
    { title: 'The window, as for pma merge', flags: without(SELECTION_FLAGS, 'every') },
    {
      title: 'Watching',
      flags: [
        outFlag('where the merges go (required)'),
        {
          name: 'every',
          type: 'string',
          option: 'mergeEvery',
          value: 'K',
          help: 'merge on every K-th new checkpoint (default 1)',
        },
        {
          name: 'keep',
          type: 'string',
          option: 'keep',
          value: 'M',
          help: 'keep the newest M merges, delete older ones (default: keep all)',
        },
        {
          name: 'settle',
          type: 'string',
          option: 'settleMs',
          value: 'D',
          help: "how long a checkpoint's files must stay unchanged (default 60s)",
        },
        {
          name: 'poll',
          type: 'string',
          option: 'pollMs',
          value: 'D',
          help: 'how often to look at the run directory (default 10s)',
        },
        {
          name: 'marker',
          type: 'string',
          option: 'marker',
          value: 'NAME',
          help: [
            'a file whose presence marks a checkpoint complete (e.g. .complete);',
            "--marker latest: the run's latest file (DeepSpeed) names the newest",
            'complete checkpoint',
          ],
        },
        {
          name: 'exec',
          type: 'string',
          option: 'exec',
          value: '"CMD {dir}"',
          help: "a shell command to run after each merge, {dir} the merge's directory",
        },
      ],
    },
    {
      title: 'The merge, as for pma merge',
      flags: [...WEIGHT_FLAGS, ...DTYPE_FLAGS, FORMAT_FLAG, CHECKSUM_FLAG, ...DEVICE_FLAGS],
    },
    { title: 'Reporting', flags: [{ name: 'json', type: 'boolean', help: 'one JSON line per merge on stdout' }] },
  ],
  examples: ['pma watch runs/exp7 --out runs/exp7-pma --last 10 --keep 3 --exec "python eval.py {dir}"'],
};

export const watchCommand: Command = {
  spec: WATCH_SPEC,
  async run({ options, flags, positionals }, io) {
    if (options.out === undefined) throw new PmaError('E_USAGE', 'pma watch needs --out <dir>');
    const opts = {
      threads: String(Math.min(2, availableParallelism())),
      ...options,
      run: positionals[0],
    } as unknown as WatchOptions;
    try {
      // Under CFQ and BFQ a process's I/O priority follows its nice value.
      setPriority(10);
    } catch {
      /* not allowed here: run at normal priority */
    }
    io.err(`pma watch: watching ${positionals[0]} (Ctrl-C to stop)\n`);
    await untilStopped(async (signal) => {
      try {
        for await (const m of watchRun({ ...opts, signal })) {
          const r = m.result;
          for (const w of r.plan.warnings) io.err(`warning: step ${m.step}: ${w}\n`);
          for (const f of r.nonfinite)
            io.err(`warning: step ${m.step}: ${f.count} NaN/Inf in ${f.tensor} of ${f.checkpoint} (merged anyway)\n`);
          if (flags.json) {
            const line = {
              step: m.step,
              dir: m.dir,
              checkpoints: r.plan.checkpoints.map((c) => c.path),
              weights: r.plan.weights.w64,
              seconds: r.elapsedMs / 1000,
              removed: m.removed,
              execStatus: m.execStatus ?? null,
              warnings: r.plan.warnings,
            };
            io.out(`${JSON.stringify(line)}\n`);
          } else {
            const exec = m.execStatus === undefined ? '' : `; exec exited ${m.execStatus}`;
            const removed = m.removed.length > 0 ? `; removed ${m.removed.join(', ')}` : '';
            io.out(
              `merged step ${m.step}: ${r.plan.checkpoints.length} checkpoints -> ${m.dir} in ${formatDuration(r.elapsedMs)}${removed}${exec}\n`,
            );
          }
        }
      } catch (e) {
        if (!(signal.aborted && isAbort(e))) throw e;
      }
    });
    io.err('pma watch: stopped\n');
    return 0;
  },
};
