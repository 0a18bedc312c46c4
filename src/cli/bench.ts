import { parseArgs } from 'node:util';

import { formatBenchReport, runBench } from '../bench/run.js';
import type { BenchOptions } from '../bench/options.js';
import type { Io } from './io.js';

export const BENCH_HELP = `Usage: pma bench [--size 1GB --inputs 5 --dtype bf16 | <run-dir | checkpoint...>] [options]

Measures how fast pma merges on this machine, against what the machine can do at best in the same
run: read the inputs once (cat of the same files into /dev/null) and write the output once (write
+ fsync of an output-sized file in the same filesystem). Prints the machine, the parameters and,
for every thread count x io mode, the median merge time, the input GB/s and the ratio to that
floor (read + write). Without inputs it generates a series of MoE-shaped checkpoints (4 shards +
index each); with inputs it merges those, writing only into --dir, never beside them.

Generated inputs (without positional inputs):
  --size SIZE                  tensor bytes per checkpoint: 1GB = 1e9, 1GiB = 2^30, 256MB (default 1GB)
  --inputs N                   checkpoints to generate and merge (default 5)
  --dtype bf16|f16|f32         dtype of the generated tensors (default bf16)
  --regenerate                 regenerate even when the cached series in --dir matches

Given inputs:
  <run-dir | checkpoint...>    as for pma merge; nothing is generated
  --last N                     merge the N newest only

Measurement:
  --runs R                     timed rounds of every measurement; medians reported (default 5)
  --threads LIST               thread counts, comma-separated (default 1 and the number of cores)
  --io LIST                    pread and/or mmap, comma-separated (default pread)
  --out-dtype keep|bf16|f16|f32   output dtype of the merges (default keep)
  --kernel auto|scalar|avx2|avx512   arithmetic backend (default auto)
  --device LIST                devices to merge on, comma-separated: cpu, cuda, cuda:0,1,
                               cuda:all, auto (default cpu); one table row each

Files:
  --dir DIR                    work directory: generated inputs, merge output, write-ceiling file
                               (default: pma-bench in the system's temporary directory). The output
                               is deleted after every run; generated inputs at the end, unless
                               --keep or an explicit --dir (then they are a cache for the next run)
  --keep                       keep the generated inputs

Reporting:
  --json                       print the result object (every run's time) instead of the report
  -q, --quiet                  no progress messages on stderr
  -h, --help                   this help

Examples:
  pma bench                                        # 5 x 1GB bf16, threads 1 and all cores, pread
  pma bench --size 256MB --inputs 4 --runs 3       # a quick look
  pma bench --size 5GB --inputs 5 --threads 1,2,4 --io pread,mmap --dir /scratch/pma-bench
  pma bench --size 1GB --inputs 5 --threads 8 --device cpu,cuda   # CPU against GPU, same files
  pma bench --dtype f32 --out-dtype bf16 --json > bench.json
  pma bench runs/exp7 --last 4 --runs 3 --dir /scratch/bench-out   # your own checkpoints

The full table of the repository's benchmark (several input counts and dtypes): npm run bench.
Exit status: 0 done, 2 bad usage or bad input, 1 any other failure.
`;

export async function benchCommand(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      size: { type: 'string' },
      inputs: { type: 'string' },
      dtype: { type: 'string' },
      regenerate: { type: 'boolean' },
      last: { type: 'string' },
      runs: { type: 'string' },
      threads: { type: 'string' },
      io: { type: 'string' },
      'out-dtype': { type: 'string' },
      kernel: { type: 'string' },
      device: { type: 'string' },
      dir: { type: 'string' },
      keep: { type: 'boolean' },
      json: { type: 'boolean' },
      quiet: { type: 'boolean', short: 'q' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    io.out(BENCH_HELP);
    return 0;
  }
  // Strings go to the library as they are: its validation gives the one message format.
  const opts: BenchOptions = {
    command: ['pma', 'bench', ...argv].join(' '),
    ...(positionals.length > 0 ? { paths: positionals } : {}),
    ...(values.size !== undefined ? { size: values.size } : {}),
    ...(values.inputs !== undefined ? { inputs: values.inputs } : {}),
    ...(values.dtype !== undefined ? { dtype: values.dtype } : {}),
    ...(values.regenerate ? { regenerate: true } : {}),
    ...(values.last !== undefined ? { last: values.last } : {}),
    ...(values.runs !== undefined ? { runs: values.runs } : {}),
    ...(values.threads !== undefined ? { threads: values.threads } : {}),
    ...(values.io !== undefined ? { io: values.io } : {}),
    ...(values['out-dtype'] !== undefined ? { outDtype: values['out-dtype'] } : {}),
    ...(values.kernel !== undefined ? { kernel: values.kernel } : {}),
    ...(values.device !== undefined ? { device: values.device } : {}),
    ...(values.dir !== undefined ? { dir: values.dir } : {}),
    ...(values.keep ? { keep: true } : {}),
    ...(values.quiet ? {} : { log: (msg: string) => io.err(`${msg}\n`) }),
  };
  // Ctrl-C or SIGTERM: stop after the step in progress and delete what the benchmark wrote.
  const ac = new AbortController();
  const stop = () => ac.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  const result = await runBench({ ...opts, signal: ac.signal }).finally(() => {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  });
  io.out(values.json ? `${JSON.stringify(result, null, 2)}\n` : formatBenchReport(result));
  return 0;
}
