import { PmaError } from '../errors.js';
import type { KernelName } from '../native.js';
import { checkTarget, MergeOutput } from '../output/output.js';
import { resumedChunkSize } from '../output/partial.js';
import { chunkSizeFor, resolvePlanOptions, type PlanOptions, type ResolvedPlanOptions } from '../plan/options.js';
import { planMerge, planResolved, type PlanResult } from '../plan/planner.js';
import type { MergePlan } from '../plan/types.js';
import { rounded, type MergeBreakdown, type PhaseTimes } from '../run/breakdown.js';
import type { GpuStaging } from '../run/devices.js';
import { Engine } from '../run/engine.js';
import { realish } from '../util/fs.js';
import * as v from '../validate.js';
import type { NonFiniteFinding } from './nonfinite.js';
import { resolveMergeOptions, type MergeOptions, type ResolvedMergeOptions } from './options.js';
import { attemptPart, type PartResult } from './part.js';
import { provenance } from './record.js';
import { writeChunks } from './write-chunks.js';

export interface MergeResult {
  out: string;
  plan: MergePlan;
  skipped: PlanResult['skipped'];
  /** The CPU kernel (unused when the merge ran on GPUs). */
  kernel: KernelName;
  /** 'cpu', or the GPUs used: 'cuda:0', 'cuda:0,1'. */
  device: string;
  /** Why --device auto chose the CPU, when it did. */
  deviceNote?: string;
  /** On GPUs: the workers per GPU, the staging slot size, the pinned host and device memory used. */
  gpuStaging?: GpuStaging;
  threads: number;
  /** Chunks found done in a partial output and not run again (resume). */
  resumedChunks: number;
  /** NaN/Inf found in the inputs (merged anyway: onNonfinite 'warn'). */
  nonfinite: NonFiniteFinding[];
  /** Checkpoints left out for NaN/Inf (onNonfinite 'skip-checkpoint'), with why. */
  leftOut: { path: string; reason: string }[];
  /** Whether the page cache was dropped behind the merge (pageCache 'drop', or 'auto' on a big merge). */
  droppedCache: boolean;
  bytesRead: number;
  bytesWritten: number;
  elapsedMs: number;
  /** Input bytes per second of the whole merge, planning and finishing included. */
  bytesPerSecond: number;
  /** One part of a merge in parts (`part`): what it wrote, and whether it finalized the merge. */
  part?: PartResult;
  /** Where the time went: the phases' wall seconds, and the seconds of the threads' work. */
  breakdown: MergeBreakdown;
}

/**
 * Plans a merge without executing it: the chosen checkpoints, weights, output files and chunks.
 *
 * @example
 * ```ts
 * import { plan } from 'pma';
 * const p = await plan({ inputs: 'runs/exp7', last: 4 });
 * console.log(p.checkpoints.map((c) => c.step), p.weights.w64, p.outputs.map((f) => f.name));
 * ```
 */
export async function plan(options: PlanOptions): Promise<MergePlan> {
  return (await planMerge(options)).plan;
}

const aborted = () => new PmaError('E_ABORTED', 'the merge was aborted');

/**
 * Merges checkpoints into `out`: plans, writes into `<out>.partial/` with the native engine on a
 * worker pool, and renames it into place when complete. Throws PmaError and leaves nothing at
 * `out` on failure or abort; what was written stays in `<out>.partial/` for `resume`.
 *
 * @example
 * ```ts
 * import { merge } from 'pma';
 * const r = await merge({ inputs: 'runs/exp7', last: 8, method: 'ema', alpha: 0.2, out: 'merged' });
 * console.log(`${r.plan.checkpoints.length} checkpoints -> ${r.out} in ${r.elapsedMs} ms`);
 * ```
 */
export async function merge(options: MergeOptions): Promise<MergeResult> {
  const started = performance.now();
  const o = resolveMergeOptions(options);
  const planOptions = resolvePlanOptions(options); // every option is checked before the addon loads
  if (planOptions.part && o.onNonfinite === 'skip-checkpoint') {
    // Leaving a checkpoint out changes every part's plan: the parts cannot agree on it.
    throw v.invalid(
      'onNonfinite',
      '"error" or "warn" in a merge in parts (every part would have to leave the same checkpoint out)',
      o.onNonfinite,
    );
  }
  const engine = Engine.start(o.engine); // the workers load while the headers are read
  try {
    // Checkpoints left out for NaN/Inf (--on-nonfinite skip-checkpoint), path -> why: each finding
    // plans the merge again without them.
    const leftOut = new Map<string, string>();
    for (;;) {
      const done = planOptions.part
        ? { ...(await attemptPart(planOptions, planOptions.part, engine, o, options)), leftOut: [] }
        : await attempt(planOptions, leftOut, engine, o, options);
      if ('leaveOut' in done) {
        for (const [path, why] of done.leaveOut) leftOut.set(path, why);
        continue;
      }
      const elapsedMs = performance.now() - started;
      const { times, ...rest } = done;
      return {
        ...rest,
        kernel: engine.kernel,
        device: engine.deviceName,
        ...(engine.deviceNote ? { deviceNote: engine.deviceNote } : {}),
        ...(engine.staging ? { gpuStaging: engine.staging } : {}),
        threads: engine.threads,
        elapsedMs,
        bytesPerSecond: done.plan.totals.inputBytes / Math.max(elapsedMs / 1000, 1e-9),
        breakdown: rounded({ ...times, wall: elapsedMs / 1000 }),
      };
    }
  } finally {
    await engine.close();
  }
}

type Attempt =
  | (Pick<
      MergeResult,
      | 'out'
      | 'plan'
      | 'skipped'
      | 'resumedChunks'
      | 'nonfinite'
      | 'leftOut'
      | 'droppedCache'
      | 'bytesRead'
      | 'bytesWritten'
    > & { times: PhaseTimes })
  | { leaveOut: Map<string, string> };

/** One merge: plan, open the output, run the chunks, finish; or the checkpoints to leave out and plan again. */
async function attempt(
  planOptions: ResolvedPlanOptions,
  leftOut: ReadonlyMap<string, string>,
  engine: Engine,
  o: ResolvedMergeOptions,
  options: MergeOptions,
): Promise<Attempt> {
  // 1. Plan: headers only, nothing is written yet. A partial output taken up sets the work unit.
  const t0 = performance.now();
  const resumed =
    o.force && !o.resume ? null : await resumedChunkSize(await realish(o.out), o.resume || leftOut.size > 0);
  const { plan, skipped } = await planResolved(
    resumed === null ? planOptions : { ...planOptions, chunkSize: resumed },
    leftOut,
  );
  const asked = planOptions.chunkSize ?? chunkSizeFor(plan.totals.inputBytes + plan.totals.outputBytes);
  if (resumed !== null && resumed !== asked)
    plan.notes.push(`chunks of ${resumed} bytes, as in the partial merge taken up`);
  const target = await checkTarget(plan, o.out, o.force);
  options.onPlan?.(plan, skipped);
  if (options.signal?.aborted) throw aborted();
  // 2. Open the output: <out>.partial/, new or resumed (a retry without some checkpoints resumes
  // the partial an interrupted retry left, or replaces one it cannot resume).
  const retry = leftOut.size > 0;
  const dropCache = engine.dropsCache(plan);
  const output = await MergeOutput.open(plan, target, {
    resume: o.resume || retry,
    force: o.force || retry,
    dropCache,
    hashing: engine.hashing,
  });
  try {
    await output.checkSpace();
    // 3. Run the chunks the output lacks.
    const t1 = performance.now();
    const ran = await writeChunks(plan, output, engine, dropCache, o, options);
    const t2 = performance.now();
    if (ran.leaveOut) {
      await output.discard();
      return { leaveOut: ran.leaveOut };
    }
    // 4. Finish: index, companion files, pma.json with every checksum, then rename into place.
    const nonfinite = ran.nonfinite.findings();
    const leftOutList = [...leftOut].map(([path, reason]) => ({ path, reason }));
    const record = { ...provenance(plan, engine, options.commandLine), nonfinite, leftOut: leftOutList };
    const finished = await output.finish(record, o.force);
    const times: PhaseTimes = {
      plan: (t1 - t0) / 1000,
      run: (t2 - t1) / 1000,
      finish: (performance.now() - t2) / 1000,
      engine: ran.engine.breakdown,
      disk: ran.disk,
      ...finished,
    };
    return {
      out: target.path,
      plan,
      skipped,
      resumedChunks: output.done.size,
      nonfinite,
      leftOut: leftOutList,
      droppedCache: dropCache,
      bytesRead: ran.bytesRead,
      bytesWritten: ran.bytesWritten,
      times,
    };
  } catch (e) {
    throw await output.fail(e);
  }
}
