import { availableParallelism } from 'node:os';

import { PmaError } from '../errors.js';
import type { KernelChoice, OpMoments } from '../native.js';
import type { PlanOptions } from '../plan/options.js';
import { planMerge } from '../plan/planner.js';
import type { MergePlan } from '../plan/types.js';
import { cpuKernel } from '../run/engine.js';
import { kernelOption } from '../run/options.js';
import { ChunkPool } from '../run/pool.js';
import { runChunks } from '../run/run-chunks.js';
import * as v from '../validate.js';
import { addMoments, deviationStats, emptyMoments, type DeviationStats, type Moments } from './moments.js';

export interface AnalyzeOptions extends PlanOptions {
  /** Worker threads (default: the number of cores). */
  threads?: number | string;
  /** CPU kernel that sums the products; default 'auto' (the best this CPU has). Every one gives the same bits. */
  kernel?: KernelChoice;
  signal?: AbortSignal;
}

export interface AnalyzeResult {
  checkpoints: { path: string; name: string; step: number | null }[];
  /** The whole model: every averaged tensor together. */
  overall: DeviationStats;
  /** Per layer ("layer 0", "layer 1", ..., then "other": embeddings, final norm, head). */
  layers: (DeviationStats & { layer: string; tensors: number })[];
  tensors: (DeviationStats & { name: string; layer: string })[];
  /** The plan's warnings: fewer checkpoints than asked for, config.json keys that differ. */
  warnings: string[];
}

/** The layer a tensor belongs to, from the usual naming (model.layers.3., h.3., blocks.3.). */
export function layerOf(name: string): string {
  const m = /(?:^|\.)(?:layers|layer|h|blocks|block)\.(\d+)\./.exec(name);
  return m ? `layer ${m[1]}` : 'other';
}

function layerOrder(a: string, b: string): number {
  const na = a === 'other' ? Infinity : Number(a.slice(6));
  const nb = b === 'other' ? Infinity : Number(b.slice(6));
  return na - nb;
}

/**
 * How the selected checkpoints deviate from their average, per tensor, per layer and overall:
 * each checkpoint's distance from the mean, the pairwise cosine of those deviations (negative:
 * they cancel in the average), the distance between consecutive checkpoints, and the share of
 * the newest checkpoint's norm the average changes. Reads the checkpoints once, chunk by chunk,
 * on the worker pool and the addon, like a merge (bounded memory); writes nothing.
 *
 * @example
 * ```ts
 * import { analyze } from 'pma';
 * const r = await analyze({ inputs: 'runs/exp7', last: 4 });
 * console.log(r.overall.removedShare, r.overall.meanPairCosine, r.layers.map((l) => l.layer));
 * ```
 */
export async function analyze(options: AnalyzeOptions): Promise<AnalyzeResult> {
  const threads =
    options.threads === undefined ? availableParallelism() : v.integer('threads', options.threads, 1, 1024);
  const kernelChoice = kernelOption(options.kernel);
  // A missing or broken addon, or a kernel this CPU has not, fails here, before any worker starts.
  // The workers then start (each loads the addon) while the main thread plans.
  const kernel = cpuKernel(kernelChoice);
  const pool = new ChunkPool(threads);
  let plan: MergePlan;
  // Chunks finish in any order; their sums are added in the plan's, so that a tensor split across
  // chunks gets the same bits for any thread count.
  let perChunk: OpMoments[][];
  try {
    // The tensors as a safetensors merge lays them out: one order whatever the inputs' format. One
    // op per tensor: the engine's moments are per op, the report's per tensor.
    ({ plan } = await planMerge({ ...options, format: 'safetensors' }, new Map(), { opPerTensor: true }));
    const n = plan.checkpoints.length;
    if (n < 2)
      throw new PmaError('E_NO_CHECKPOINTS', `pma analyze needs at least 2 checkpoints, the selection has ${n}`);
    perChunk = new Array<OpMoments[]>(plan.chunks.length);
    await runChunks(
      plan.chunks,
      pool,
      {
        run: (c, _, cancel) => pool.analyze({ inputs: c.inputs, ops: c.ops, cancel, kernel }),
        done: (i, moments) => {
          perChunk[i] = moments;
        },
      },
      { ...(options.signal ? { signal: options.signal } : {}), what: 'the analysis' },
    );
  } finally {
    await pool.close();
  }
  const n = plan.checkpoints.length;
  const byTensor = new Map<string, Moments>();
  for (const [i, chunk] of plan.chunks.entries()) {
    const moments = perChunk[i] as OpMoments[];
    for (const [k, op] of chunk.ops.entries()) {
      if (op.kind === 'copy') continue;
      let t = byTensor.get(op.tensor);
      if (!t) byTensor.set(op.tensor, (t = emptyMoments(n)));
      addMoments(t, moments[k] as OpMoments);
    }
  }

  const overall = emptyMoments(n);
  const layers = new Map<string, { m: Moments; tensors: number }>();
  const tensors: AnalyzeResult['tensors'] = [];
  for (const t of plan.tensors) {
    const m = byTensor.get(t.name);
    if (!m) continue;
    const layer = layerOf(t.name);
    let l = layers.get(layer);
    if (!l) layers.set(layer, (l = { m: emptyMoments(n), tensors: 0 }));
    addMoments(l.m, m);
    l.tensors++;
    addMoments(overall, m);
    tensors.push({ name: t.name, layer, ...deviationStats(m) });
  }
  return {
    checkpoints: plan.checkpoints.map((c) => ({ path: c.path, name: c.name, step: c.step })),
    overall: deviationStats(overall),
    layers: [...layers]
      .sort((a, b) => layerOrder(a[0], b[0]))
      .map(([layer, l]) => ({ layer, tensors: l.tensors, ...deviationStats(l.m) })),
    tensors,
    warnings: plan.warnings,
  };
}
