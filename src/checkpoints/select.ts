import { PmaError } from '../errors.js';
import type { CheckpointRef } from './discover.js';

export interface Selection {
  /** The N newest (after the other filters). */
  last?: number;
  /** Every K-th, counted back from the newest. */
  every?: number;
  fromStep?: number;
  toStep?: number;
}

/** Applies --from-step/--to-step, then --every, then --last; keeps oldest-first order. */
export function selectCheckpoints<T extends CheckpointRef>(all: T[], sel: Selection): T[] {
  let list = all;
  if (sel.fromStep !== undefined || sel.toStep !== undefined) {
    const unstepped = list.find((c) => c.step === null);
    if (unstepped) {
      throw new PmaError('E_USAGE', `--from-step/--to-step need step numbers, but ${unstepped.path} carries none`, {
        file: unstepped.path,
      });
    }
    list = list.filter(
      (c) =>
        (sel.fromStep === undefined || (c.step as number) >= sel.fromStep) &&
        (sel.toStep === undefined || (c.step as number) <= sel.toStep),
    );
  }
  if (sel.every !== undefined && sel.every > 1) {
    const k = sel.every;
    list = list.filter((_, i) => (list.length - 1 - i) % k === 0);
  }
  if (sel.last !== undefined) list = list.slice(Math.max(0, list.length - sel.last));
  if (list.length === 0) {
    throw new PmaError(
      'E_NO_CHECKPOINTS',
      `no checkpoint left after selection (${all.length} found, steps ${all.map((c) => c.step ?? c.name).join(', ')})`,
    );
  }
  return list;
}
