import { randomBytes } from 'node:crypto';
import { copyFile, mkdir, open, realpath, rename, rm, stat, writeFile } from 'node:fs/promises';
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

/**
 * A temporary sibling of the output directory: the merge is written there and renamed into place
 * only when complete, so the output path never holds a half-written model.
 */
export async function createStaging(target: string, plan: MergePlan): Promise<string> {
  const dir = join(dirname(target), `.${basename(target)}.pma-tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    await mkdir(dirname(target), { recursive: true });
    await mkdir(dir);
    for (const f of plan.outputs) {
      const path = join(dir, f.name);
      const body = Buffer.from(f.header, 'utf8');
      const head = Buffer.alloc(8);
      head.writeBigUInt64LE(BigInt(body.length), 0);
      const fh = await open(path, 'wx');
      try {
        await fh.write(Buffer.concat([head, body]), 0, 8 + body.length, 0);
        await fh.truncate(f.size);
      } finally {
        await fh.close();
      }
    }
  } catch (e) {
    await rm(dir, { recursive: true, force: true });
    throw fsError(e, 'cannot create output in', dirname(target));
  }
  return dir;
}

async function fsyncPath(p: string): Promise<void> {
  const fh = await open(p, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Writes the index, companion files and pma.json, flushes everything, and renames into place. */
export async function finishStaging(dir: string, target: string, plan: MergePlan, record: unknown, force: boolean): Promise<void> {
  try {
    if (plan.index !== null) await writeFile(join(dir, INDEX_NAME), plan.index);
    for (const f of plan.copyFiles) await copyFile(f, join(dir, basename(f)));
    await writeFile(join(dir, 'pma.json'), `${JSON.stringify(record, null, 2)}\n`);
    await Promise.all(plan.outputs.map((f) => fsyncPath(join(dir, f.name))));
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

export async function discardStaging(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}
