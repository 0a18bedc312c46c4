import { PmaError } from '../errors.js';

export const METHODS = ['sma', 'ema', 'wma', 'decay', 'weights'] as const;
export type Method = (typeof METHODS)[number];

/** Learning-rate decay shapes that method 'decay' emulates over the selected window. */
export const SCHEDULES = ['linear', 'cosine', 'inverse-sqrt', '1-sqrt'] as const;
export type Schedule = (typeof SCHEDULES)[number];

/**
 * The decay curve 1 = d_1 >= d_2 >= ... >= d_K sampled at the window's K checkpoints, x = (i-1)/K
 * the share of the window already decayed at checkpoint i: linear 1 - x, cosine (1 + cos(pi x))/2,
 * 1-sqrt 1 - sqrt(x), inverse-sqrt 1/sqrt(i) (the classic rsqrt schedule counted in checkpoint
 * intervals from the window's start). The curve never reaches 0 inside the window: its last step
 * to 0 falls after the newest checkpoint.
 *
 * @example
 * ```ts
 * import { decayCurve } from 'pma';
 * console.log(decayCurve('cosine', 4)); // [1, 0.853..., 0.5, 0.146...]
 * ```
 */
export function decayCurve(schedule: Schedule, k: number): number[] {
  return Array.from({ length: k }, (_, j) => {
    const x = j / k;
    switch (schedule) {
      case 'linear':
        return 1 - x;
      case 'cosine':
        return (1 + Math.cos(Math.PI * x)) / 2;
      case '1-sqrt':
        return 1 - Math.sqrt(x);
      case 'inverse-sqrt':
        return 1 / Math.sqrt(j + 1);
    }
  });
}

/**
 * Merge weights that stand in for a decay (the WSM result): training on from checkpoint 1 with
 * the learning rate scaled by d_i equals, to first order, the average of the constant-rate
 * checkpoints with c_j = d_j - d_(j+1) and c_K = d_K (and 1 - d_1 = 0 on the checkpoint before
 * the window, which is therefore left out).
 *
 * @example
 * ```ts
 * import { decayWeights } from 'pma';
 * console.log(decayWeights('linear', 4)); // [0.25, 0.25, 0.25, 0.25]: the simple average
 * ```
 */
export function decayWeights(schedule: Schedule, k: number): number[] {
  const d = decayCurve(schedule, k);
  return d.map((x, j) => x - (d[j + 1] ?? 0));
}

export interface Weights {
  /** Normalised float64 weights, oldest first. */
  w64: number[];
  /** Their float32 roundings: what the fp32 accumulation multiplies by (golden rule 1). */
  w32: number[];
}

/**
 * Raw weights per method, oldest (i = 1) to newest (i = N):
 * SMA 1/N; WMA i/sum(i); EMA from the oldest, M = alpha*M_i + (1-alpha)*M, so
 * w_1 = (1-alpha)^(N-1) and w_i = alpha*(1-alpha)^(N-i); decay from the schedule (decayWeights);
 * explicit weights as given.
 */
function rawWeights(
  method: Method,
  n: number,
  alpha: number,
  explicit: number[] | undefined,
  schedule: Schedule,
): number[] {
  switch (method) {
    case 'sma':
      return Array.from({ length: n }, () => 1);
    case 'wma':
      return Array.from({ length: n }, (_, i) => i + 1);
    case 'ema': {
      let w = [1];
      for (let i = 1; i < n; i++) w = [...w.map((x) => x * (1 - alpha)), alpha];
      return w;
    }
    case 'decay':
      return decayWeights(schedule, n);
    case 'weights':
      if (!explicit || explicit.length !== n) {
        throw new PmaError('E_USAGE', `--weights lists ${explicit?.length ?? 0} weights for ${n} selected checkpoints`);
      }
      return explicit;
  }
}

/**
 * The merge weights of a method over n checkpoints, oldest first: float64, normalised to sum 1,
 * and their float32 roundings, which the fp32 accumulation multiplies by.
 *
 * @example
 * ```ts
 * import { computeWeights } from 'pma';
 * const { w64, w32 } = computeWeights('ema', 4, { alpha: 0.2 });
 * console.log(w64, w32);
 * ```
 */
export function computeWeights(
  method: Method,
  n: number,
  opts: { alpha?: number; weights?: number[]; schedule?: Schedule } = {},
): Weights {
  const raw = rawWeights(method, n, opts.alpha ?? 0.2, opts.weights, opts.schedule ?? 'linear');
  const sum = raw.reduce((s, x) => s + x, 0);
  if (!(sum > 0) || !Number.isFinite(sum))
    throw new PmaError('E_USAGE', `weights must sum to a positive finite number, got ${sum}`);
  const w64 = raw.map((x) => x / sum);
  return { w64, w32: w64.map((x) => Math.fround(x)) };
}
