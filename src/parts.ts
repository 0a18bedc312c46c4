import { basename, dirname, join } from 'node:path';

import { PMA_RECORD } from './checkpoints/pma-output.js';
import { PmaError } from './errors.js';
import { finalizeParts, partsOf, type FinalizeResult } from './output/finalize.js';
import { PARTIAL_SUFFIX, partialPath } from './output/partial.js';
import { describePartState, type PartState } from './output/parts.js';
import { withFileHashing } from './output/hash-threads.js';
import { exists, realish } from './util/fs.js';
import { nonEmptyString } from './validate.js';

export type { FinalizeResult } from './output/finalize.js';
export type { PartState } from './output/parts.js';

/** `<out>` from `<out>` or `<out>.partial`, as the user names a merge in parts. */
async function targetOf(path: string): Promise<string> {
  const p = await realish(path);
  if (p.endsWith(PARTIAL_SUFFIX) && !(await exists(partialPath(p))))
    return join(dirname(p), basename(p).slice(0, -PARTIAL_SUFFIX.length));
  return p;
}

/**
 * Finishes a merge split into parts (`merge({ part })`) once every part is complete: checks each
 * part's record and files, writes the index, the companion files and pma.json, and renames
 * `<out>.partial` to `<out>`. The part that completes last does this itself; call it when that
 * part could not (it was killed while finalizing), or from a job that runs after the parts. Throws
 * E_INCOMPLETE naming the parts that are missing, running or failed; nothing is written then.
 *
 * @example
 * ```ts
 * import { finalize, merge } from 'pma';
 * // Two parts (on two machines, normally); the second to complete finalizes, finalize() checks.
 * await merge({ inputs: 'runs/exp7', last: 4, out: 'merged', part: '0/2' });
 * await merge({ inputs: 'runs/exp7', last: 4, out: 'merged', part: '1/2' });
 * const r = await finalize('merged');
 * console.log(`${r.out}: ${r.status}`);
 * ```
 */
export async function finalize(out: string): Promise<FinalizeResult> {
  const target = await targetOf(nonEmptyString('out', out));
  const r = await withFileHashing(1, (hash) => finalizeParts(target, hash, { auto: false }));
  if (r === null) throw new PmaError('E_INTERNAL', 'finalize gave way to another process');
  return r;
}

export interface PartsStatus {
  out: string;
  /** The output is in place: every part was done and it was finalized. */
  finalized: boolean;
  count: number;
  parts: PartState[];
  /** One line per part, as `pma status` prints them. */
  lines: string[];
}

/**
 * Where each part of a merge in parts stands: done (with its host and time), running (the lock's
 * holder: host, pid, last beat), stopped part-way (to rerun) or not started.
 *
 * @example
 * ```ts
 * import { merge, partsStatus } from 'pma';
 * await merge({ inputs: 'runs/exp7', last: 4, out: 'merged', part: '0/2' });
 * const s = await partsStatus('merged'); // part 0: done, part 1: not started
 * for (const line of s.lines) console.log(line);
 * ```
 */
export async function partsStatus(out: string): Promise<PartsStatus> {
  const target = await targetOf(nonEmptyString('out', out));
  const dir = partialPath(target);
  if (!(await exists(dir))) {
    if (await exists(join(target, PMA_RECORD)))
      return { out: target, finalized: true, count: 0, parts: [], lines: [`${target}: finalized`] };
    throw new PmaError('E_INPUT', `no merge in parts at ${target}: neither it nor ${dir} exists`, { file: dir });
  }
  const { info, parts } = await partsOf(dir);
  return { out: target, finalized: false, count: info.count, parts, lines: parts.map(describePartState) };
}
