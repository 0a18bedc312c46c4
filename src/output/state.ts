import { createHash } from 'node:crypto';
import { open, readFile } from 'node:fs/promises';

import { PmaError } from '../errors.js';
import type { MergePlan } from '../plan/types.js';
import { stampChange, type InputStamp } from './stamps.js';

/**
 * A partial merge's identity (`.pma-resume/state.json`): which plan it executes and what its
 * inputs were, so that a resume continues only the same merge over the same bytes.
 */
export interface PartialState {
  version: number;
  /** SHA-256 of the plan: same arguments and same input headers give the same plan. */
  fingerprint: string;
  chunks: number;
  inputs: InputStamp[];
  startedAt: string;
}

const STATE_VERSION = 1;

export function planFingerprint(plan: MergePlan): string {
  // Hashing the UTF-8 bytes is twice as fast as hashing the string (hundreds of MB for a plan of
  // a million tensors).
  return createHash('sha256')
    .update(Buffer.from(JSON.stringify(plan)))
    .digest('hex');
}

export function newState(plan: MergePlan, stamps: InputStamp[]): PartialState {
  return {
    version: STATE_VERSION,
    fingerprint: planFingerprint(plan),
    chunks: plan.chunks.length,
    inputs: stamps,
    startedAt: new Date().toISOString(),
  };
}

/** Writes the state file (O_EXCL) and flushes it. */
export async function writeState(path: string, state: PartialState): Promise<void> {
  const fh = await open(path, 'wx');
  try {
    await fh.writeFile(`${JSON.stringify(state, null, 2)}\n`);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Refuses to resume the partial `dir` unless its state names this plan and unchanged inputs. */
export async function checkResumable(
  dir: string,
  statePath: string,
  plan: MergePlan,
  stamps: InputStamp[],
): Promise<void> {
  let state: PartialState;
  try {
    state = JSON.parse(await readFile(statePath, 'utf8')) as PartialState;
  } catch {
    throw new PmaError(
      'E_OUTPUT',
      `${dir} has no readable resume state (it was not made by this version of pma, or its creation was cut short); remove it or pass --force to start over`,
      { file: dir },
    );
  }
  if (
    state.version !== STATE_VERSION ||
    state.fingerprint !== planFingerprint(plan) ||
    state.chunks !== plan.chunks.length
  ) {
    throw new PmaError(
      'E_OUTPUT',
      `the partial merge in ${dir} was started with different arguments or different input headers; resume it with the original arguments, or pass --force to start over`,
      { file: dir },
    );
  }
  const now = new Map(stamps.map((s) => [s.path, s]));
  for (const s of state.inputs) {
    const what = stampChange(s, now.get(s.path), 'is no longer an input');
    if (what)
      throw new PmaError(
        'E_INPUT',
        `cannot resume ${dir}: input ${s.path} ${what} since the merge began; pass --force to start over`,
        { file: s.path },
      );
  }
}
