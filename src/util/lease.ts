import { open, readFile, rename, rm } from 'node:fs/promises';
import { hostname } from 'node:os';

import { PmaError, fsError } from '../errors.js';
import { isAlive, lockToken } from './lock.js';

/**
 * A lock that its holder keeps alive (a lease), for files that processes on several machines share:
 * one part of a merge split across a cluster. A plain lock (src/util/lock.ts) can tell that its
 * holder is gone only on the holder's own host; a part rerun by Kubernetes lands on another pod,
 * maybe another machine, and a Slurm requeue may too. So the holder rewrites its lock every
 * `beatMs` (a counter, in place: NFS's close-to-open consistency shows the new bytes to the next
 * open on any client, where a rename might be hidden by a cached name), and a lock whose counter
 * stands still for three beats is taken over. No clock is compared across machines.
 */
export interface LeaseHolder {
  pid: number;
  host: string;
  token: string;
  since: string;
  /** Rewritten every beat by a live holder. */
  beat: number;
  /** When the holder last wrote it, by its own clock (shown to users, never compared). */
  at: string;
}

/** The beat interval: PMA_LEASE_BEAT_MS overrides it (tests; a filesystem with slow metadata). */
export function beatMs(): number {
  const env = Number(process.env.PMA_LEASE_BEAT_MS);
  return Number.isFinite(env) && env >= 10 ? env : 5000;
}

/** The holder recorded in a lease file, or null (none, or being written this instant). */
export async function readLease(path: string): Promise<LeaseHolder | null> {
  try {
    const v = JSON.parse(await readFile(path, 'utf8')) as LeaseHolder;
    return typeof v.token === 'string' && typeof v.beat === 'number' ? v : null;
  } catch {
    return null;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// Fixed width, so that a rewrite in place never leaves a longer old tail behind.
const WIDTH = 512;
const encode = (h: LeaseHolder) => Buffer.from(JSON.stringify(h).padEnd(WIDTH, ' '));

/** Whether the holder is certainly gone without waiting: its process is not on this host any more. */
export function goneHere(h: LeaseHolder): boolean {
  if (h.host !== hostname()) return false;
  // A container rerun with the same host name may reuse the pid: then it is this process's own.
  return !isAlive(h.pid) || h.pid === process.pid;
}

/**
 * Whether the holder is still alive: certain on its own host; elsewhere, whether its beat moves
 * within three beats (the caller waits that long).
 */
async function holderLive(path: string, h: LeaseHolder): Promise<boolean> {
  if (goneHere(h)) return false;
  if (h.host === hostname()) return true;
  const wait = beatMs();
  for (let i = 0; i < 3; i++) {
    await sleep(wait);
    const now = await readLease(path);
    if (now === null || now.token !== h.token || now.beat !== h.beat) return true;
  }
  return false;
}

/**
 * Whether the lease at `path` is held by a live process: at once on the holder's host; elsewhere
 * after watching its beat for three beats. False when there is no lease.
 */
export async function leaseHeldLive(path: string): Promise<boolean> {
  const held = await readLease(path);
  return held !== null && (await holderLive(path, held));
}

export class Lease {
  private timer: NodeJS.Timeout | null = null;
  private beat = 0;
  private lost: PmaError | null = null;

  private constructor(
    private path: string,
    private readonly me: LeaseHolder,
  ) {}

  /** Where the lease file is now: the finalizer moves it aside with the resume data, and back. */
  relocate(path: string): void {
    this.path = path;
  }

  /**
   * Takes the lease at `path` for `what` (named in a refusal, with `holder`: "pma merge part 3"):
   * creates it (O_EXCL), or takes over one whose holder is gone. Refuses one held by a live process.
   */
  static async acquire(path: string, what: string, holder: string): Promise<Lease> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const lease = await Lease.tryCreate(path, what);
      if (lease) return lease;
      const held = await readLease(path);
      if (held === null) {
        await sleep(50); // being written, or torn by a crash: look again
        if (attempt >= 3) await rm(path, { force: true });
        continue;
      }
      if (await holderLive(path, held)) {
        const where = held.host === hostname() ? `pid ${held.pid}` : `pid ${held.pid} on host ${held.host}`;
        throw new PmaError(
          'E_OUTPUT',
          `${what} is being written by another ${holder} (${where}, since ${held.since}, alive at ${held.at}); wait for it to finish, or stop it`,
          { file: what },
        );
      }
      await takeOver(path, held);
    }
    throw new PmaError('E_OUTPUT', `cannot lock ${what}: ${path} keeps changing hands; try again`, { file: what });
  }

  /**
   * Creates the lease if nobody holds it, else returns null at once (whoever holds it, alive or
   * not, or when its directory is gone): a part that completes last finalizes with it, leaving a
   * stuck holder to `pma finalize`.
   */
  static async tryCreate(path: string, what = path): Promise<Lease | null> {
    const now = new Date().toISOString();
    const me: LeaseHolder = { pid: process.pid, host: hostname(), token: lockToken(), since: now, beat: 0, at: now };
    try {
      const fh = await open(path, 'wx');
      try {
        await fh.write(encode(me), 0, WIDTH, 0);
        await fh.sync();
      } finally {
        await fh.close();
      }
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EEXIST' || code === 'ENOENT') return null;
      throw fsError(e, 'cannot lock', what);
    }
    const lease = new Lease(path, me);
    lease.start();
    return lease;
  }

  private start(): void {
    this.timer = setInterval(() => void this.keepAlive(), beatMs());
    this.timer.unref();
  }

  /** Rewrites the lease with the next beat; notices when someone else holds it now. */
  private async keepAlive(): Promise<void> {
    if (this.lost || this.timer === null) return;
    const held = await readLease(this.path);
    if (held !== null && held.token !== this.me.token) {
      this.lost = new PmaError(
        'E_OUTPUT',
        `the lock ${this.path} was taken over by pid ${held.pid} on host ${held.host}: this process stopped beating for too long`,
        { file: this.path },
      );
      return;
    }
    this.beat++;
    const body = encode({ ...this.me, beat: this.beat, at: new Date().toISOString() });
    try {
      const fh = await open(this.path, 'r+');
      try {
        await fh.write(body, 0, WIDTH, 0);
      } finally {
        await fh.close();
      }
    } catch {
      // A beat missed (a slow filesystem): the next one tries again.
    }
  }

  /** The error to stop with if the lease was taken over, else null. */
  get lostTo(): PmaError | null {
    return this.lost;
  }

  /** Stops beating and removes the lease if it is still this holder's. */
  async release(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    const held = await readLease(this.path);
    if (held?.token === this.me.token) await rm(this.path, { force: true });
  }
}

/**
 * Moves a dead holder's lease aside (one rename: of several processes taking over at once, one
 * moves it), checks that what was moved is that lease and not a new holder's, and removes it.
 */
async function takeOver(path: string, dead: LeaseHolder): Promise<void> {
  const aside = `${path}.stale-${lockToken()}`;
  try {
    await rename(path, aside);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return; // someone else moved it: try again
    throw fsError(e, 'cannot take over the lock', path);
  }
  const moved = await readLease(aside);
  if (moved && (moved.token !== dead.token || moved.beat !== dead.beat)) {
    // A new holder's lease, created after ours was judged dead: put it back.
    await rename(aside, path).catch(() => {});
    return;
  }
  await rm(aside, { force: true });
}
