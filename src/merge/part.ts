import { planOnly, type PhaseTimes } from '../run/breakdown.js';
import { PmaError } from '../errors.js';
import { finalizeParts, partsOf, type FinalizeResult } from '../output/finalize.js';
import { finalizedFingerprint } from '../output/parts.js';
import { withFileHashing } from '../output/hash-threads.js';
import { checkTarget } from '../output/output.js';
import { partialPath, resumedChunkSize } from '../output/partial.js';
import { PartOutput } from '../output/part-output.js';
import { describePartState, partsInfo, type PartRecord } from '../output/parts.js';
import { planFingerprint } from '../output/state.js';
import type { PartSpec } from '../plan/parts.js';
import { planResolved, type PlanResult } from '../plan/planner.js';
import type { ResolvedPlanOptions } from '../plan/options.js';
import type { MergePlan } from '../plan/types.js';
import type { Engine } from '../run/engine.js';
import { realish } from '../util/fs.js';
import type { MergeOptions, ResolvedMergeOptions } from './options.js';
import { provenance } from './record.js';
import { writeChunks } from './write-chunks.js';
import type { NonFiniteFinding } from './nonfinite.js';

/** What one part of a merge in parts did (MergeResult.part). */
export interface PartResult {
  index: number;
  count: number;
  /** Where the part came from: "--part 1/4", "SLURM_ARRAY_TASK_ID=1, ...". */
  source: string;
  /**
   * 'merged': this run wrote the part's files; 'complete': they were already complete (a rerun);
   * 'finalized-before': the whole merge is already in place.
   */
  status: 'merged' | 'complete' | 'finalized-before';
  files: string[];
  bytes: number;
  /** Set when this part finalized the merge (it completed last). */
  finalized: FinalizeResult | null;
  /** Why it did not: the parts not complete yet, a line each; empty when it did or another process does. */
  waiting: string[];
}

export interface PartAttempt {
  out: string;
  plan: MergePlan;
  skipped: PlanResult['skipped'];
  resumedChunks: number;
  nonfinite: NonFiniteFinding[];
  droppedCache: boolean;
  bytesRead: number;
  bytesWritten: number;
  part: PartResult;
  times: PhaseTimes;
}

/**
 * One part of a merge in parts: the same plan as every other part, this part's chunks only, into
 * the shared `<out>.partial/`; then, if every part is complete, the finalize.
 */
export async function attemptPart(
  planOptions: ResolvedPlanOptions,
  spec: PartSpec,
  engine: Engine,
  o: ResolvedMergeOptions,
  options: MergeOptions,
): Promise<PartAttempt> {
  // Every part cuts the plan as the partial they share was cut, whatever --chunk-size says now.
  const t0 = performance.now();
  const resumed = await resumedChunkSize(await realish(o.out), true);
  const { plan, skipped } = await planResolved(resumed === null ? planOptions : { ...planOptions, chunkSize: resumed });
  const mine = plan.outputs.filter((_, i) => plan.parts?.files[i] === spec.index);
  const base = {
    plan,
    skipped,
    resumedChunks: 0,
    nonfinite: [],
    droppedCache: false,
    bytesRead: 0,
    bytesWritten: 0,
  };
  const part = (status: PartResult['status'], finalized: FinalizeResult | null, waiting: string[]) => ({
    ...spec,
    status,
    files: mine.map((f) => f.name),
    bytes: mine.reduce((s, f) => s + f.size, 0),
    finalized,
    waiting,
  });
  const path = await realish(o.out);
  // Already in place, finalized by a part or by `pma finalize`: a scheduler's late rerun.
  const finalizedBefore = (out: string) => ({
    ...base,
    out,
    part: part('finalized-before', null, []),
    times: planOnly((performance.now() - t0) / 1000),
  });
  if ((await finalizedFingerprint(path)) === planFingerprint(plan)) {
    options.onPlan?.(plan, skipped);
    return finalizedBefore(path);
  }
  const target = await checkTarget(plan, o.out, o.force);
  options.onPlan?.(plan, skipped);
  if (options.signal?.aborted) throw new PmaError('E_ABORTED', 'the merge was aborted');
  const dropCache = engine.dropsCache(plan);
  const info = partsInfo(plan, provenance(plan, engine, options.commandLine), o.force);
  const output = await PartOutput.open(plan, target, spec, info, dropCache, engine.hashing);
  if (output === null) return finalizedBefore(target.path); // while this part started
  if (!(output instanceof PartOutput)) {
    const t1 = performance.now();
    const fin = await finalizeIfLast(target.path);
    const times = { ...planOnly((t1 - t0) / 1000), finish: (performance.now() - t1) / 1000 };
    return { ...base, out: target.path, part: part('complete', fin.finalized, fin.waiting), times };
  }
  let record: PartRecord;
  let ran: Awaited<ReturnType<typeof writeChunks>>;
  let t1 = 0;
  let t2 = 0;
  try {
    await output.checkSpace();
    t1 = performance.now();
    ran = await writeChunks(plan, output, engine, dropCache, o, options, output.chunks);
    t2 = performance.now();
    record = await output.finish({
      device: engine.deviceName,
      threads: engine.threads,
      bytesRead: ran.bytesRead,
      bytesWritten: ran.bytesWritten,
      resumedChunks: output.done.size,
      nonfinite: ran.nonfinite.findings(),
      commandLine: options.commandLine ?? null,
    });
  } catch (e) {
    throw await output.fail(e);
  }
  const fin = await finalizeIfLast(target.path);
  return {
    ...base,
    out: target.path,
    resumedChunks: record.resumedChunks,
    nonfinite: ran.nonfinite.findings(),
    droppedCache: dropCache,
    bytesRead: ran.bytesRead,
    bytesWritten: ran.bytesWritten,
    part: part('merged', fin.finalized, fin.waiting),
    times: {
      plan: (t1 - t0) / 1000,
      run: (t2 - t1) / 1000,
      finish: (performance.now() - t2) / 1000,
      engine: ran.engine.breakdown,
      disk: ran.disk,
      ...output.times,
    },
  };
}

/** Finalizes the merge if every part is complete now; else says which parts it waits for. */
async function finalizeIfLast(target: string): Promise<{ finalized: FinalizeResult | null; waiting: string[] }> {
  try {
    return { finalized: await withFileHashing(1, (hash) => finalizeParts(target, hash, { auto: true })), waiting: [] };
  } catch (e) {
    if (!(e instanceof PmaError && e.code === 'E_INCOMPLETE')) throw e;
    // The parts not done, unless the last of them finalized the merge in the meantime.
    const parts = await partsOf(partialPath(target)).then(
      (s) => s.parts,
      () => [],
    );
    return { finalized: null, waiting: parts.filter((p) => p.state !== 'done').map(describePartState) };
  }
}
