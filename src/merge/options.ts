import type { PlanOptions } from '../plan/options.js';
import type { MergePlan } from '../plan/types.js';
import { resolveEngineOptions, type EngineOptions, type ResolvedEngineOptions } from '../run/options.js';
import type { Progress } from '../run/run-chunks.js';
import * as v from '../validate.js';
import { NONFINITE_MODES, type NonFiniteMode } from './nonfinite.js';

export interface MergeOptions extends PlanOptions, EngineOptions {
  /** Output directory; must not exist unless `force`. */
  out: string;
  /** Replace an existing output, or a partial one (instead of resuming it). */
  force?: boolean;
  /**
   * Finish the partial merge left in `<out>.partial/` by an interrupted run with the same options
   * and unchanged inputs, running only the chunks it lacks; without one, merge as usual.
   */
  resume?: boolean;
  /**
   * What to do when an input holds NaN or Inf: 'error' (default) stops the merge before its
   * output is written; 'warn' merges anyway and reports them; 'skip-checkpoint' merges again
   * without the checkpoints that hold them (weights recomputed over the rest).
   */
  onNonfinite?: NonFiniteMode;
  onProgress?: (p: Progress) => void;
  /** Called once the plan is made, before any byte is written (the CLI prints the selection). */
  onPlan?: (plan: MergePlan, skipped: { path: string; reason: string }[]) => void;
  signal?: AbortSignal;
  /** Recorded in pma.json. */
  commandLine?: string[];
}

export interface ResolvedMergeOptions {
  out: string;
  force: boolean;
  resume: boolean;
  onNonfinite: NonFiniteMode;
  engine: ResolvedEngineOptions;
}

/** Checks the options a merge adds to the plan's (those are checked by the planner). */
export function resolveMergeOptions(o: MergeOptions): ResolvedMergeOptions {
  if (typeof o !== 'object' || o === null) throw v.invalid('options', 'an object', o);
  return {
    out: v.nonEmptyString('out', o.out),
    force: o.force === undefined ? false : v.boolean('force', o.force),
    resume: o.resume === undefined ? false : v.boolean('resume', o.resume),
    onNonfinite: o.onNonfinite === undefined ? 'error' : v.oneOf('onNonfinite', o.onNonfinite, NONFINITE_MODES),
    engine: resolveEngineOptions(o),
  };
}
