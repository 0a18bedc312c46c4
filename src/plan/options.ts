import type { TokenSelection } from '../checkpoints/tokens.js';
import { OUTPUT_DTYPES, type OutputDTypeOption } from '../dtypes.js';
import * as v from '../validate.js';
import { resolvePart, type PartSpec } from './parts.js';
import { CHECKSUMS, OUTPUT_FORMATS, type Accumulate, type Checksum, type OutputFormat } from './types.js';
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
  /** The checksum pma.json records of every output file; default 'blake3'. */
  checksum?: Checksum;
  /** Largest output shard, bytes or "5GB"; default 5GB. */
  maxShardSize?: number | string;
  /**
   * Work unit size (bytes read + written), bytes or "64MiB". Default: about 1/64 of the merge,
   * between 16 MiB and 256 MiB. Never changes the result.
   */
  chunkSize?: number | string;
  /**
   * Merge checkpoints whose config.json names different models (model_type or architectures);
   * refused otherwise. Other differing keys are only warned about.
   */
  allowConfigMismatch?: boolean;
  /**
   * Tensors to average, by name glob ("model.*"): instead of the default, every floating-point
   * tensor (of a DCP checkpoint: every one that is not training state, such as optimizer.*).
   */
  average?: string[];
  /** Tensors never averaged, by name glob: copied from the newest checkpoint instead. */
  exclude?: string[];
  /**
   * The output's format: 'safetensors' (a Hugging Face checkpoint of the averaged model tensors),
   * or 'dcp'. Default: the inputs' format.
   */
  format?: OutputFormat;
  /**
   * A checkpoint quantized with a scheme pma cannot average (GPTQ, AWQ, bitsandbytes, FP8 with an
   * unknown scale layout, ...) is refused; this copies its quantized tensors from the newest
   * checkpoint instead, averages the rest, and records it in pma.json.
   */
  copyQuantized?: boolean;
  /**
   * One part of a merge split across processes or machines (docs/parts.md): "I/N" (I 0-based), or
   * "auto" for the scheduler's environment (a Slurm job array or srun tasks, a Kubernetes Indexed
   * Job, torchrun). Every part makes the same plan and writes its share of the output files.
   */
  part?: string;
  /** The number of parts, for `part: 'auto'` under a Kubernetes Indexed Job (its completions). */
  parts?: number | string;
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
  checksum: Checksum;
  maxShardSize: number;
  /** Whether maxShardSize was asked for: otherwise a merge in parts may shard finer, so every part has files. */
  maxShardSizeSet: boolean;
  /** null: chosen from the merge's size by chunkSizeFor(). */
  chunkSize: number | null;
  allowConfigMismatch: boolean;
  /** null: the default selection. */
  average: string[] | null;
  exclude: string[];
  /** null: the inputs' format. */
  format: OutputFormat | null;
  copyQuantized: boolean;
  /** Which part of a merge in parts this process is; null: the whole merge. */
  part: PartSpec | null;
}

/**
 * The default work unit: enough chunks (about 64) to keep every worker busy to the end of a small
 * merge, and few enough on a multi-terabyte merge that the plan stays small (at most 256 MiB each).
 */
export function chunkSizeFor(totalBytes: number): number {
  return Math.min(256 * 2 ** 20, Math.max(16 * 2 ** 20, Math.ceil(totalBytes / 64)));
}
export const DEFAULT_MAX_SHARD_SIZE = 5e9;

function resolveSelection(o: PlanOptions): Pick<ResolvedPlanOptions, 'selection' | 'tokens'> {
  const selection: ResolvedPlanOptions['selection'] = {};
  if (o.last !== undefined) selection.last = v.integer('last', o.last, 1);
  if (o.every !== undefined) selection.every = v.integer('every', o.every, 1);
  if (o.fromStep !== undefined) selection.fromStep = v.integer('fromStep', o.fromStep, 0);
  if (o.toStep !== undefined) selection.toStep = v.integer('toStep', o.toStep, 0);
  if (selection.fromStep !== undefined && selection.toStep !== undefined && selection.fromStep > selection.toStep) {
    throw v.invalid('toStep', `a step no earlier than the first step kept (${selection.fromStep})`, selection.toStep);
  }
  const interval = o.interval === undefined ? null : v.count('interval', o.interval);
  const window = o.window === undefined ? null : v.count('window', o.window);
  const perStep = o.tokensPerStep === undefined ? null : v.count('tokensPerStep', o.tokensPerStep);
  if (perStep !== null && interval === null && window === null) {
    throw v.invalid('interval', 'an interval or a window in tokens, for the tokens per step to select by', undefined);
  }
  if (interval !== null && window !== null && window < interval) {
    throw v.invalid('window', `a window >= the interval (${interval})`, o.window);
  }
  const tokens = interval === null && window === null ? null : { perStep, interval, window };
  return { selection, tokens };
}

function resolveWeights(o: PlanOptions): Pick<ResolvedPlanOptions, 'method' | 'alpha' | 'schedule' | 'weights'> {
  let weights: number[] | undefined;
  if (o.weights !== undefined) {
    if (!Array.isArray(o.weights) || o.weights.length === 0)
      throw v.invalid('weights', 'a non-empty list of numbers', o.weights);
    weights = o.weights.map((w, i) => v.finiteNumber(`weights[${i}]`, w, (n) => n >= 0, 'a finite number >= 0'));
  }
  const method = o.method === undefined ? (weights ? 'weights' : 'sma') : v.oneOf('method', o.method, METHODS);
  if (method === 'weights' && !weights)
    throw v.invalid('weights', 'a list of weights with method "weights"', undefined);
  if (method !== 'weights' && weights)
    throw v.invalid('method', '"weights" (or no method) when weights are given', method);
  const alpha =
    o.alpha === undefined
      ? 0.2
      : v.finiteNumber('alpha', o.alpha, (n) => n > 0 && n < 1, 'a number between 0 and 1 (exclusive)');
  if (o.alpha !== undefined && method !== 'ema') throw v.invalid('method', '"ema" when alpha is given', method);
  if (o.schedule !== undefined && method !== 'decay')
    throw v.invalid('method', '"decay" when a schedule is given', method);
  const schedule =
    method !== 'decay' ? null : o.schedule === undefined ? 'linear' : v.oneOf('schedule', o.schedule, SCHEDULES);
  return { method, alpha, schedule, weights };
}

/** Checks every plan option (one message format: src/validate.ts) and fills in the defaults. */
export function resolvePlanOptions(o: PlanOptions): ResolvedPlanOptions {
  if (typeof o !== 'object' || o === null) throw v.invalid('options', 'an object', o);
  const inputs =
    typeof o.inputs === 'string' ? [v.nonEmptyString('inputs', o.inputs)] : v.stringList('inputs', o.inputs);
  return {
    inputs,
    ...resolveSelection(o),
    ...resolveWeights(o),
    dtype: o.dtype === undefined ? 'keep' : v.oneOf('dtype', o.dtype, OUTPUT_DTYPES),
    accumulate: o.accumulate === undefined ? 'f32' : v.oneOf('accumulate', o.accumulate, ['f32', 'f64'] as const),
    checksum: o.checksum === undefined ? 'blake3' : v.oneOf('checksum', o.checksum, CHECKSUMS),
    maxShardSize: o.maxShardSize === undefined ? DEFAULT_MAX_SHARD_SIZE : v.byteSize('maxShardSize', o.maxShardSize),
    maxShardSizeSet: o.maxShardSize !== undefined,
    chunkSize: o.chunkSize === undefined ? null : v.byteSize('chunkSize', o.chunkSize),
    allowConfigMismatch:
      o.allowConfigMismatch === undefined ? false : v.boolean('allowConfigMismatch', o.allowConfigMismatch),
    format: o.format === undefined ? null : v.oneOf('format', o.format, OUTPUT_FORMATS),
    average: o.average === undefined ? null : v.stringList('average', o.average, 'name globs'),
    exclude: o.exclude === undefined ? [] : v.stringList('exclude', o.exclude, 'name globs'),
    copyQuantized: o.copyQuantized === undefined ? false : v.boolean('copyQuantized', o.copyQuantized),
    part: resolvePartOption(o),
  };
}

function resolvePartOption(o: PlanOptions): PartSpec | null {
  if (o.part === undefined) {
    if (o.parts !== undefined) throw v.invalid('part', '"auto" or I/N when parts is given', undefined);
    return null;
  }
  return resolvePart(o.part, process.env, o.parts);
}
