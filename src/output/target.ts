import { dirname } from 'node:path';
import { readdir, stat, statfs } from 'node:fs/promises';

import { isPmaOutput, PMA_RECORD } from '../checkpoints/pma-output.js';
import { PmaError } from '../errors.js';
import type { MergePlan } from '../plan/types.js';
import { exists, realish, within } from '../util/fs.js';

/**
 * Refuses an output that would hide in, replace or contain an input checkpoint, and an existing
 * output unless `force`. Returns the output's real path.
 */
export async function checkOutputPath(
  out: string,
  plan: Pick<MergePlan, 'checkpoints'>,
  force: boolean,
): Promise<string> {
  const target = await realish(out);
  for (const c of plan.checkpoints) {
    const ck = await realish(c.path);
    if (within(target, ck)) {
      throw new PmaError(
        'E_OUTPUT',
        `output ${out} is inside the input checkpoint ${c.path}; choose a directory outside it`,
        { file: out },
      );
    }
    if (within(ck, target)) {
      throw new PmaError('E_OUTPUT', `output ${out} contains the input checkpoint ${c.path}; it would be replaced`, {
        file: out,
      });
    }
  }
  if (await exists(target)) {
    if (!force)
      throw new PmaError('E_OUTPUT', `output ${out} already exists; pass --force to replace it`, { file: out });
    const foreign = await whyNotReplaceable(target);
    if (foreign) {
      throw new PmaError(
        'E_OUTPUT',
        `output ${out} ${foreign}; --force replaces only an output pma wrote (it has a pma.json) or an empty directory: remove it yourself or choose another --out`,
        { file: out },
      );
    }
  }
  return target;
}

/** Why --force may not replace `p`: null for pma's own output or an empty directory. */
async function whyNotReplaceable(p: string): Promise<string | null> {
  const s = await stat(p);
  if (!s.isDirectory()) return 'is a file, not a directory pma wrote';
  if (await isPmaOutput(p)) return null;
  const names = await readdir(p);
  return names.length === 0 ? null : `exists and was not written by pma (it has no ${PMA_RECORD})`;
}

/** Space the rest of the merge will take, against what the output's filesystem has free: E_NOSPACE. */
export async function checkFreeSpace(target: string, bytesNeeded: number): Promise<void> {
  let free: number;
  try {
    const s = await statfs(dirname(target));
    free = s.bavail * s.bsize;
  } catch {
    return; // no answer (an exotic filesystem): the writes will tell
  }
  if (bytesNeeded > free) {
    const gb = (b: number) => `${(b / 1e9).toFixed(2)} GB`;
    throw new PmaError(
      'E_NOSPACE',
      `not enough space for the output in ${dirname(target)}: the merge still has ${gb(bytesNeeded)} to write, the filesystem has ${gb(free)} free`,
      { file: target },
    );
  }
}
