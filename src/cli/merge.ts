import { parseArgs } from 'node:util';

import { formatTokens } from '../checkpoints/tokens.js';
import { PmaError } from '../errors.js';
import { merge } from '../merge.js';
import type { MergeOptions } from '../options.js';
import { planMerge } from '../plan/planner.js';
import type { MergePlan } from '../plan/types.js';
import { formatBytes, formatDuration, formatRate } from './format.js';
import type { Io } from './io.js';
import { progressBar } from './progress.js';

export const MERGE_HELP = `Usage: pma merge <run-dir | checkpoint...> --out <dir> [options]

Averages checkpoints (Pre-trained Model Averaging) into a new checkpoint that transformers loads
as is. A run directory's step-named checkpoints (checkpoint-1000, step_2000, global_step3000, ...)
are ordered by step; the average is bit-exact (fp32 fma oldest to newest, round-to-nearest-even).

Selection (applied in this order):
  --from-step S, --to-step S   keep checkpoints with S <= step (inclusive)
  --every K                    every K-th checkpoint, counted back from the newest
  --last N                     the N newest
  --interval T, --window T     in tokens (8B, 500M, 1.2T): checkpoints at least T apart, counted
                               back from the newest / within T of the newest (applied after
                               --from-step/--to-step, before --every and --last)
  --tokens-per-step T          tokens = step x T; without it, each checkpoint's count is read
                               from trainer_state.json (num_input_tokens_seen) or config.json
                               (consumed_tokens, tokens)

Weights:
  --method sma|ema|wma|decay   sma (default): equal; wma: linear, newest heaviest;
                               ema: recursion from the oldest with --alpha (default 0.2);
                               decay: weights that emulate a learning-rate decay over the
                               window (--schedule)
  --alpha A                    EMA factor, 0 < A < 1
  --schedule S                 with --method decay: linear (default), cosine, inverse-sqrt, 1-sqrt
  --weights w1,w2,...          explicit weights, oldest to newest (normalised to sum 1)

Output:
  --out DIR                    output directory (required unless --dry-run)
  --force                      replace an existing output (or a partial one, instead of resuming)
  --resume                     finish the merge an interrupted run left in <out>.partial/
                               (same arguments, unchanged inputs): only the missing chunks run
  --dtype keep|bf16|f16|f32    dtype of averaged tensors (default keep)
  --accumulate f32|f64         accumulator precision (default f32, the bit-exact contract)
  --on-nonfinite error|warn|skip-checkpoint
                               NaN or Inf in an input: stop before writing the output (default),
                               merge anyway and report them, or merge again without the
                               checkpoints that hold them
  --max-shard-size SIZE        shard the output above SIZE (default 5GB; 5GB = 5e9, 5GiB = 5*2^30)

Engine:
  --threads N                  worker threads (default: number of cores; on GPUs, up to 8,
                               4 per GPU: each has a reader and a writer thread)
  --chunk-size SIZE            work unit, read+written bytes (default 1/64 of the merge,
                               16MiB to 256MiB); never changes the bytes
  --device cpu|auto|cuda|cuda:0,1|cuda:all
                               where the arithmetic runs (default cpu); auto: GPU 0 when this
                               build has CUDA and a usable GPU, else the CPU; the bytes are the
                               same on every device (see pma devices)
  --gpu-memory SIZE            device memory per GPU, and as much pinned host memory for staging
                               (default a tenth of the GPU's free memory, at most 1GiB)
  --kernel auto|scalar|avx2|avx512   CPU arithmetic (default auto: the best the CPU has)
  --io pread|mmap              how inputs are read (default pread)
  --page-cache auto|keep|drop  drop inputs behind the read position and outputs once on disk
                               (default auto: drop when the inputs exceed half of RAM)
  --write buffered|direct      results through the page cache (default), or their aligned middle
                               with O_DIRECT where the filesystem allows; the bytes are the same

Reporting:
  --dry-run                    print the plan (inputs, weights, output files and sizes) and stop
  --json                       machine-readable summary (or plan, with --dry-run) on stdout
  --quiet                      no progress bar and no selection listing
  -h, --help                   this help

Examples:
  pma merge runs/exp7 --last 8 --out merged/
  pma merge runs/exp7/checkpoint-{6000,7000,8000} --method ema --alpha 0.2 --dtype bf16 --out m2
  pma merge runs/exp7 --every 2 --last 4 --method wma --out m3 --json
  pma merge runs/exp7 --last 10 --dry-run
  pma merge runs/exp7 --last 8 --device cuda:all --out merged/
  pma merge runs/exp7 --last 8 --out merged/ --resume   # after an interruption

A merge that stops early (Ctrl-C, SIGTERM, a full disk, a crash, a killed node) leaves nothing at
--out and its finished part in <out>.partial/; the same command with --resume finishes it.

Exit status: 0 done, 2 bad usage or bad input, 1 any other failure (interrupted included).
`;

function describePlan(plan: MergePlan, skipped: { path: string; reason: string }[]): string {
  const lines: string[] = [];
  const alpha = (plan.alpha === null ? '' : `, alpha ${plan.alpha}`) + (plan.schedule === null ? '' : `, ${plan.schedule} schedule`);
  lines.push(`merging ${plan.checkpoints.length} checkpoint(s) with ${plan.method}${alpha} (accumulate ${plan.accumulate}, dtype ${plan.dtype}), oldest first:`);
  for (const [i, c] of plan.checkpoints.entries()) {
    const tokens = c.tokens === null ? '' : `  ${formatTokens(c.tokens).padStart(7)} tokens`;
    lines.push(`  ${String(c.step ?? '-').padStart(10)}${tokens}  weight ${(plan.weights.w64[i] ?? 0).toFixed(6)}  ${c.path}`);
  }
  for (const s of skipped) lines.push(`  skipped ${s.path}: ${s.reason}`);
  for (const n of plan.notes) lines.push(`note: ${n}`);
  return `${lines.join('\n')}\n`;
}

function describeOutputs(plan: MergePlan): string {
  const lines = [`output: ${plan.outputs.length} file(s), ${formatBytes(plan.totals.outputBytes)} of tensors; reads ${formatBytes(plan.totals.inputBytes)}`];
  for (const f of plan.outputs) lines.push(`  ${f.name}  ${formatBytes(f.size)}  ${f.tensors} tensors`);
  if (plan.index !== null) lines.push('  model.safetensors.index.json');
  for (const f of plan.copyFiles) lines.push(`  ${f.split('/').pop()} (copied from the newest checkpoint)`);
  lines.push('  pma.json');
  lines.push(`work: ${plan.totals.merged} tensors averaged, ${plan.totals.copied} copied, in ${plan.chunks.length} chunk(s)`);
  return `${lines.join('\n')}\n`;
}

/** The flags pma merge and pma watch share, passed to the library under its names, as strings. */
export const MERGE_FLAGS = {
  last: 'last',
  'from-step': 'fromStep',
  'to-step': 'toStep',
  interval: 'interval',
  window: 'window',
  'tokens-per-step': 'tokensPerStep',
  method: 'method',
  alpha: 'alpha',
  schedule: 'schedule',
  dtype: 'dtype',
  accumulate: 'accumulate',
  'on-nonfinite': 'onNonfinite',
  threads: 'threads',
  kernel: 'kernel',
  device: 'device',
  'gpu-memory': 'gpuMemory',
} as const;

/** CLI flags passed to the library under another name (or the same), as strings. */
const FLAG_TO_OPTION = {
  ...MERGE_FLAGS,
  every: 'every',
  'max-shard-size': 'maxShardSize',
  'chunk-size': 'chunkSize',
  io: 'io',
  'page-cache': 'pageCache',
  write: 'write',
} as const;

export async function mergeCommand(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      out: { type: 'string', short: 'o' },
      force: { type: 'boolean' },
      resume: { type: 'boolean' },
      last: { type: 'string' },
      every: { type: 'string' },
      'from-step': { type: 'string' },
      'to-step': { type: 'string' },
      interval: { type: 'string' },
      window: { type: 'string' },
      'tokens-per-step': { type: 'string' },
      method: { type: 'string' },
      alpha: { type: 'string' },
      schedule: { type: 'string' },
      weights: { type: 'string' },
      dtype: { type: 'string' },
      accumulate: { type: 'string' },
      'on-nonfinite': { type: 'string' },
      'max-shard-size': { type: 'string' },
      'chunk-size': { type: 'string' },
      threads: { type: 'string' },
      kernel: { type: 'string' },
      device: { type: 'string' },
      'gpu-memory': { type: 'string' },
      io: { type: 'string' },
      'page-cache': { type: 'string' },
      write: { type: 'string' },
      'dry-run': { type: 'boolean' },
      json: { type: 'boolean' },
      quiet: { type: 'boolean', short: 'q' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    io.out(MERGE_HELP);
    return 0;
  }
  if (positionals.length === 0) throw new PmaError('E_USAGE', 'pma merge needs a run directory or checkpoints (see pma merge --help)');
  // Strings go to the library as they are: its validation gives the one message format.
  const opts: Record<string, unknown> = { inputs: positionals, out: values.out };
  for (const [flag, key] of Object.entries(FLAG_TO_OPTION)) {
    const v = values[flag as keyof typeof values];
    if (v !== undefined) opts[key] = v;
  }
  if (values.force) opts.force = true;
  if (values.resume) opts.resume = true;
  if (values.weights !== undefined) opts.weights = values.weights.split(',');
  const mergeOpts = opts as unknown as MergeOptions;

  if (values['dry-run']) {
    const { plan, skipped } = await planMerge(mergeOpts);
    if (values.json) io.out(`${JSON.stringify(plan, null, 2)}\n`);
    else io.out(describePlan(plan, skipped) + describeOutputs(plan));
    return 0;
  }
  if (values.out === undefined) throw new PmaError('E_USAGE', 'pma merge needs --out <dir> (or --dry-run)');

  const bar = !values.quiet && io.stderrIsTTY ? progressBar(process.stderr) : null;
  // Ctrl-C or a scheduler's SIGTERM: stop the chunks in flight between two blocks, record the
  // finished ones, and leave <out>.partial/ for --resume, rather than dying mid-write.
  const ac = new AbortController();
  const stop = () => ac.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  const result = await merge({
    ...mergeOpts,
    signal: ac.signal,
    commandLine: ['pma', 'merge', ...argv],
    ...(values.quiet ? {} : { onPlan: (plan: MergePlan, skipped: { path: string; reason: string }[]) => io.err(describePlan(plan, skipped)) }),
    ...(bar ? { onProgress: bar.update } : {}),
  }).finally(() => {
    bar?.end();
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  });

  if (!values.quiet) {
    for (const f of result.nonfinite) io.err(`warning: ${f.count} NaN/Inf in ${f.tensor} of ${f.checkpoint} (merged anyway: --on-nonfinite warn)\n`);
    for (const l of result.leftOut) io.err(`left out ${l.path}: ${l.reason}\n`);
  }
  if (values.json) {
    const p = result.plan;
    io.out(`${JSON.stringify({
      out: result.out,
      method: p.method,
      alpha: p.alpha,
      schedule: p.schedule,
      dtype: p.dtype,
      accumulate: p.accumulate,
      checkpoints: p.checkpoints.map((c, i) => ({ ...c, weight: p.weights.w64[i] })),
      files: p.outputs.map((f) => ({ name: f.name, size: f.size })),
      tensors: p.totals,
      kernel: result.kernel,
      device: result.device,
      resumedChunks: result.resumedChunks,
      nonfinite: result.nonfinite,
      leftOut: result.leftOut,
      threads: result.threads,
      bytesRead: result.bytesRead,
      bytesWritten: result.bytesWritten,
      seconds: result.elapsedMs / 1000,
      gbPerSecond: result.bytesPerSecond / 1e9,
    }, null, 2)}\n`);
  } else {
    const p = result.plan;
    const engine = result.device === 'cpu' ? result.kernel : result.device;
    if (result.deviceNote && !values.quiet) io.err(`note: ${result.deviceNote}\n`);
    if (result.resumedChunks > 0 && !values.quiet) io.err(`resumed: ${result.resumedChunks} of ${p.chunks.length} chunks were already done\n`);
    io.out(`merged ${p.checkpoints.length} checkpoints (${p.method}) -> ${result.out}: ${p.outputs.length} file(s), ${formatBytes(p.totals.outputBytes)} in ${formatDuration(result.elapsedMs)} (${formatRate(result.bytesPerSecond)} read, ${engine}, ${result.threads} threads)\n`);
  }
  return 0;
}
