import { formatTokens } from '../checkpoints/tokens.js';
import { PmaError } from '../errors.js';
import { merge, type MergeResult } from '../merge/merge.js';
import type { PartResult } from '../merge/part.js';
import type { MergeOptions } from '../merge/options.js';
import { planMerge } from '../plan/planner.js';
import type { MergePlan } from '../plan/types.js';
import { roundSeconds } from '../run/breakdown.js';
import { deviceName, type GpuStaging } from '../run/devices.js';
import { resolveDevices } from '../run/engine.js';
import { resolveEngineOptions } from '../run/options.js';
import type { Command } from './command.js';
import {
  CHECKSUM_FLAG,
  DEVICE_FLAGS,
  DTYPE_FLAGS,
  FORMAT_FLAG,
  JSON_FLAG,
  SELECTION_FLAGS,
  SELECTION_TITLE,
  WEIGHT_FLAGS,
  WRITE_FLAG,
  outFlag,
} from './common-flags.js';
import type { CommandSpec } from './flags.js';
import { formatBytes, formatDuration, formatRate } from './format.js';
import { progressBar } from './progress.js';
import type { Io } from './io.js';
import { untilStopped } from './stop.js';

export const MERGE_SPEC: CommandSpec = {
  name: 'merge',
  usage: '<run-dir | checkpoint...> --out <dir> [options]',
  summary: 'average checkpoints',
  about: `Averages checkpoints (Pre-trained Model Averaging) into a new checkpoint that transformers loads
as is. A run directory's step-named checkpoints (checkpoint-1000, step_2000, global_step3000, ...)
are ordered by step; the average is bit-exact (fp32 fma oldest to newest, round-to-nearest-even).`,
  positionals: {
    min: 1,
    max: Infinity,
    wrong: 'pma merge needs a run directory or checkpoints (see pma merge --help)',
  },
  groups: [
    { title: SELECTION_TITLE, flags: SELECTION_FLAGS },
    { title: 'Weights', flags: WEIGHT_FLAGS },
    {
      title: 'Output',
      flags: [
        outFlag('output directory (required unless --dry-run)'),
        {
          name: 'force',
          type: 'boolean',
          option: 'force',
          help: [
            'replace an existing output that pma wrote (it has a pma.json) or an',
            'empty directory (or a partial one, instead of resuming); never',
            'anything else',
          ],
        },
        {
          name: 'resume',
          type: 'boolean',
          option: 'resume',
          help: [
            'finish the merge an interrupted run left in <out>.partial/',
            '(same arguments, unchanged inputs): only the missing chunks run',
          ],
        },
        ...DTYPE_FLAGS,
        FORMAT_FLAG,
        {
          name: 'max-shard-size',
          type: 'string',
          option: 'maxShardSize',
          value: 'SIZE',
          help: 'shard the output above SIZE (default 5GB; 5GB = 5e9, 5GiB = 5*2^30)',
        },
        CHECKSUM_FLAG,
      ],
    },
    {
      title: 'Parts (one merge across processes or machines: docs/parts.md)',
      flags: [
        {
          name: 'part',
          type: 'string',
          option: 'part',
          value: 'I/N|auto',
          help: [
            'merge part I (0-based) of N into the shared <out>.partial/: each part',
            'writes its share of the output files; the last one to finish (or',
            "'pma finalize') puts <out> in place. auto: the scheduler's",
            'environment (Slurm array or srun tasks, Kubernetes Indexed Job,',
            'torchrun). A part that fails is rerun with the same command',
          ],
        },
        {
          name: 'parts',
          type: 'string',
          option: 'parts',
          value: 'N',
          help: [
            'the number of parts, for --part auto in a Kubernetes Indexed Job',
            '(its completions: Kubernetes does not export the count)',
          ],
        },
      ],
    },
    {
      title: 'Engine',
      flags: [
        ...DEVICE_FLAGS,
        {
          name: 'chunk-size',
          type: 'string',
          option: 'chunkSize',
          value: 'SIZE',
          help: [
            'work unit, read+written bytes (default 1/64 of the merge,',
            '16MiB to 256MiB); never changes the bytes (--resume keeps the',
            "partial's)",
          ],
        },
        {
          name: 'io',
          type: 'string',
          option: 'io',
          value: 'MODE',
          help: 'how inputs are read: pread (default) or mmap',
        },
        {
          name: 'page-cache',
          type: 'string',
          option: 'pageCache',
          value: 'MODE',
          help: [
            'auto|keep|drop: drop inputs behind the read position and outputs',
            'once on disk (default auto: drop when the inputs exceed half of RAM)',
          ],
        },
        WRITE_FLAG,
      ],
    },
    {
      title: 'Reporting',
      flags: [
        { name: 'dry-run', type: 'boolean', help: 'print the plan (inputs, weights, output files and sizes) and stop' },
        { ...JSON_FLAG, help: 'machine-readable summary (or plan, with --dry-run) on stdout' },
        {
          name: 'quiet',
          type: 'boolean',
          short: 'q',
          help: 'no progress bar and no selection listing (warnings still print)',
        },
      ],
    },
  ],
  examples: [
    'pma merge runs/exp7 --last 8 --out merged/',
    'pma merge runs/exp7/checkpoint-{6000,7000,8000} --method ema --alpha 0.2 --dtype bf16 --out m2',
    'pma merge runs/exp7 --every 2 --last 4 --method wma --out m3 --json',
    'pma merge runs/exp7 --last 10 --dry-run',
    'pma merge runs/exp7 --last 8 --device cuda:all --out merged/',
    'pma merge runs/exp7 --last 8 --out merged/ --resume   # after an interruption',
    'pma merge runs/exp7 --last 8 --out /shared/m --part auto   # in each task of a Slurm job array',
  ],
  footer: `A run directory's checkpoints are its step-named subdirectories: a final model saved at its top
level, and merges pma wrote into it (they have a pma.json), are listed as skipped and left out.
Warnings (fewer checkpoints than --last asks for, a merge of one checkpoint, config.json keys that
differ between the checkpoints, NaN/Inf) go to stderr, with --quiet and --json too.

A merge that stops early (Ctrl-C, SIGTERM, a full disk, a crash, a killed node) leaves nothing at
--out and its finished part in <out>.partial/; the same command with --resume finishes it. One
stopped for NaN/Inf is taken up by the same command with --on-nonfinite skip-checkpoint or warn.

Exit status: 0 done, 2 bad usage or bad input, 1 any other failure (interrupted included). With
--json, a failure is also printed on stdout as {"error": {"code", "message", ...}, "exitStatus"}.`,
};

function describePlan(plan: MergePlan, skipped: { path: string; reason: string }[]): string {
  const lines: string[] = [];
  const alpha =
    (plan.alpha === null ? '' : `, alpha ${plan.alpha}`) +
    (plan.schedule === null ? '' : `, ${plan.schedule} schedule`);
  lines.push(
    `merging ${plan.checkpoints.length} checkpoint(s) with ${plan.method}${alpha} (accumulate ${plan.accumulate}, dtype ${plan.dtype}), oldest first:`,
  );
  for (const [i, c] of plan.checkpoints.entries()) {
    const tokens = c.tokens === null ? '' : `  ${formatTokens(c.tokens).padStart(7)} tokens`;
    lines.push(
      `  ${String(c.step ?? '-').padStart(10)}${tokens}  weight ${(plan.weights.w64[i] ?? 0).toFixed(6)}  ${c.path}`,
    );
  }
  for (const s of skipped) lines.push(`  skipped ${s.path}: ${s.reason}`);
  for (const n of plan.notes) lines.push(`note: ${n}`);
  return `${lines.join('\n')}\n${describeWarnings(plan)}`;
}

/** Printed even with --quiet: what the user must hear about the plan. */
export function describeWarnings(plan: MergePlan): string {
  return plan.warnings.map((w) => `warning: ${w}\n`).join('');
}

function describeOutputs(plan: MergePlan): string {
  const lines = [
    `output (${plan.format === 'dcp' ? 'PyTorch DCP' : 'safetensors'}): ${plan.outputs.length} file(s), ${formatBytes(plan.totals.outputBytes)} of ${plan.format === 'dcp' ? 'data' : 'tensors'}; reads ${formatBytes(plan.totals.inputBytes)}`,
  ];
  for (const f of plan.outputs) lines.push(`  ${f.name}  ${formatBytes(f.size)}  ${f.tensors} tensors`);
  if (plan.index !== null) lines.push('  model.safetensors.index.json');
  for (const f of plan.copyFiles) lines.push(`  ${f.to} (copied from the newest checkpoint)`);
  lines.push('  pma.json');
  lines.push(
    `work: ${plan.totals.merged} tensors averaged, ${plan.totals.copied} copied${scalesLine(plan)}, in ${plan.chunks.length} chunk(s)`,
  );
  return `${lines.join('\n')}\n`;
}

/** A GPU merge's staging slots and the memory they take, in the dry run's and the merge's words. */
function describeStaging(g: GpuStaging): string {
  return `${g.slots} staging slots of ${formatBytes(g.slotBytes)} each: ${formatBytes(g.deviceBytes)} of device memory per GPU, ${formatBytes(g.pinnedBytes)} of pinned host memory in all`;
}

/**
 * On GPUs, what the merge would stage: its workers per GPU and the pinned host memory it would
 * hold, so that a dry run shows it before a node is asked for. Nothing on the CPU. A GPU this
 * machine lacks (a dry run on a login node) is said, not an error.
 */
function describeDevices(opts: MergeOptions): string {
  const engine = resolveEngineOptions(opts);
  if (engine.device.kind === 'cpu') return '';
  try {
    const { device, threads, staging } = resolveDevices(engine);
    if (!staging)
      return `device: ${deviceName(device)}${device.kind === 'cpu' && device.reason ? ` (--device auto: ${device.reason})` : ''}\n`;
    return `device: ${deviceName(device)}, ${threads} worker thread(s), ${staging.workersPerGpu} per GPU, ${describeStaging(staging)}\n`;
  } catch (e) {
    if (e instanceof PmaError && e.code === 'E_UNSUPPORTED') return `device: not on this machine: ${e.message}\n`;
    throw e;
  }
}

export const mergeCommand: Command = {
  spec: MERGE_SPEC,
  async run({ options, flags, positionals, argv }, io) {
    const opts = { ...options, inputs: positionals } as unknown as MergeOptions;
    if (flags['dry-run']) {
      const { plan, skipped } = await planMerge(opts);
      if (flags.json) {
        io.err(describeWarnings(plan));
        io.out(`${JSON.stringify(plan, null, 2)}\n`);
      } else {
        io.out(describePlan(plan, skipped) + describeOutputs(plan) + describeDevices(opts));
      }
      return 0;
    }
    if (options.out === undefined) throw new PmaError('E_USAGE', 'pma merge needs --out <dir> (or --dry-run)');
    const quiet = flags.quiet === true;
    const bar = !quiet && io.stderrIsTTY ? progressBar(process.stderr) : null;
    // Seconds since the process started (Node, the modules, the arguments): --json's breakdown.
    const startup = performance.now() / 1000;
    // Ctrl-C or a scheduler's SIGTERM: stop the chunks in flight between two blocks, record the
    // finished ones, and leave <out>.partial/ for --resume, rather than dying mid-write.
    const result = await untilStopped((signal) =>
      merge({
        ...opts,
        signal,
        commandLine: ['pma', 'merge', ...argv],
        // --quiet drops the listing, never the warnings.
        onPlan: (plan: MergePlan, skipped: { path: string; reason: string }[]) =>
          io.err(quiet ? describeWarnings(plan) : describePlan(plan, skipped)),
        ...(bar ? { onProgress: bar.update } : {}),
      }).finally(() => bar?.end()),
    );
    for (const f of result.nonfinite)
      io.err(`warning: ${f.count} NaN/Inf in ${f.tensor} of ${f.checkpoint} (merged anyway: --on-nonfinite warn)\n`);
    const p = result.plan;
    if (result.part) return reportPart(result, flags.json === true, quiet, io, startup);
    if (flags.json) {
      io.out(
        `${JSON.stringify(
          {
            out: result.out,
            method: p.method,
            alpha: p.alpha,
            schedule: p.schedule,
            dtype: p.dtype,
            accumulate: p.accumulate,
            checksum: p.checksum,
            checkpoints: p.checkpoints.map((c, i) => ({ ...c, weight: p.weights.w64[i] })),
            files: p.outputs.map((f) => ({ name: f.name, size: f.size })),
            tensors: p.totals,
            kernel: result.kernel,
            device: result.device,
            resumedChunks: result.resumedChunks,
            nonfinite: result.nonfinite,
            leftOut: result.leftOut,
            warnings: p.warnings,
            ...runFigures(result, startup),
          },
          null,
          2,
        )}\n`,
      );
      return 0;
    }
    const engine = result.device === 'cpu' ? result.kernel : result.device;
    if (result.deviceNote && !quiet) io.err(`note: ${result.deviceNote}\n`);
    const g = result.gpuStaging;
    if (g && !quiet) io.err(`note: ${result.device}: ${g.workersPerGpu} worker(s) per GPU, ${describeStaging(g)}\n`);
    if (result.resumedChunks > 0 && !quiet)
      io.err(`resumed: ${result.resumedChunks} of ${p.chunks.length} chunks were already done\n`);
    io.out(
      `merged ${p.checkpoints.length} checkpoint(s) (${p.method}) -> ${result.out}: ${p.outputs.length} file(s), ${formatBytes(p.totals.outputBytes)} in ${formatDuration(result.elapsedMs)} (${formatRate(result.bytesPerSecond)} read, ${engine}, ${result.threads} threads)\n`,
    );
    return 0;
  },
};

/**
 * What --json reports of how a merge (or a part) ran; the breakdown begins with the seconds from
 * the process's start to the merge's (`startup`).
 */
function runFigures(result: MergeResult, startup: number) {
  return {
    threads: result.threads,
    bytesRead: result.bytesRead,
    bytesWritten: result.bytesWritten,
    seconds: result.elapsedMs / 1000,
    gbPerSecond: result.bytesPerSecond / 1e9,
    breakdown: { startup: roundSeconds(startup), ...result.breakdown },
  };
}

/** What a part of a merge in parts says when it ends: its files, and the finalize or what it waits for. */
function reportPart(result: MergeResult, json: boolean, quiet: boolean, io: Io, startup: number): number {
  const part = result.part as PartResult;
  if (json) {
    io.out(
      `${JSON.stringify(
        {
          out: result.out,
          part: part.index,
          parts: part.count,
          source: part.source,
          status: part.status,
          files: part.files,
          bytes: part.bytes,
          resumedChunks: result.resumedChunks,
          nonfinite: result.nonfinite,
          finalized: part.finalized,
          waiting: part.waiting,
          device: result.device,
          ...runFigures(result, startup),
        },
        null,
        2,
      )}\n`,
    );
    return 0;
  }
  const what = `part ${part.index}/${part.count}`;
  if (part.status === 'finalized-before') {
    io.out(`${what}: the merge is already finalized in ${result.out}\n`);
    return 0;
  }
  if (result.resumedChunks > 0 && !quiet)
    io.err(`resumed: ${result.resumedChunks} of the part's chunks were already done\n`);
  const done =
    part.status === 'complete'
      ? `${what} was already complete`
      : `merged ${what}: ${part.files.length} file(s), ${formatBytes(part.bytes)} in ${formatDuration(result.elapsedMs)} (${formatRate(result.bytesRead / Math.max(result.elapsedMs / 1000, 1e-9))} read)`;
  const then = part.finalized
    ? `; every part is done: finalized -> ${part.finalized.out}`
    : part.waiting.length > 0
      ? `; the last part to finish finalizes the merge: ${part.waiting.length} part(s) to come (pma status ${result.out})`
      : '; another process is finalizing the merge';
  io.out(`${done}${then}\n`);
  return 0;
}

/** ", 34 FP8 scale tensors written anew": the scales a requantised FP8 merge writes, if any. */
function scalesLine(plan: MergePlan): string {
  const n = plan.tensors.filter((t) => t.action === 'scale').length;
  return n === 0 ? '' : `, ${n} FP8 scale tensor(s) written anew`;
}
