import { createHash } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { hostname } from 'node:os';
import { basename, dirname, join } from 'node:path';

import { PmaError, fsError } from '../errors.js';
import type { ChunkStats } from '../native.js';
import { fsyncPath } from './output-dir.js';
import type { MergePlan } from '../plan/types.js';

type NonFiniteCounts = ChunkStats['nonfinite'];

/**
 * The partial output of a merge: `<out>.partial/`, the output files being written, plus a
 * `.pma-resume/` directory with the lock, the merge's identity (state.json) and a journal of the
 * chunks whose bytes are on disk. A merge killed at any moment leaves it behind; `--resume` with
 * the same arguments and unchanged inputs runs only the chunks the journal lacks.
 */
export const PARTIAL_SUFFIX = '.partial';
const META_DIR = '.pma-resume';
const STATE_VERSION = 1;
// How often finished chunks are made durable: what a crash can cost, against one fdatasync each time.
const FLUSH_EVERY_MS = 250;

export interface InputStamp {
  path: string;
  size: number;
  mtimeMs: number;
}

interface State {
  version: number;
  /** SHA-256 of the plan: same arguments and same input headers give the same plan. */
  fingerprint: string;
  chunks: number;
  inputs: InputStamp[];
  startedAt: string;
}

interface LockInfo {
  pid: number;
  host: string;
  token: string;
  since: string;
}

export const partialPath = (target: string) => join(dirname(target), basename(target) + PARTIAL_SUFFIX);
const metaPath = (dir: string, name: string) => join(dir, META_DIR, name);
// Resume data moved out of a partial that is being renamed into place.
const finishingPath = (dir: string) => `${dir}.finishing`;
// A partial being created: `<out>.partial.creating-<pid>-<random>`, renamed once complete.
const CREATING = '.creating-';

/** Removes partials whose creation was cut short (their creator, on this host, is gone). */
async function removeAbandoned(dir: string): Promise<void> {
  const prefix = basename(dir) + CREATING;
  const names = await readdir(dirname(dir)).catch(() => [] as string[]);
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const pid = Number(name.slice(prefix.length).split('-')[0]);
    if (Number.isSafeInteger(pid) && pid > 0 && !isAlive(pid)) await rm(join(dirname(dir), name), { recursive: true, force: true });
  }
}

export function planFingerprint(plan: MergePlan): string {
  // Hashing the UTF-8 bytes is twice as fast as hashing the string (hundreds of MB for a plan of
  // a million tensors).
  return createHash('sha256').update(Buffer.from(JSON.stringify(plan))).digest('hex');
}

/** Every input file of the plan with its size and modification time. */
export async function stampInputs(plan: MergePlan): Promise<InputStamp[]> {
  const paths = [...new Set(plan.chunks.flatMap((c) => c.inputs))].sort();
  return Promise.all(paths.map(async (path) => {
    const s = await stat(path).catch((e: unknown) => { throw fsError(e, 'cannot read input', path); });
    return { path, size: s.size, mtimeMs: s.mtimeMs };
  }));
}

/** How an input differs from its stamp ("changed size (a -> b bytes)", ...), or null if it does not. */
function stampChange(was: InputStamp, now: InputStamp | undefined, gone: string): string | null {
  if (!now) return gone;
  if (now.size !== was.size) return `changed size (${was.size} -> ${now.size} bytes)`;
  if (now.mtimeMs !== was.mtimeMs) return `was modified (at ${new Date(now.mtimeMs).toISOString()})`;
  return null;
}

/** The first input whose size or modification time differs from its stamp, and how; else null. */
export async function changedInput(stamps: InputStamp[]): Promise<{ path: string; change: string } | null> {
  for (const s of stamps) {
    const now = await stat(s.path).then((st) => ({ path: s.path, size: st.size, mtimeMs: st.mtimeMs }), () => undefined);
    const change = stampChange(s, now, 'is gone');
    if (change) return { path: s.path, change };
  }
  return null;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function exists(p: string): Promise<boolean> {
  return stat(p).then(() => true, () => false);
}

/**
 * An open partial output: holds the lock, and records finished chunks durably. The journal is
 * written in batches: the output files are fdatasync'ed first, then the ids of the chunks that had
 * finished before are appended and the journal fsync'ed, so an id is never on disk before its bytes.
 */
export class PartialOutput {
  private pending: string[] = [];
  private flushing: Promise<void> | null = null;
  private lastFlush = performance.now();
  private closed = false;

  private constructor(
    readonly dir: string,
    /** Chunks on disk, with the NaN/Inf counts each found in its inputs. */
    readonly done: ReadonlyMap<number, NonFiniteCounts>,
    private readonly journal: FileHandle,
    private readonly outputs: FileHandle[],
    private readonly token: string,
  ) {}

  /**
   * Opens `<target>.partial` for this plan: creates it, or (with `resume`) takes over one left by an
   * earlier run of the same merge. Refuses a partial held by a live process, one made by a
   * different merge, one whose inputs changed, and, without `resume` or `force`, any partial.
   */
  static async open(target: string, plan: MergePlan, stamps: InputStamp[], o: { resume: boolean; force: boolean }): Promise<PartialOutput> {
    const dir = partialPath(target);
    const fingerprint = planFingerprint(plan);
    const token = `${process.pid}-${Math.random().toString(36).slice(2)}`;
    const finishing = finishingPath(dir);
    if (await exists(finishing)) {
      // A merge killed while finishing: its resume data goes back into the partial, or, when the
      // partial was already renamed into place, is dropped.
      if (await exists(dir)) await rename(finishing, join(dir, META_DIR));
      else await rm(finishing, { recursive: true, force: true });
    }
    if (await exists(dir)) {
      await takeLock(dir, token, true);
      if (o.resume) {
        try {
          return await PartialOutput.resume(dir, plan, stamps, fingerprint, token);
        } catch (e) {
          await releaseLock(dir, token);
          throw e;
        }
      }
      if (!o.force) {
        const done = await readJournal(dir).catch(() => new Map<number, NonFiniteCounts>());
        await releaseLock(dir, token);
        throw new PmaError('E_OUTPUT', `a partial merge is in ${dir} (${done.size} of its chunks done); pass --resume (resume: true) to finish it with the same arguments, or --force to start over`, { file: dir });
      }
      await rm(dir, { recursive: true, force: true });
    }
    return PartialOutput.create(dir, plan, stamps, fingerprint, token);
  }

  /**
   * Builds the partial under a temporary name and renames it into place once its lock, files and
   * state are on disk: a kill during creation leaves no half-made `<out>.partial`.
   */
  private static async create(dir: string, plan: MergePlan, stamps: InputStamp[], fingerprint: string, token: string): Promise<PartialOutput> {
    const tmp = `${dir}${CREATING}${process.pid}-${token.split('-')[1]}`;
    try {
      await mkdir(dirname(dir), { recursive: true });
      await removeAbandoned(dir);
      await mkdir(tmp);
      await mkdir(join(tmp, META_DIR));
      await takeLock(tmp, token, false);
      for (const f of plan.outputs) {
        const body = Buffer.from(f.header, 'utf8');
        const head = Buffer.alloc(8);
        head.writeBigUInt64LE(BigInt(body.length), 0);
        const fh = await open(join(tmp, f.name), 'wx');
        try {
          await fh.write(Buffer.concat([head, body]), 0, 8 + body.length, 0);
          await fh.truncate(f.size);
          await fh.sync();
        } finally {
          await fh.close();
        }
      }
      const state: State = { version: STATE_VERSION, fingerprint, chunks: plan.chunks.length, inputs: stamps, startedAt: new Date().toISOString() };
      const sf = await open(metaPath(tmp, 'state.json'), 'wx');
      try {
        await sf.writeFile(`${JSON.stringify(state, null, 2)}\n`);
        await sf.sync();
      } finally {
        await sf.close();
      }
      await fsyncPath(join(tmp, META_DIR));
      await fsyncPath(tmp);
    } catch (e) {
      await rm(tmp, { recursive: true, force: true });
      throw fsError(e, 'cannot create output in', dirname(dir));
    }
    try {
      await rename(tmp, dir);
    } catch (e) {
      await rm(tmp, { recursive: true, force: true });
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOTEMPTY' || code === 'EEXIST') {
        throw new PmaError('E_OUTPUT', `${dir} was created by another pma merge at the same moment; wait for it to finish, or stop it`, { file: dir });
      }
      throw fsError(e, 'cannot create output in', dirname(dir));
    }
    await fsyncPath(dirname(dir));
    return PartialOutput.attach(dir, plan, new Map(), token);
  }

  private static async resume(dir: string, plan: MergePlan, stamps: InputStamp[], fingerprint: string, token: string): Promise<PartialOutput> {
    let state: State;
    try {
      state = JSON.parse(await readFile(metaPath(dir, 'state.json'), 'utf8')) as State;
    } catch {
      throw new PmaError('E_OUTPUT', `${dir} has no readable resume state (it was not made by this version of pma, or its creation was cut short); remove it or pass --force to start over`, { file: dir });
    }
    if (state.version !== STATE_VERSION || state.fingerprint !== fingerprint || state.chunks !== plan.chunks.length) {
      throw new PmaError('E_OUTPUT', `the partial merge in ${dir} was started with different arguments or different input headers; resume it with the original arguments, or pass --force to start over`, { file: dir });
    }
    const now = new Map(stamps.map((s) => [s.path, s]));
    for (const s of state.inputs) {
      const what = stampChange(s, now.get(s.path), 'is no longer an input');
      if (what) throw new PmaError('E_INPUT', `cannot resume ${dir}: input ${s.path} ${what} since the merge began; pass --force to start over`, { file: s.path });
    }
    for (const f of plan.outputs) {
      const s = await stat(join(dir, f.name)).catch(() => null);
      if (!s || s.size !== f.size) {
        throw new PmaError('E_OUTPUT', `cannot resume ${dir}: ${f.name} is missing or has the wrong size; pass --force to start over`, { file: join(dir, f.name) });
      }
    }
    const done = await readJournal(dir);
    return PartialOutput.attach(dir, plan, done, token);
  }

  private static async attach(dir: string, plan: MergePlan, done: Map<number, NonFiniteCounts>, token: string): Promise<PartialOutput> {
    const journal = await open(metaPath(dir, 'journal'), 'a');
    const outputs = await Promise.all(plan.outputs.map((f) => open(join(dir, f.name), 'r')));
    return new PartialOutput(dir, done, journal, outputs, token);
  }

  /** Records chunk i as written; made durable by the next flush (a quarter of a second later at most). */
  chunkDone(i: number, nonfinite: NonFiniteCounts): void {
    this.pending.push(nonfinite.length > 0 ? `${i} ${JSON.stringify(nonfinite)}` : String(i));
    if (!this.flushing && performance.now() - this.lastFlush > FLUSH_EVERY_MS) void this.flush().catch(() => {});
  }

  /** Makes every chunk reported so far durable in the journal. */
  async flush(): Promise<void> {
    while (this.flushing) await this.flushing.catch(() => {});
    if (this.pending.length === 0 || this.closed) return;
    const ids = this.pending.splice(0);
    this.flushing = (async () => {
      try {
        await Promise.all(this.outputs.map((fh) => fh.datasync()));
        await this.journal.appendFile(ids.map((l) => `${l}\n`).join(''));
        await this.journal.datasync();
      } catch (e) {
        this.pending.unshift(...ids);
        throw fsError(e, 'cannot record progress in', this.dir);
      } finally {
        this.lastFlush = performance.now();
      }
    })();
    try {
      await this.flushing;
    } finally {
      this.flushing = null;
    }
  }

  /** Flushes the journal and releases the lock, leaving the partial for --resume. */
  async suspend(): Promise<void> {
    try {
      await this.flush();
    } finally {
      await this.close();
      await releaseLock(this.dir, this.token);
    }
  }

  /** Removes the resume data (the lock last): the directory is then a complete output. */
  /**
   * Moves the resume data out to `<out>.partial.finishing` (one rename), so that the directory
   * holds only the output when it is renamed into place; call finished() after that rename. A
   * crash in between leaves the resume data beside the partial, and open() puts it back.
   */
  async complete(): Promise<void> {
    await this.flush();
    await this.close();
    await rename(join(this.dir, META_DIR), finishingPath(this.dir));
    await fsyncPath(dirname(this.dir));
  }

  /** After the rename into place: the resume data is no longer needed. */
  async finished(): Promise<void> {
    await rm(finishingPath(this.dir), { recursive: true, force: true });
  }

  async discard(): Promise<void> {
    await this.close();
    await rm(this.dir, { recursive: true, force: true });
  }

  private async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([this.journal, ...this.outputs].map((fh) => fh.close().catch(() => {})));
  }
}

async function readJournal(dir: string): Promise<Map<number, NonFiniteCounts>> {
  const text = await readFile(metaPath(dir, 'journal'), 'utf8').catch(() => '');
  const done = new Map<number, NonFiniteCounts>();
  // A line cut short by a crash has no newline yet: only complete lines count.
  const lines = text.split('\n');
  lines.pop();
  for (const l of lines) {
    const m = /^(\d+)(?: (\[.*\]))?$/.exec(l);
    if (!m) continue;
    let counts: NonFiniteCounts = [];
    try {
      if (m[2]) counts = JSON.parse(m[2]) as NonFiniteCounts;
    } catch {
      continue;
    }
    done.set(Number(m[1]), counts);
  }
  return done;
}

/**
 * Takes `.pma-resume/lock` (O_EXCL). A lock left by a process that is gone (same host, dead pid) is
 * taken over; one held by a live process, or by another host, is refused with its holder.
 */
async function takeLock(dir: string, token: string, existing: boolean): Promise<void> {
  if (existing) await mkdir(join(dir, META_DIR), { recursive: true }).catch((e: unknown) => { throw fsError(e, 'cannot lock', dir); });
  await acquireLockFile(metaPath(dir, 'lock'), token, dir, 'pma merge');
}

/**
 * Creates the lock file `path` (pid, host, token) for `what` (named in the refusal), taking over
 * one whose process is gone from this host; refuses one held by a live process or another host.
 */
export async function acquireLockFile(path: string, token: string, what: string, holder: string): Promise<void> {
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
    let held: LockInfo | null = null;
    try {
      held = JSON.parse(await readFile(path, 'utf8')) as LockInfo;
    } catch {
      held = null; // being written this instant, or torn by a crash: look again
    }
    if (held && held.host === mine.host && !isAlive(held.pid)) {
      await rm(path, { force: true });
      continue;
    }
    if (held) {
      const where = held.host === mine.host ? `pid ${held.pid}` : `pid ${held.pid} on host ${held.host}`;
      throw new PmaError('E_OUTPUT', `${what} is being written by another ${holder} (${where}, since ${held.since}); wait for it to finish, or stop it${held.host === mine.host ? '' : ` (if it is gone, delete ${path})`}`, { file: what });
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new PmaError('E_OUTPUT', `cannot lock ${what}: ${path} is unreadable; if no ${holder} is running, delete it`, { file: what });
}

/** Whether `dir`'s lock is held by a process that is still running (or by another host). */
export async function partialHeldLive(dir: string): Promise<boolean> {
  try {
    const held = JSON.parse(await readFile(metaPath(dir, 'lock'), 'utf8')) as LockInfo;
    return held.host !== hostname() || isAlive(held.pid);
  } catch {
    return false;
  }
}

/** Removes the lock file if this token still holds it. */
export async function releaseLockFile(path: string, token: string): Promise<void> {
  try {
    const held = JSON.parse(await readFile(path, 'utf8')) as LockInfo;
    if (held.token === token) await rm(path, { force: true });
  } catch {
    /* gone already */
  }
}

async function releaseLock(dir: string, token: string): Promise<void> {
  await releaseLockFile(metaPath(dir, 'lock'), token);
}
