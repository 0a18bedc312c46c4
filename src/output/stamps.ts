import { stat } from 'node:fs/promises';

import { fsError } from '../errors.js';
import type { MergePlan } from '../plan/types.js';

/**
 * Every input file's size and modification time when the merge began: an input that changes
 * under a merge (or between a merge and its resume) may have given it a mix of old and new bytes.
 */
export interface InputStamp {
  path: string;
  size: number;
  mtimeMs: number;
}

/** Every input file of the plan with its size and modification time. */
export async function stampInputs(plan: MergePlan): Promise<InputStamp[]> {
  const paths = [...new Set(plan.chunks.flatMap((c) => c.inputs))].sort();
  return Promise.all(
    paths.map(async (path) => {
      const s = await stat(path).catch((e: unknown) => {
        throw fsError(e, 'cannot read input', path);
      });
      return { path, size: s.size, mtimeMs: s.mtimeMs };
    }),
  );
}

/** How an input differs from its stamp ("changed size (a -> b bytes)", ...), or null if it does not. */
export function stampChange(was: InputStamp, now: InputStamp | undefined, gone: string): string | null {
  if (!now) return gone;
  if (now.size !== was.size) return `changed size (${was.size} -> ${now.size} bytes)`;
  if (now.mtimeMs !== was.mtimeMs) return `was modified (at ${new Date(now.mtimeMs).toISOString()})`;
  return null;
}

/** The first input whose size or modification time differs from its stamp, and how; else null. */
export async function changedInput(stamps: InputStamp[]): Promise<{ path: string; change: string } | null> {
  for (const s of stamps) {
    const now = await stat(s.path).then(
      (st) => ({ path: s.path, size: st.size, mtimeMs: st.mtimeMs }),
      () => undefined,
    );
    const change = stampChange(s, now, 'is gone');
    if (change) return { path: s.path, change };
  }
  return null;
}
