import { mkdir, open, realpath, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve, sep } from 'node:path';

/** Whether anything (file, directory, link target) exists at `p`. */
export async function exists(p: string): Promise<boolean> {
  return stat(p).then(
    () => true,
    () => false,
  );
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

/** fsync of every subdirectory of `dir` that `names` (paths relative to it) lie in, so that their entries last. */
export async function fsyncSubdirs(dir: string, names: string[]): Promise<void> {
  for (const sub of new Set(names.map((n) => dirname(n)).filter((d) => d !== '.'))) await fsyncPath(join(dir, sub));
}

/** The real path of p, resolving symlinks in whatever part of it exists. */
export async function realish(p: string): Promise<string> {
  const abs = resolve(p);
  try {
    return await realpath(abs);
  } catch {
    const parent = dirname(abs);
    return parent === abs ? abs : join(await realish(parent), basename(abs));
  }
}

/** Whether `child` is `parent` or lies below it (both absolute, already resolved). */
export function within(child: string, parent: string): boolean {
  return child === parent || child.startsWith(parent.endsWith(sep) ? parent : parent + sep);
}

/**
 * mkdir -p, one level at a time. Node's own recursive mkdir never returns on some pseudo
 * filesystems (a path under /proc spins forever); this one fails with the first level's error.
 */
export async function makeDirs(p: string): Promise<void> {
  const abs = resolve(p);
  const missing: string[] = [];
  for (let d = abs; !(await exists(d)); d = dirname(d)) {
    missing.push(d);
    if (dirname(d) === d) break;
  }
  for (const d of missing.reverse()) {
    await mkdir(d).catch((e: unknown) => {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    });
  }
}
