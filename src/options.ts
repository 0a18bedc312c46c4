import { parseDevice, type DeviceOption, type DeviceRequest } from './devices.js';
import { OUTPUT_DTYPES, type OutputDTypeOption } from './dtypes.js';
import type { TokenSelection } from './checkpoints/tokens.js';
import { NONFINITE_MODES, type NonFiniteMode } from './exec/nonfinite.js';
import type { Accumulate, IoMode, KernelChoice, WriteMode } from './native.js';
import type { MergePlan } from './plan/types.js';
import * as v from './validate.js';
import { METHODS, SCHEDULES, type Method, type Schedule } from './weights.js';

export interface SelectionOptions {
  /** Merge the N newest checkpoints. */
  last?: number;
  /**
   * Tokens per optimizer step (a count such as 4M): a checkpoint's tokens are step x this.
   * Without it, each checkpoint's count is read from its trainer_state.json or config.json.
   */
  tokensPerStep?: number | string;
  /** Keep checkpoints at least this many tokens apart, counted back from the newest ("8B"). */
  interval?: number | string;
  /** Keep the checkpoints within this many tokens of the newest ("80B"). */
  window?: number | string;
  /** Keep every K-th checkpoint, counted back from the newest. */
  every?: number;
  fromStep?: number;
  toStep?: number;
}

export interface PlanOptions extends SelectionOptions {
  /** A run directory, or checkpoint directories / .safetensors files. */
  inputs: string | string[];
  /** Default 'sma'; 'weights' when `weights` is given. */
  method?: Method;
  /** EMA smoothing factor, default 0.2. */
  alpha?: number;
  /** The decay shape method 'decay' emulates over the selected window; default 'linear'. */
  schedule?: Schedule;
  /** Explicit weights, oldest to newest; normalised to sum 1. */
  weights?: number[];
  /** Output dtype of averaged tensors; default 'keep'. */
  dtype?: OutputDTypeOption;
  /** Accumulator precision; default 'f32' (the golden contract). */
  accumulate?: Accumulate;
  /** Largest output shard, bytes or "5GB"; default 5GB. */
  maxShardSize?: number | string;
  /**
   * Work unit size (bytes read + written), bytes or "64MiB". Default: about 1/64 of the merge,
   * between 16 MiB and 256 MiB. Never changes the result.
   */
  chunkSize?: number | string;
}

export interface Progress {
  bytesDone: number;
  bytesTotal: number;
  chunksDone: number;
  chunksTotal: number;
  elapsedMs: number;
}

export interface MergeOptions extends PlanOptions {
  /** Output directory; must not exist unless `force`. */
  out: string;
  /** Replace an existing output, or a partial one (instead of resuming it). */
  force?: boolean;
  /**
   * Finish the partial merge left in `<out>.partial/` by an interrupted run with the same options
   * and unchanged inputs, running only the chunks it lacks; without one, merge as usual.
   */
  resume?: boolean;
  /**
   * What to do when an input holds NaN or Inf: 'error' (default) stops the merge before its
   * output is written; 'warn' merges anyway and reports them; 'skip-checkpoint' merges again
   * without the checkpoints that hold them (weights recomputed over the rest).
   */
  onNonfinite?: NonFiniteMode;
  /** Worker threads; default: the number of cores on the CPU, up to 8 (4 per GPU) on GPUs. */
  threads?: number;
  /** CPU kernel; default 'auto' (the best this CPU has). */
  kernel?: KernelChoice;
  /**
   * 'cpu' (default), 'cuda' (GPU 0), 'cuda:0,1', 'cuda:all', or 'auto' (GPU 0 when this build has
   * CUDA and a usable GPU is present, else the CPU). Every device writes the same bytes.
   */
  device?: DeviceOption;
  /**
   * Device memory per GPU, bytes or "2GiB", shared by the workers; the same amount of pinned host
   * memory is used for staging. Default: a tenth of the GPU's free memory, at most 1 GiB.
   */
  gpuMemory?: number | string;
  io?: IoMode;
  /**
   * 'drop': drop inputs from the page cache behind the read position and outputs once on disk;
   * 'keep': leave the page cache alone; 'auto' (default): drop when the inputs exceed half of RAM.
   */
  pageCache?: PageCacheMode;
  /**
   * 'buffered' (default): results go through the page cache, with early writeback; 'direct': the
   * aligned middle of each output run goes to disk with O_DIRECT where the filesystem allows. The
   * bytes are the same; which is faster depends on the disk (see bench/README.md).
   */
  write?: WriteMode;
  onProgress?: (p: Progress) => void;
  /** Called once the plan is made, before any byte is written (the CLI prints the selection). */
  onPlan?: (plan: MergePlan, skipped: { path: string; reason: string }[]) => void;
  signal?: AbortSignal;
  /** Recorded in pma.json. */
  commandLine?: string[];
}

export interface ResolvedPlanOptions {
  inputs: string[];
  selection: Pick<SelectionOptions, 'last' | 'every' | 'fromStep' | 'toStep'>;
  /** null unless an interval or a window in tokens was asked for. */
  tokens: TokenSelection | null;
  method: Method;
  alpha: number;
  /** null unless method is 'decay'. */
  schedule: Schedule | null;
  weights: number[] | undefined;
  dtype: OutputDTypeOption;
  accumulate: Accumulate;
  maxShardSize: number;
  /** null: chosen from the merge's size by chunkSizeFor(). */
  chunkSize: number | null;
}

/**
 * The default work unit: enough chunks (about 64) to keep every worker busy to the end of a small
 * merge, and few enough on a multi-terabyte merge that the plan stays small (at most 256 MiB each).
 */
export function chunkSizeFor(totalBytes: number): number {
  return Math.min(256 * 2 ** 20, Math.max(16 * 2 ** 20, Math.ceil(totalBytes / 64)));
}
export const DEFAULT_MAX_SHARD_SIZE = 5e9;

export function resolvePlanOptions(o: PlanOptions): ResolvedPlanOptions {
  if (typeof o !== 'object' || o === null) throw v.invalid('options', 'an object', o);
  const inputs = typeof o.inputs === 'string' ? [v.nonEmptyString('inputs', o.inputs)] : v.stringList('inputs', o.inputs);
  const selection: ResolvedPlanOptions['selection'] = {};
  if (o.last !== undefined) selection.last = v.integer('last', o.last, 1);
  if (o.every !== undefined) selection.every = v.integer('every', o.every, 1);
  if (o.fromStep !== undefined) selection.fromStep = v.integer('fromStep', o.fromStep, 0);
  if (o.toStep !== undefined) selection.toStep = v.integer('toStep', o.toStep, 0);
  if (selection.fromStep !== undefined && selection.toStep !== undefined && selection.fromStep > selection.toStep) {
    throw v.invalid('toStep', `a step >= fromStep (${selection.fromStep})`, selection.toStep);
  }
  const interval = o.interval === undefined ? null : v.count('interval', o.interval);
  const window = o.window === undefined ? null : v.count('window', o.window);
  const perStep = o.tokensPerStep === undefined ? null : v.count('tokensPerStep', o.tokensPerStep);
  if (perStep !== null && interval === null && window === null) throw v.invalid('interval', 'an interval or a window in tokens when tokensPerStep is given', undefined);
  if (interval !== null && window !== null && window < interval) throw v.invalid('window', `a window >= the interval (${interval})`, o.window);
  const tokens = interval === null && window === null ? null : { perStep, interval, window };
  let weights: number[] | undefined;
  if (o.weights !== undefined) {
    if (!Array.isArray(o.weights) || o.weights.length === 0) throw v.invalid('weights', 'a non-empty list of numbers', o.weights);
    weights = o.weights.map((w, i) => v.finiteNumber(`weights[${i}]`, w, (n) => n >= 0, 'a finite number >= 0'));
  }
  const method = o.method === undefined ? (weights ? 'weights' : 'sma') : v.oneOf('method', o.method, METHODS);
  if (method === 'weights' && !weights) throw v.invalid('weights', 'a list of weights with method "weights"', undefined);
  if (method !== 'weights' && weights) throw v.invalid('method', '"weights" (or no method) when weights are given', method);
  const alpha = o.alpha === undefined ? 0.2 : v.finiteNumber('alpha', o.alpha, (n) => n > 0 && n < 1, 'a number between 0 and 1 (exclusive)');
  if (o.alpha !== undefined && method !== 'ema') throw v.invalid('method', '"ema" when alpha is given', method);
  if (o.schedule !== undefined && method !== 'decay') throw v.invalid('method', '"decay" when a schedule is given', method);
  const schedule = method !== 'decay' ? null : o.schedule === undefined ? 'linear' : v.oneOf('schedule', o.schedule, SCHEDULES);
  return {
    inputs,
    selection,
    tokens,
    method,
    alpha,
    schedule,
    weights,
    dtype: o.dtype === undefined ? 'keep' : v.oneOf('dtype', o.dtype, OUTPUT_DTYPES),
    accumulate: o.accumulate === undefined ? 'f32' : v.oneOf('accumulate', o.accumulate, ['f32', 'f64'] as const),
    maxShardSize: o.maxShardSize === undefined ? DEFAULT_MAX_SHARD_SIZE : v.byteSize('maxShardSize', o.maxShardSize),
    chunkSize: o.chunkSize === undefined ? null : v.byteSize('chunkSize', o.chunkSize),
  };
}

export const KERNEL_CHOICES = ['auto', 'scalar', 'avx2', 'avx512'] as const;
export const IO_MODES = ['pread', 'mmap'] as const;
export const WRITE_MODES = ['buffered', 'direct'] as const;
export const PAGE_CACHE_MODES = ['auto', 'keep', 'drop'] as const;
export type PageCacheMode = (typeof PAGE_CACHE_MODES)[number];

export interface ResolvedRunOptions {
  out: string;
  force: boolean;
  resume: boolean;
  onNonfinite: NonFiniteMode;
  /** null: chosen once the device is known (defaultThreads). */
  threads: number | null;
  kernel: KernelChoice;
  device: DeviceRequest;
  /** The option as given, for messages. */
  deviceLabel: string;
  gpuMemory: number | undefined;
  io: IoMode;
  pageCache: PageCacheMode;
  write: WriteMode;
}

export function resolveRunOptions(o: MergeOptions): ResolvedRunOptions {
  return {
    out: v.nonEmptyString('out', o.out),
    force: o.force === undefined ? false : v.boolean('force', o.force),
    resume: o.resume === undefined ? false : v.boolean('resume', o.resume),
    onNonfinite: o.onNonfinite === undefined ? 'error' : v.oneOf('onNonfinite', o.onNonfinite, NONFINITE_MODES),
    threads: o.threads === undefined ? null : v.integer('threads', o.threads, 1, 1024),
    kernel: o.kernel === undefined ? 'auto' : v.oneOf('kernel', o.kernel, KERNEL_CHOICES),
    device: parseDevice(o.device),
    deviceLabel: String(o.device ?? 'cpu'),
    gpuMemory: o.gpuMemory === undefined ? undefined : v.byteSize('gpuMemory', o.gpuMemory),
    io: o.io === undefined ? 'pread' : v.oneOf('io', o.io, IO_MODES),
    pageCache: o.pageCache === undefined ? 'auto' : v.oneOf('pageCache', o.pageCache, PAGE_CACHE_MODES),
    write: o.write === undefined ? 'buffered' : v.oneOf('write', o.write, WRITE_MODES),
  };
}
