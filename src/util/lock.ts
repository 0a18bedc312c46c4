import { open, readFile, rm } from 'node:fs/promises';
import { hostname } from 'node:os';

import { PmaError, fsError } from '../errors.js';

/**
 * Lock files: one process at a time may write a partial merge or watch an output directory. The
 * file holds its owner's pid, host and a token; a lock whose process is gone from this host is
 * taken over, one held by a live process or by another host is refused, naming the holder.
 */
interface LockInfo {
  pid: number;
  host: string;
  token: string;
  since: string;
}

/** A token naming this holder: the pid and a random part, so that a released lock is never someone else's. */
export function lockToken(): string {
  return `${process.pid}-${Math.random().toString(36).slice(2)}`;
}

/** Whether the process `pid` on this host is running (EPERM: running, under another user). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function readLock(path: string): Promise<LockInfo | null> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as LockInfo;
  } catch {
    return null;
  }
}

/**
 * Creates the lock file `path` (O_EXCL) for `what` (named in the refusal), held by `holder` ("pma
 * merge"); takes over one whose process is gone from this host.
 */
export async function acquireLock(path: string, token: string, what: string, holder: string): Promise<void> {
  const mine: LockInfo = { pid: process.pid, host: hostname(), token, since: new Date().toISOString() };
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fh = await open(path, 'wx');
      try {
        await fh.writeFile(JSON.stringify(mine));
        await fh.sync();
      } finally {
        await fh.close();
      }
      return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw fsError(e, 'cannot lock', what);
    }
    // null: being written this instant, or torn by a crash: look again.
    const held = await readLock(path);
    if (held && held.host === mine.host && !isAlive(held.pid)) {
      await rm(path, { force: true });
      continue;
    }
    if (held) {
      const where = held.host === mine.host ? `pid ${held.pid}` : `pid ${held.pid} on host ${held.host}`;
      const gone = held.host === mine.host ? '' : ` (if it is gone, delete ${path})`;
      throw new PmaError(
        'E_OUTPUT',
        `${what} is being written by another ${holder} (${where}, since ${held.since}); wait for it to finish, or stop it${gone}`,
        { file: what },
      );
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new PmaError('E_OUTPUT', `cannot lock ${what}: ${path} is unreadable; if no ${holder} is running, delete it`, {
    file: what,
  });
}

/** Removes the lock file if this token still holds it. */
export async function releaseLock(path: string, token: string): Promise<void> {
  const held = await readLock(path);
  if (held?.token === token) await rm(path, { force: true });
}

/** Whether the lock at `path` is held by a process that is still running (or by another host). */
export async function lockHeldLive(path: string): Promise<boolean> {
  const held = await readLock(path);
  return held !== null && (held.host !== hostname() || isAlive(held.pid));
}

/**
 * Where the live holder of the lock at `path` runs: 'here' (another process on this host),
 * 'elsewhere' (another host: it cannot be seen from here), or null (no lock, or its process is gone;
 * this process's own pid counts as gone, as a rerun container may reuse it).
 */
export async function lockHolder(path: string): Promise<'here' | 'elsewhere' | null> {
  const held = await readLock(path);
  if (held === null) return null;
  if (held.host !== hostname()) return 'elsewhere';
  return held.pid !== process.pid && isAlive(held.pid) ? 'here' : null;
}
