/**
 * The settings of `npm run bench` (bench/merge.bench.js): the full table of issue 3 — SMA of
 * 5 checkpoints x 1 GB bf16 at 1 and 2 threads (and all cores), pread and mmap; then, at the
 * largest of those thread counts with pread and fewer runs, 10 and 20 inputs, f16 and f32 inputs,
 * and an f32 output.
 */
import type { SuiteCase } from './run.js';
import { describeSeries, formatSize, type SeriesParams } from './series.js';

export interface StandardSuiteOptions {
  /** Smoke test: 256 MB checkpoints, 4 inputs in the first rows, 3 runs. */
  quick?: boolean;
  cores: number;
  memoryBytes: number;
}

/**
 * Every case's inputs are kept under 45% of the memory (so that they stay in the page cache, as
 * in the other rows, and pma's page-cache 'auto' keeps them): a case that would need more gets a
 * smaller per-checkpoint size, in steps of 100 MB, and says so.
 */
function fit(series: SeriesParams, memoryBytes: number, reason: string[]): SeriesParams {
  const budget = 0.45 * memoryBytes;
  if (series.inputs * series.sizeBytes <= budget) return series;
  const step = 100e6;
  const size = Math.max(step, Math.floor(budget / series.inputs / step) * step);
  reason.push(
    `${series.inputs} inputs at ${formatSize(size)} per checkpoint instead of ${formatSize(series.sizeBytes)}: ` +
      `${describeSeries(series)} (${((series.inputs * series.sizeBytes) / 1e9).toFixed(0)} GB) would not stay in the page cache of this ` +
      `machine's ${(memoryBytes / 2 ** 30).toFixed(1)} GiB of memory next to the output, and would take longer than the rest of the table`,
  );
  return { ...series, sizeBytes: size };
}

export function standardSuite(o: StandardSuiteOptions): { cases: SuiteCase[]; notes: string[] } {
  const size = o.quick ? 256e6 : 1e9;
  const baseInputs = o.quick ? 4 : 5;
  const baseRuns = o.quick ? 3 : 5;
  const extraRuns = 3;
  const threads = [...new Set([1, 2, Math.max(1, o.cores)])].sort((a, b) => a - b);
  const top = threads[threads.length - 1]!;
  const notes: string[] = [];
  const mk = (
    inputs: number,
    dtype: SeriesParams['dtype'],
    outDtype: SuiteCase['outDtype'],
    full: boolean,
  ): SuiteCase => {
    const reason: string[] = [];
    const series = fit({ inputs, sizeBytes: size, dtype }, o.memoryBytes, reason);
    return {
      series,
      outDtype,
      threads: full ? threads : [top],
      io: full ? ['pread', 'mmap'] : ['pread'],
      runs: full ? baseRuns : extraRuns,
      ...(reason.length > 0 ? { note: reason.join('; ') } : {}),
    };
  };
  const cases = [
    mk(baseInputs, 'bf16', 'keep', true),
    // The same merge as whole `pma merge` processes, as a user runs it: Node's start included.
    { ...mk(baseInputs, 'bf16', 'keep', false), process: true },
    // ... with SHA-256 in pma.json instead of BLAKE3: what the faster checksum saves.
    { ...mk(baseInputs, 'bf16', 'keep', false), process: true, checksum: 'sha256' as const },
    // The same series into shards of at most a quarter of the output: several files to hash.
    { ...mk(baseInputs, 'bf16', 'keep', false), maxShardSize: Math.ceil(size / 4) },
    mk(baseInputs, 'bf16', 'f32', false),
    mk(10, 'bf16', 'keep', false),
    mk(20, 'bf16', 'keep', false),
    mk(baseInputs, 'f16', 'keep', false),
    mk(baseInputs, 'f32', 'keep', false),
  ];
  notes.push(
    `the first rows: threads ${threads.join(', ')} x pread, mmap, ${baseRuns} runs; the other rows: ${top} threads, pread, ${extraRuns} runs (SMA, kernel auto); the row marked whole process times \`pma merge\` processes, the others merge() in the benchmark's process`,
  );
  return { cases, notes };
}
