import { PmaError } from './errors.js';

export const METHODS = ['sma', 'ema', 'wma', 'weights'] as const;
export type Method = (typeof METHODS)[number];

export interface Weights {
  /** Normalised float64 weights, oldest first. */
  w64: number[];
  /** Their float32 roundings: what the fp32 accumulation multiplies by (golden rule 1). */
  w32: number[];
}

/**
 * Raw weights per method, oldest (i = 1) to newest (i = N):
 * SMA 1/N; WMA i/sum(i); EMA from the oldest, M = alpha*M_i + (1-alpha)*M, so
 * w_1 = (1-alpha)^(N-1) and w_i = alpha*(1-alpha)^(N-i); explicit weights as given.
 */
function rawWeights(method: Method, n: number, alpha: number, explicit: number[] | undefined): number[] {
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
    case 'weights':
      if (!explicit || explicit.length !== n) {
        throw new PmaError('E_USAGE', `--weights lists ${explicit?.length ?? 0} weights for ${n} selected checkpoints`);
      }
      return explicit;
  }
}

export function computeWeights(method: Method, n: number, opts: { alpha?: number; weights?: number[] } = {}): Weights {
  const raw = rawWeights(method, n, opts.alpha ?? 0.2, opts.weights);
  const sum = raw.reduce((s, x) => s + x, 0);
  if (!(sum > 0) || !Number.isFinite(sum)) throw new PmaError('E_USAGE', `weights must sum to a positive finite number, got ${sum}`);
  const w64 = raw.map((x) => x / sum);
  return { w64, w32: w64.map((x) => Math.fround(x)) };
}
