import { copyFile, open, realpath, rename, rm, stat, statfs, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve, sep } from 'node:path';

import { PmaError, fsError } from '../errors.js';
import { INDEX_NAME } from '../safetensors/shard-index.js';
import type { MergePlan } from '../plan/types.js';

async function exists(p: string): Promise<boolean> {
  try {
    await stat(p);
    return true;
  } catch {
    return false;
  }
}

/** The real path of p, resolving symlinks in whatever part of it exists. */
async function realish(p: string): Promise<string> {
  const abs = resolve(p);
  try {
    return await realpath(abs);
  } catch {
    const parent = dirname(abs);
    return parent === abs ? abs : join(await realish(parent), basename(abs));
  }
}

const within = (child: string, parent: string) => child === parent || child.startsWith(parent.endsWith(sep) ? parent : parent + sep);

/**
 * Refuses an output that would hide in, replace or contain an input checkpoint, and an existing
 * output unless `force`.
 */
export async function checkOutputPath(out: string, plan: MergePlan, force: boolean): Promise<string> {
  const target = await realish(out);
  for (const c of plan.checkpoints) {
    const ck = await realish(c.path);
    if (within(target, ck)) {
      throw new PmaError('E_OUTPUT', `output ${out} is inside the input checkpoint ${c.path}; choose a directory outside it`, { file: out });
    }
    if (within(ck, target)) {
      throw new PmaError('E_OUTPUT', `output ${out} contains the input checkpoint ${c.path}; it would be replaced`, { file: out });
    }
  }
  if (!force && (await exists(target))) {
    throw new PmaError('E_OUTPUT', `output ${out} already exists; pass --force (force: true) to replace it`, { file: out });
  }
  return target;
}

/** fsync of a file or directory by path (directories: so that a rename or a new entry lasts). */
export async function fsyncPath(p: string): Promise<void> {
  const fh = await open(p, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Space the rest of the merge will take, against what the output's filesystem has free. */
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
    throw new PmaError('E_OUTPUT', `not enough space for the output in ${dirname(target)}: the merge still has ${gb(bytesNeeded)} to write, the filesystem has ${gb(free)} free`, { file: target });
  }
}

/**
 * Writes the index, companion files and pma.json (with the SHA-256 of every other file: the
 * safetensors sums come from the OutputHasher) into the partial directory, flushes everything,
 * and renames it into place.
 */
export async function finishOutput(dir: string, target: string, plan: MergePlan, record: Record<string, unknown>, force: boolean, outputSums: Record<string, string>, hash: (path: string) => Promise<string>): Promise<void> {
  try {
    if (plan.index !== null) await writeFile(join(dir, INDEX_NAME), plan.index);
    for (const f of plan.copyFiles) await copyFile(f, join(dir, basename(f)));
    const small = [...(plan.index !== null ? [INDEX_NAME] : []), ...plan.copyFiles.map((f) => basename(f))];
    const smallSums = await Promise.all(small.map((n) => hash(join(dir, n))));
    const sha256: Record<string, string> = { ...outputSums, ...Object.fromEntries(small.map((n, i) => [n, smallSums[i] as string])) };
    const names = Object.keys(sha256).sort();
    await writeFile(join(dir, 'pma.json'), `${JSON.stringify({ ...record, sha256: Object.fromEntries(names.map((n) => [n, sha256[n]])) }, null, 2)}\n`);
    await Promise.all(names.map((n) => fsyncPath(join(dir, n))));
    await fsyncPath(join(dir, 'pma.json'));
    await fsyncPath(dir);
    if (force && (await exists(target))) {
      const old = `${dir}.old`;
      await rename(target, old);
      await rename(dir, target);
      await rm(old, { recursive: true, force: true });
    } else {
      await rename(dir, target);
    }
    await fsyncPath(dirname(target));
  } catch (e) {
    throw fsError(e, 'cannot finish output', target);
  }
}
