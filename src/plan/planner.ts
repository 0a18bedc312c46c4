import { discover } from '../checkpoints/discover.js';
import { LoadCache, checkConsistent, loadCheckpoint, locate, type LayoutTensor, type LoadedCheckpoint } from '../checkpoints/load.js';
import { selectCheckpoints, type Selection } from '../checkpoints/select.js';
import { selectByTokens } from '../checkpoints/tokens.js';
import { DTYPE_BITS, isAveraged, outputDtypeFor } from '../dtypes.js';
import { chunkSizeFor, resolvePlanOptions, type PlanOptions } from '../options.js';
import { layoutFile, shardIndexJson, shardName, splitShards, type OutputTensorSpec } from '../safetensors/writer.js';
import { computeWeights } from '../weights.js';
import { cutChunks, type TensorSources } from './chunks.js';
import { PmaError } from '../errors.js';
import { companionFiles } from './companions.js';
import type { MergePlan, PlanOutputFile, PlanTensor } from './types.js';

export interface PlanResult {
  plan: MergePlan;
  /** Step-named entries of the run directory that were passed over, with why. */
  skipped: { path: string; reason: string }[];
}

function elementCount(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/**
 * Reads and validates headers only (no tensor data), selects checkpoints, computes weights, lays
 * out the output and cuts the work into chunks. Linear in the number of tensors and checkpoints.
 */
export async function planMerge(options: PlanOptions, exclude: ReadonlyMap<string, string> = new Map()): Promise<PlanResult> {
  const o = resolvePlanOptions(options);
  const found = await discover(o.inputs);
  // Steps bound the run first, then the token window and interval, then --every and --last.
  const { fromStep, toStep, ...rest } = o.selection;
  let pool = fromStep === undefined && toStep === undefined ? found.checkpoints : selectCheckpoints(found.checkpoints, { fromStep, toStep } as Selection);
  const tokenNotes: string[] = [];
  const tokensOf = new Map<string, number>();
  if (o.tokens) {
    const r = await selectByTokens(pool, o.tokens);
    pool = r.selected;
    tokenNotes.push(...r.notes);
    for (const c of r.selected) tokensOf.set(c.path, c.tokens);
  }
  const selected = selectCheckpoints(pool, rest);
  // Checkpoints left out after the selection (--on-nonfinite skip-checkpoint): the rest keep
  // their own explicit weights, or get the method's weights recomputed over them.
  const chosen = selected.filter((c) => !exclude.has(c.path));
  if (chosen.length === 0) {
    throw new PmaError('E_NONFINITE', `every selected checkpoint was left out: ${[...exclude].map(([p, why]) => `${p} (${why})`).join(', ')}`);
  }
  if (o.weights && o.weights.length === selected.length && chosen.length !== selected.length) o.weights = o.weights.filter((_, i) => !exclude.has((selected[i] as (typeof selected)[number]).path));
  const cache = new LoadCache();
  const cks: LoadedCheckpoint[] = [];
  for (const ref of chosen) cks.push(await loadCheckpoint(ref, cache));
  checkConsistent(cks);
  const weights = computeWeights(o.method, cks.length, { alpha: o.alpha, ...(o.weights ? { weights: o.weights } : {}), ...(o.schedule ? { schedule: o.schedule } : {}) });
  const newest = cks[cks.length - 1] as LoadedCheckpoint;

  const specs: (OutputTensorSpec & { action: 'merge' | 'copy'; inDtype: PlanTensor['inDtype'] })[] = newest.contents.tensors.map((t) => {
    const merge = isAveraged(t.dtype);
    const outDtype = merge ? outputDtypeFor(t.dtype as never, o.dtype) : t.dtype;
    const bytes = merge ? (elementCount(t.shape) * DTYPE_BITS[outDtype]) / 8 : t.bytes;
    return { name: t.name, dtype: outDtype, inDtype: t.dtype, shape: t.shape, bytes, action: merge ? 'merge' : 'copy' };
  });

  const groups = splitShards(specs, o.maxShardSize);
  const sharded = groups.length > 1;
  const outputs: PlanOutputFile[] = [];
  const tensors: PlanTensor[] = [];
  const weightMap = new Map<string, string>();
  for (const [i, group] of groups.entries()) {
    const name = sharded ? shardName(i, groups.length) : 'model.safetensors';
    const layout = layoutFile(group);
    outputs.push({ name, size: layout.size, header: layout.header.subarray(8).toString('utf8'), tensors: group.length });
    const byName = new Map(group.map((s) => [s.name, s]));
    for (const tname of layout.order) {
      const s = byName.get(tname) as (typeof specs)[number];
      tensors.push({ name: s.name, action: s.action, inDtype: s.inDtype, outDtype: s.dtype, shape: s.shape, file: name, offset: layout.offsets.get(tname) as number, bytes: s.bytes });
      weightMap.set(tname, name);
    }
  }

  const merged = tensors.filter((t) => t.action === 'merge');
  const copied = tensors.filter((t) => t.action === 'copy');
  const notes: string[] = [...tokenNotes, ...[...exclude].map(([path, why]) => `left out ${path}: ${why}`)];
  if (copied.length > 0) {
    const kinds = [...new Set(copied.map((t) => t.inDtype))].join(', ');
    notes.push(`${copied.length} tensor(s) of dtype ${kinds} are not averaged: copied from the newest checkpoint (${newest.name})`);
  }
  const outputBytes = tensors.reduce((s, t) => s + t.bytes, 0);
  const inputBytes = merged.reduce((s, t) => s + ((elementCount(t.shape) * DTYPE_BITS[t.inDtype]) / 8) * cks.length, 0)
    + copied.reduce((s, t) => s + t.bytes, 0);

  // Sources are looked up as the chunks are cut, not kept for every tensor at once: on a
  // 36k-tensor x 10-checkpoint plan that is a third of a million short-lived objects fewer.
  const items: TensorSources[] = tensors.map((t) => ({
    tensor: t,
    get sources() {
      return cks.map((c) => locate(c, c.contents.byName.get(t.name) as LayoutTensor));
    },
  }));
  const chunks = cutChunks(items, o.chunkSize ?? chunkSizeFor(inputBytes + outputBytes));

  const plan: MergePlan = {
    version: 1,
    method: o.method,
    alpha: o.method === 'ema' ? o.alpha : null,
    schedule: o.schedule,
    accumulate: o.accumulate,
    dtype: o.dtype,
    checkpoints: cks.map((c) => ({ path: c.path, name: c.name, step: c.step, tokens: tokensOf.get(c.path) ?? null })),
    weights,
    outputs,
    index: sharded ? shardIndexJson(outputBytes, weightMap) : null,
    tensors,
    chunks,
    copyFiles: await companionFiles(newest.dir),
    totals: { inputBytes, outputBytes, tensors: tensors.length, merged: merged.length, copied: copied.length },
    notes,
  };
  return { plan, skipped: found.skipped };
}
