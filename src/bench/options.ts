import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

import { parseDevice, type DeviceOption } from '../run/devices.js';
import { OUTPUT_DTYPES, type OutputDTypeOption } from '../dtypes.js';
import type { IoMode, KernelChoice } from '../native.js';
import { IO_MODES, KERNEL_CHOICES, WRITE_MODES, type WriteChoice } from '../run/options.js';
import { CHECKSUMS, type Checksum } from '../plan/types.js';
import * as v from '../validate.js';
import { SERIES_DTYPES, type SeriesParams } from './series.js';

export const DEFAULT_SIZE = '1GB';
export const DEFAULT_INPUTS = 5;
export const DEFAULT_RUNS = 5;
/** The smallest generated checkpoint: below it the synthetic model degenerates. */
export const MIN_SIZE = 1e6;

export interface BenchOptions {
  /** Benchmark these (a run directory or checkpoints) instead of generating a series. */
  paths?: string[];
  /** With `paths`: merge the N newest checkpoints only. */
  last?: number | string;
  /** Generated series: number of checkpoints (default 5). */
  inputs?: number | string;
  /** Generated series: tensor bytes per checkpoint, bytes or "1GB", "256MB", "1GiB" (default 1GB). */
  size?: number | string;
  /** Generated series: bf16, f16 or f32 (default bf16). */
  dtype?: string;
  /** Timed repetitions of every measurement; medians are reported (default 5). */
  runs?: number | string;
  /** Thread counts to merge with: a list, or "1,2" (default 1 and the number of cores). */
  threads?: number | string | (number | string)[];
  /** Read modes to merge with: a list, or "pread,mmap" (default pread). */
  io?: string | string[];
  kernel?: string;
  /** How the merges write their output: auto (default), buffered or direct (EngineOptions.write). */
  write?: string;
  /** The checksum the merges record of their output: blake3 (default) or sha256. */
  checksum?: string;
  /** Devices to merge on: a list, or "cpu,cuda" (default cpu); each row of the table names its own. */
  device?: string | string[];
  /** Output dtype of the merges (default keep). */
  outDtype?: string;
  /** Shard the output above this size, bytes or "256MB" (default: the merge's own, 5GB): several files to hash. */
  maxShardSize?: number | string;
  /** Work directory: the generated series, the merge output, the write-ceiling file (default: <tmpdir>/pma-bench). */
  dir?: string;
  /** Keep the generated series at the end (it is kept anyway when `dir` is given: a cache). */
  keep?: boolean;
  /** Regenerate the series even when the cached one matches. */
  regenerate?: boolean;
  /** Progress messages (stderr in the CLI). */
  log?: (msg: string) => void;
  signal?: AbortSignal;
  /** Time whole `pma merge` processes (their start included), as a user runs them, instead of merge() in this process. */
  process?: boolean;
  /** Recorded in the result. */
  command?: string;
}

export interface ResolvedBenchOptions {
  paths: string[] | null;
  last: number | null;
  series: SeriesParams | null;
  runs: number;
  threads: number[];
  io: IoMode[];
  kernel: KernelChoice;
  write: WriteChoice;
  checksum: Checksum;
  devices: DeviceOption[];
  outDtype: OutputDTypeOption;
  /** null: the merge's default. */
  maxShardSize: number | null;
  /** Absolute. */
  dir: string;
  dirGiven: boolean;
  keep: boolean;
  regenerate: boolean;
  process: boolean;
}

export function defaultBenchDir(): string {
  return join(tmpdir(), 'pma-bench');
}

/** A list option: an array, a number, or a comma-separated string; every item checked by `item`. */
function list<T>(name: string, raw: unknown, expected: string, item: (x: unknown) => T): T[] {
  let items: unknown[];
  if (Array.isArray(raw)) items = raw;
  else if (typeof raw === 'string')
    items = raw
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '');
  else if (typeof raw === 'number') items = [raw];
  else throw v.invalid(name, expected, raw);
  if (items.length === 0) throw v.invalid(name, expected, raw);
  return [...new Set(items.map(item))];
}

export function threadList(name: string, raw: unknown): number[] {
  return list(name, raw, 'a comma-separated list of thread counts such as 1,2', (x) => v.integer(name, x, 1, 1024));
}

export function deviceList(name: string, raw: unknown): DeviceOption[] {
  // cuda:0,1 has a comma of its own: items are split on commas not followed by a digit.
  const items = typeof raw === 'string' ? raw.split(/,(?!\d)/) : raw;
  return list(name, items, 'a comma-separated list of devices such as cpu,cuda', (x) => {
    parseDevice(x);
    return x as DeviceOption;
  });
}

export function ioList(name: string, raw: unknown): IoMode[] {
  return list(name, raw, 'a comma-separated list of pread, mmap', (x) => v.oneOf(name, x, IO_MODES));
}

/** Validates every option before any work, with the one message format of src/validate.ts. */
export function resolveBenchOptions(o: BenchOptions, cores: number): ResolvedBenchOptions {
  if (typeof o !== 'object' || o === null) throw v.invalid('options', 'an object', o);
  const paths =
    o.paths === undefined || (Array.isArray(o.paths) && o.paths.length === 0) ? null : v.stringList('paths', o.paths);
  let series: SeriesParams | null = null;
  let last: number | null = null;
  if (paths) {
    const seriesOnly = 'no value with explicit inputs (size, inputs, dtype and regenerate describe a generated series)';
    if (o.size !== undefined) throw v.invalid('size', seriesOnly, o.size);
    if (o.inputs !== undefined) throw v.invalid('inputs', seriesOnly, o.inputs);
    if (o.dtype !== undefined) throw v.invalid('dtype', seriesOnly, o.dtype);
    if (o.regenerate) throw v.invalid('regenerate', seriesOnly, o.regenerate);
    if (o.last !== undefined) last = v.integer('last', o.last, 1);
  } else {
    if (o.last !== undefined)
      throw v.invalid('last', 'no value without explicit inputs (it selects among given checkpoints)', o.last);
    const sizeBytes = v.byteSize('size', o.size ?? DEFAULT_SIZE);
    if (sizeBytes < MIN_SIZE) throw v.invalid('size', 'a size of at least 1MB', o.size);
    series = {
      inputs: o.inputs === undefined ? DEFAULT_INPUTS : v.integer('inputs', o.inputs, 2, 1000),
      sizeBytes,
      dtype: o.dtype === undefined ? 'bf16' : v.oneOf('dtype', o.dtype, SERIES_DTYPES),
    };
  }
  return {
    paths,
    last,
    series,
    runs: o.runs === undefined ? DEFAULT_RUNS : v.integer('runs', o.runs, 1, 1000),
    threads: o.threads === undefined ? [...new Set([1, Math.max(1, cores)])] : threadList('threads', o.threads),
    io: o.io === undefined ? ['pread'] : ioList('io', o.io),
    kernel: o.kernel === undefined ? 'auto' : v.oneOf('kernel', o.kernel, KERNEL_CHOICES),
    write: o.write === undefined ? 'auto' : v.oneOf('write', o.write, WRITE_MODES),
    checksum: o.checksum === undefined ? 'blake3' : v.oneOf('checksum', o.checksum, CHECKSUMS),
    devices: o.device === undefined ? ['cpu'] : deviceList('device', o.device),
    outDtype: o.outDtype === undefined ? 'keep' : v.oneOf('outDtype', o.outDtype, OUTPUT_DTYPES),
    maxShardSize: o.maxShardSize === undefined ? null : v.byteSize('maxShardSize', o.maxShardSize),
    dir: resolve(o.dir === undefined ? defaultBenchDir() : v.nonEmptyString('dir', o.dir)),
    dirGiven: o.dir !== undefined,
    keep: o.keep === undefined ? false : v.boolean('keep', o.keep),
    regenerate: o.regenerate === undefined ? false : v.boolean('regenerate', o.regenerate),
    process: o.process === undefined ? false : v.boolean('process', o.process),
  };
}
