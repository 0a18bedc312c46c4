import { runBench, formatBenchReport } from '../bench/run.js';
import type { BenchOptions } from '../bench/options.js';
import type { Command } from './command.js';
import { CHECKSUM_FLAG, WRITE_FLAG } from './common-flags.js';
import type { CommandSpec } from './flags.js';
import { untilStopped } from './stop.js';

export const BENCH_SPEC: CommandSpec = {
  name: 'bench',
  usage: '[--size 1GB --inputs 5 --dtype bf16 | <run-dir | checkpoint...>] [options]',
  summary: "measure merge speed against this machine's read + write floor",
  about: `Measures how fast pma merges on this machine, against what the machine can do at best in the same
run: read the inputs once (cat of the same files into /dev/null) and write the output once (an
output-sized file in the same filesystem, the faster of an O_DIRECT write with fdatasync (dd) and
a write + fsync). Prints the machine, the parameters and, for every thread count x io mode, the
median merge time, the input GB/s and the ratios to that floor (read + write) and to the larger
of the two. Without inputs it generates a series of MoE-shaped checkpoints (4 shards +
index each); with inputs it merges those, writing only into --dir, never beside them.`,
  positionals: { min: 0, max: Infinity, wrong: '' },
  groups: [
    {
      title: 'Generated inputs (without positional inputs)',
      flags: [
        {
          name: 'size',
          type: 'string',
          option: 'size',
          value: 'SIZE',
          help: ['tensor bytes per checkpoint (default 1GB):', '1GB = 1e9, 1GiB = 2^30, 256MB'],
        },
        {
          name: 'inputs',
          type: 'string',
          option: 'inputs',
          value: 'N',
          help: 'checkpoints to generate and merge (default 5)',
        },
        {
          name: 'dtype',
          type: 'string',
          option: 'dtype',
          value: 'D',
          help: 'dtype of the generated tensors: bf16 (default), f16, f32',
        },
        {
          name: 'regenerate',
          type: 'boolean',
          option: 'regenerate',
          help: 'regenerate even when the cached series in --dir matches',
        },
      ],
    },
    {
      title: 'Given inputs (<run-dir | checkpoint...>, as for pma merge; nothing is generated)',
      flags: [{ name: 'last', type: 'string', option: 'last', value: 'N', help: 'merge the N newest only' }],
    },
    {
      title: 'Measurement',
      flags: [
        {
          name: 'runs',
          type: 'string',
          option: 'runs',
          value: 'R',
          help: 'timed rounds of every measurement; medians reported (default 5)',
        },
        {
          name: 'threads',
          type: 'string',
          option: 'threads',
          value: 'LIST',
          help: 'thread counts, comma-separated (default 1 and the number of cores)',
        },
        {
          name: 'io',
          type: 'string',
          option: 'io',
          value: 'LIST',
          help: 'pread and/or mmap, comma-separated (default pread)',
        },
        {
          name: 'out-dtype',
          type: 'string',
          option: 'outDtype',
          value: 'D',
          help: 'output dtype of the merges: keep (default), bf16, f16, f32',
        },
        {
          name: 'max-shard-size',
          type: 'string',
          option: 'maxShardSize',
          value: 'SIZE',
          help: 'shard the output above SIZE, as pma merge does (default 5GB)',
        },
        {
          name: 'kernel',
          type: 'string',
          option: 'kernel',
          value: 'K',
          help: 'arithmetic backend: auto (default), scalar, avx2, avx512',
        },
        WRITE_FLAG,
        CHECKSUM_FLAG,
        {
          name: 'process',
          type: 'boolean',
          option: 'process',
          help: [
            'time whole `pma merge` processes, their start included, as a user',
            'runs them (default: merge() inside the benchmark process)',
          ],
        },
        {
          name: 'device',
          type: 'string',
          option: 'device',
          value: 'LIST',
          help: [
            'devices to merge on, comma-separated: cpu, cuda, cuda:0,1,',
            'cuda:all, auto (default cpu); one table row each',
          ],
        },
      ],
    },
    {
      title: 'Files',
      flags: [
        {
          name: 'dir',
          type: 'string',
          option: 'dir',
          value: 'DIR',
          help: [
            'work directory: generated inputs, merge output, write-ceiling file',
            "(default: pma-bench in the system's temporary directory). The output",
            'is deleted after every run; generated inputs at the end, unless',
            '--keep or an explicit --dir (then they are a cache for the next run)',
          ],
        },
        { name: 'keep', type: 'boolean', option: 'keep', help: 'keep the generated inputs' },
      ],
    },
    {
      title: 'Reporting',
      flags: [
        { name: 'json', type: 'boolean', help: "print the result object (every run's time) instead of the report" },
        {
          name: 'breakdown',
          type: 'boolean',
          help: [
            'also print where the time went: planning, running, finishing;',
            "the engine's reading, NaN/Inf scan, arithmetic, writing; the disk's",
            'busy time; hashing; fsync',
          ],
        },
        { name: 'quiet', type: 'boolean', short: 'q', help: 'no progress messages on stderr' },
      ],
    },
  ],
  examples: [
    'pma bench                                        # 5 x 1GB bf16, threads 1 and all cores, pread',
    'pma bench --size 256MB --inputs 4 --runs 3       # a quick look',
    'pma bench --size 5GB --inputs 5 --threads 1,2,4 --io pread,mmap --dir /scratch/pma-bench',
    'pma bench --size 1GB --inputs 5 --threads 8 --device cpu,cuda   # CPU against GPU, same files',
    'pma bench --dtype f32 --out-dtype bf16 --json > bench.json',
    'pma bench --threads 2 --breakdown                # where the time goes',
    'pma bench --threads 2 --process                  # whole pma merge processes',
    'pma bench runs/exp7 --last 4 --runs 3 --dir /scratch/bench-out   # your own checkpoints',
  ],
  footer: `The full table of the repository's benchmark (several input counts and dtypes): npm run bench.
Exit status: 0 done, 2 bad usage or bad input, 1 any other failure.`,
};

export const benchCommand: Command = {
  spec: BENCH_SPEC,
  async run({ options, flags, positionals, argv }, io) {
    // Strings go to the library as they are: its validation gives the one message format.
    const opts: BenchOptions = {
      ...(options as BenchOptions),
      command: ['pma', 'bench', ...argv].join(' '),
      ...(positionals.length > 0 ? { paths: positionals } : {}),
      ...(flags.quiet ? {} : { log: (msg: string) => io.err(`${msg}\n`) }),
    };
    // Ctrl-C or SIGTERM: stop after the step in progress and delete what the benchmark wrote.
    const result = await untilStopped((signal) => runBench({ ...opts, signal }));
    io.out(
      flags.json
        ? `${JSON.stringify(result, null, 2)}\n`
        : formatBenchReport(result, { breakdown: flags.breakdown === true }),
    );
    return 0;
  },
};
