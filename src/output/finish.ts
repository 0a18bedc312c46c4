import { copyFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';

import { fsError } from '../errors.js';
import type { MergePlan } from '../plan/types.js';
import { PMA_RECORD } from '../checkpoints/pma-output.js';
import { INDEX_NAME } from '../safetensors/shard-index.js';
import { exists, fsyncPath, fsyncSubdirs, makeDirs } from '../util/fs.js';

/**
 * Writes the index, companion files and pma.json (with the checksum of every other file, under
 * the checksum's name: the safetensors sums come from the OutputHasher) into the partial directory, flushes everything,
 * and renames it into place (replacing what is there with `force`). Returns the seconds spent in
 * fsync.
 */
export async function finishOutput(
  dir: string,
  target: string,
  plan: Pick<MergePlan, 'index' | 'copyFiles' | 'writtenFiles' | 'checksum'>,
  record: Record<string, unknown>,
  force: boolean,
  outputSums: Record<string, string>,
  hash: (path: string) => Promise<string>,
): Promise<number> {
  try {
    if (plan.index !== null) await writeFile(join(dir, INDEX_NAME), plan.index);
    for (const f of plan.copyFiles) {
      if (plan.writtenFiles[f.to] !== undefined) continue;
      await makeDirs(dirname(join(dir, f.to)));
      await copyFile(f.from, join(dir, f.to));
    }
    for (const [name, text] of Object.entries(plan.writtenFiles)) {
      await makeDirs(dirname(join(dir, name)));
      await writeFile(join(dir, name), text);
    }
    const small = [
      ...new Set([
        ...(plan.index !== null ? [INDEX_NAME] : []),
        ...plan.copyFiles.map((f) => f.to),
        ...Object.keys(plan.writtenFiles),
      ]),
    ];
    const smallSums = await Promise.all(small.map((n) => hash(join(dir, n))));
    const sums: Record<string, string> = {
      ...outputSums,
      ...Object.fromEntries(small.map((n, i) => [n, smallSums[i] as string])),
    };
    const names = Object.keys(sums).sort();
    const sorted = Object.fromEntries(names.map((n) => [n, sums[n]]));
    await writeFile(join(dir, PMA_RECORD), `${JSON.stringify({ ...record, [plan.checksum]: sorted }, null, 2)}\n`);
    const synced = performance.now();
    await Promise.all(names.map((n) => fsyncPath(join(dir, n))));
    await fsyncPath(join(dir, PMA_RECORD));
    await fsyncSubdirs(dir, names);
    await fsyncPath(dir);
    const fsyncSeconds = (performance.now() - synced) / 1000;
    if (force && (await exists(target))) {
      const old = `${dir}.old`;
      await rename(target, old);
      await rename(dir, target);
      await rm(old, { recursive: true, force: true });
    } else {
      await rename(dir, target);
    }
    await fsyncPath(dirname(target));
    return fsyncSeconds;
  } catch (e) {
    throw fsError(e, 'cannot finish output', target);
  }
}
