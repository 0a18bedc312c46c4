import type { MergePlan } from '../plan/types.js';
import type { Engine } from '../run/engine.js';
import { VERSION } from '../util/package.js';

/** What pma.json records of a merge, beside the checksums and the NaN/Inf findings. */
export function provenance(p: MergePlan, engine: Engine, commandLine: string[] | undefined): Record<string, unknown> {
  return {
    tool: 'pma',
    version: VERSION,
    createdAt: new Date().toISOString(),
    format: p.format,
    method: p.method,
    alpha: p.alpha,
    schedule: p.schedule,
    weights: p.weights.w64,
    weightsF32: p.weights.w32,
    accumulate: p.accumulate,
    dtype: p.dtype,
    inputs: p.checkpoints.map((c) => ({
      path: c.path,
      step: c.step,
      ...(c.tokens === null ? {} : { tokens: c.tokens }),
    })),
    inputDtypes: countBy(p.tensors, (t) => t.inDtype),
    outputDtypes: countBy(p.tensors, (t) => t.outDtype),
    outputs: p.outputs.map((f) => ({ name: f.name, size: f.size })),
    tensors: { merged: p.totals.merged, copied: p.totals.copied },
    ...(p.quantization ? { quantization: p.quantization } : {}),
    device: engine.deviceName,
    commandLine: commandLine ?? null,
  };
}

/** Tensor count per dtype, in dtype order (counted first: a plan may hold a million tensors). */
function countBy<T>(tensors: T[], dtype: (t: T) => string): Record<string, number> {
  const counts = new Map<string, number>();
  for (const t of tensors) counts.set(dtype(t), (counts.get(dtype(t)) ?? 0) + 1);
  return Object.fromEntries([...counts].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}
