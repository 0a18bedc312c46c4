import type { OpMoments } from '../native.js';

/** Sums of one tensor, one layer or the whole model: OpMoments added up. */
export interface Moments {
  /** Checkpoints. */
  n: number;
  elements: number;
  gram: number[];
  cross: number[];
  newestSq: number;
}

export function emptyMoments(n: number): Moments {
  return {
    n,
    elements: 0,
    gram: new Array<number>(((n - 1) * n) / 2).fill(0),
    cross: new Array<number>(n - 1).fill(0),
    newestSq: 0,
  };
}

/** Adds an op's sums (from the engine) or another Moments' into `into`. */
export function addMoments(
  into: Moments,
  m: Pick<OpMoments, 'gram' | 'cross' | 'newestSq'> & ({ count: number } | { elements: number }),
): void {
  for (let i = 0; i < into.gram.length; i++) into.gram[i] = (into.gram[i] as number) + (m.gram[i] ?? 0);
  for (let i = 0; i < into.cross.length; i++) into.cross[i] = (into.cross[i] as number) + (m.cross[i] ?? 0);
  into.newestSq += m.newestSq;
  into.elements += 'elements' in m ? m.elements : m.count;
}

export interface DeviationStats {
  elements: number;
  /** ||theta_i - mean|| per checkpoint, oldest first. */
  deviationNorm: number[];
  /** cos(theta_i - mean, theta_j - mean); null where a deviation is zero. */
  cosine: (number | null)[][];
  /** ||theta_(i+1) - theta_i||, one fewer than the checkpoints. */
  consecutive: number[];
  /** ||theta_newest||. */
  newestNorm: number;
  /** ||theta_newest - mean|| / ||theta_newest||: the share of the newest checkpoint's norm the average changes. */
  removedShare: number | null;
  /** mean over pairs i < j of the deviations' cosine: negative when they cancel in the average. */
  meanPairCosine: number | null;
}

const sqrt0 = (x: number) => Math.sqrt(Math.max(0, x));

/**
 * Derives the statistics from the sums. With e_0 = 0 and E the matrix of <e_k, e_l>, the
 * deviation from the mean is d_i = e_i - mean(e), so <d_i, d_j> = E_ij - a_i - a_j + b with a_i
 * the row means of E and b its overall mean.
 */
export function deviationStats(m: Moments): DeviationStats {
  const n = m.n;
  const E = Array.from({ length: n }, () => new Array<number>(n).fill(0));
  let at = 0;
  for (let k = 1; k < n; k++) {
    for (let l = k; l < n; l++) {
      const v = m.gram[at++] as number;
      (E[k] as number[])[l] = v;
      (E[l] as number[])[k] = v;
    }
  }
  const a = E.map((row) => row.reduce((s, x) => s + x, 0) / n);
  const b = a.reduce((s, x) => s + x, 0) / n;
  const D = E.map((row, i) => row.map((x, j) => x - (a[i] as number) - (a[j] as number) + b));
  const deviationNorm = D.map((row, i) => sqrt0(row[i] as number));
  const cosine = D.map((row, i) =>
    row.map((x, j) => {
      const d = (deviationNorm[i] as number) * (deviationNorm[j] as number);
      return d > 0 ? Math.max(-1, Math.min(1, x / d)) : null;
    }),
  );
  const consecutive = Array.from({ length: n - 1 }, (_, i) =>
    sqrt0((E[i + 1]?.[i + 1] as number) + (E[i]?.[i] as number) - 2 * (E[i]?.[i + 1] as number)),
  );
  const newestNorm = Math.sqrt(m.newestSq);
  const pairs: number[] = [];
  for (let i = 0; i < n; i++)
    for (let j = i + 1; j < n; j++) if (cosine[i]?.[j] != null) pairs.push(cosine[i]?.[j] as number);
  return {
    elements: m.elements,
    deviationNorm,
    cosine,
    consecutive,
    newestNorm,
    removedShare: newestNorm > 0 ? (deviationNorm[n - 1] as number) / newestNorm : null,
    meanPairCosine: pairs.length > 0 ? pairs.reduce((s, x) => s + x, 0) / pairs.length : null,
  };
}
