import { formatTokens } from './checkpoints/tokens.js';
import * as v from './validate.js';

export interface RecommendOptions {
  /** Total parameters (a count such as 13B). */
  totalParams: number | string;
  /** Parameters active per token; fewer than the total means a mixture of experts. */
  activeParams?: number | string;
  /** Tokens per optimizer step, to turn the interval into steps. */
  tokensPerStep?: number | string;
}

export interface Recommendation {
  architecture: 'dense' | 'moe';
  totalParams: number;
  activeParams: number;
  /** Tokens between merged checkpoints. */
  intervalTokens: number;
  /** Checkpoints to merge. */
  n: number;
  windowTokens: number;
  /** Present with tokensPerStep: save a checkpoint every this many steps. */
  intervalSteps?: number;
  /** The paper's results this is read from, and how. */
  basis: string;
  /** The size lies outside what the paper reports: scaled from the nearest result. */
  extrapolated: boolean;
  source: string;
  caveat: string;
  /** The pma merge options that select this window. */
  mergeArgs: string[];
}

export const PMA_PAPER = 'Li et al., "Model Merging in Pre-training of Large Language Models" (2025)';

// Results reported by the PMA paper: model size (total parameters) -> best interval in tokens.
// MoE at 10x total/active; dense as ranges of sizes with a range of intervals.
const MOE: [number, number][] = [
  [7e9, 4e9],
  [13e9, 8e9],
  [100e9, 80e9],
];
const DENSE_SMALL = { sizes: [411e6, 2e9], intervals: [2e9, 5e9], n: 6 };
const DENSE_LARGE = { sizes: [8e9, 70e9], intervals: [15e9, 40e9], n: 10 };

/** log-log interpolation through the points; proportional scaling beyond the ends. */
function interpolate(points: [number, number][], x: number): { y: number; extrapolated: boolean } {
  const first = points[0] as [number, number];
  const last = points[points.length - 1] as [number, number];
  if (x < first[0]) return { y: (first[1] * x) / first[0], extrapolated: true };
  if (x > last[0]) return { y: (last[1] * x) / last[0], extrapolated: true };
  for (let i = 1; i < points.length; i++) {
    const [x0, y0] = points[i - 1] as [number, number];
    const [x1, y1] = points[i] as [number, number];
    if (x <= x1) {
      const t = x1 === x0 ? 0 : Math.log(x / x0) / Math.log(x1 / x0);
      return { y: Math.exp(Math.log(y0) + t * Math.log(y1 / y0)), extrapolated: false };
    }
  }
  return { y: last[1], extrapolated: false };
}

/** Two significant figures: the paper's own results are no finer. */
const round2 = (x: number) => Number(x.toPrecision(2));

/**
 * The checkpoint interval and the number of checkpoints to merge that the PMA paper found best
 * at the model's scale. Only the 1.3B/13B MoE was swept over intervals and N; every other value
 * is the paper's reported setting for its size, read off between sizes.
 *
 * @example
 * ```ts
 * import { recommend } from 'pma';
 * const r = recommend({ totalParams: '13B', activeParams: '1.3B', tokensPerStep: '4M' });
 * console.log(`every ${r.intervalTokens} tokens, merge the last ${r.n}: pma merge <run> ${r.mergeArgs.join(' ')}`);
 * ```
 */
export function recommend(options: RecommendOptions): Recommendation {
  if (typeof options !== 'object' || options === null) throw v.invalid('options', 'an object', options);
  const total = v.count('totalParams', options.totalParams);
  const active = options.activeParams === undefined ? total : v.count('activeParams', options.activeParams);
  if (active > total)
    throw v.invalid('activeParams', `at most the total parameter count (${formatTokens(total)})`, options.activeParams);
  const perStep = options.tokensPerStep === undefined ? null : v.count('tokensPerStep', options.tokensPerStep);
  const moe = active < total;
  let interval: number;
  let n: number;
  let basis: string;
  let extrapolated: boolean;
  if (moe) {
    const r = interpolate(MOE, total);
    interval = r.y;
    extrapolated = r.extrapolated;
    n = 10;
    basis = 'MoE results: 4B tokens at 0.7B/7B, 8B at 1.3B/13B, 80B at 10B/100B (active/total), N = 10';
  } else {
    const small = total <= DENSE_SMALL.sizes[1]!;
    const large = total >= DENSE_LARGE.sizes[0]!;
    const points: [number, number][] = [
      [DENSE_SMALL.sizes[0]!, DENSE_SMALL.intervals[0]!],
      [DENSE_SMALL.sizes[1]!, DENSE_SMALL.intervals[1]!],
      [DENSE_LARGE.sizes[0]!, DENSE_LARGE.intervals[0]!],
      [DENSE_LARGE.sizes[1]!, DENSE_LARGE.intervals[1]!],
    ];
    const r = interpolate(points, total);
    interval = r.y;
    extrapolated = r.extrapolated;
    n = small ? DENSE_SMALL.n : large ? DENSE_LARGE.n : total < 4e9 ? DENSE_SMALL.n : DENSE_LARGE.n;
    basis = 'dense results: 411M-2B models with N = 6 at 2B-5B tokens, 8B-70B models with N = 10 at 15B-40B tokens';
    if (!small && !large) basis += '; this size lies between the two ranges';
  }
  interval = round2(interval);
  const r: Recommendation = {
    architecture: moe ? 'moe' : 'dense',
    totalParams: total,
    activeParams: active,
    intervalTokens: interval,
    n,
    windowTokens: interval * n,
    basis,
    extrapolated,
    source: PMA_PAPER,
    caveat:
      'only the 1.3B/13B MoE was swept over intervals and N; the other sizes are the settings the paper reports for them',
    mergeArgs: ['--interval', formatTokens(interval), '--window', formatTokens(interval * n)],
  };
  if (perStep !== null) {
    r.intervalSteps = Math.max(1, Math.round(interval / perStep));
    r.mergeArgs.push('--tokens-per-step', formatTokens(perStep));
  }
  return r;
}
