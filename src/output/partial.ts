import { open, readdir, rename, rm, stat, writeFile, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

import { PmaError, fsError } from '../errors.js';
import { native } from '../native.js';
import type { MergePlan } from '../plan/types.js';
import { exists, fsyncPath, fsyncSubdirs, makeDirs } from '../util/fs.js';
import { leaseHeldLive } from '../util/lease.js';
import { acquireLock, isAlive, lockHeldLive, lockHolder, lockToken, releaseLock } from '../util/lock.js';
import { eachAtOnce } from '../util/at-once.js';
import { utf8Pieces } from '../util/utf8-pieces.js';
import { Journal, type NonFiniteCounts } from './journal.js';
import type { InputStamp } from './stamps.js';
import { checkResumable, newState, readState, writeState } from './state.js';
import { checkFreeSpace } from './target.js';

/**
 * The partial output of a merge: `<out>.partial/`, the output files being written, plus a
 * `.pma-resume/` directory with the lock, the merge's identity (state.json) and the journal of
 * the chunks whose bytes are on disk. A merge killed at any moment leaves it behind; `--resume`
 * with the same arguments and unchanged inputs runs only the chunks the journal lacks.
 */
export const PARTIAL_SUFFIX = '.partial';
export const META_DIR = '.pma-resume';

export const partialPath = (target: string) => join(dirname(target), basename(target) + PARTIAL_SUFFIX);
/** A file of the resume data in `<partial>/.pma-resume/`. */
type MetaName = 'lock' | 'state.json' | 'journal' | 'stopped-nonfinite';
const metaPath = (dir: string, name: MetaName) => join(dir, META_DIR, name);
// Resume data moved out of a partial that is being renamed into place.
export const finishingPath = (dir: string) => `${dir}.finishing`;
// A partial being created: `<out>.partial.creating-<pid>-<random>`, renamed once complete.
const CREATING = '.creating-';

/**
 * Resume data left beside the partial by a finish cut short: put back into the partial, or, when
 * the partial was already renamed into place, dropped. Resume data that a live process is finishing
 * with (the merge's lock or the finalize lease went aside with it) is its own: this waits until
 * that process has renamed the partial into place (or died), so that nothing is put back into a
 * directory on its way to becoming the output.
 */
export async function recoverFinishing(dir: string): Promise<void> {
  const finishing = finishingPath(dir);
  while (await exists(finishing)) {
    if (await finisherLive(finishing)) {
      await new Promise((r) => setTimeout(r, 50));
      continue;
    }
    try {
      if (await exists(dir)) await rename(finishing, join(dir, META_DIR));
      else await rm(finishing, { recursive: true, force: true });
    } catch (e) {
      // Another process recovered it first.
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw fsError(e, 'cannot recover', finishing);
    }
    return;
  }
}

/**
 * Whether a live process holds the resume data moved aside to `finishing`: a merge in one process
 * by its lock (refused when that lock belongs to another host: its holder cannot be seen from
 * here), a merge in parts by the finalize lease.
 */
async function finisherLive(finishing: string): Promise<boolean> {
  const lock = join(finishing, 'lock');
  const holder = await lockHolder(lock);
  if (holder === 'elsewhere') {
    throw new PmaError(
      'E_OUTPUT',
      `${finishing} is held by a merge on another host that was renaming its output into place; if that merge is gone, delete ${lock}`,
      { file: finishing },
    );
  }
  return holder === 'here' || (await leaseHeldLive(join(finishing, 'finalize')));
}

/** Whether the partial `dir` is held by a merge that is still running (or by another host). */
export function partialHeldLive(dir: string): Promise<boolean> {
  return lockHeldLive(metaPath(dir, 'lock'));
}

/**
 * The work unit of the partial merge at `target` that this merge would take up (asked to resume,
 * or left by a merge stopped for NaN/Inf), or null: the plan is then cut the same way, so that
 * --chunk-size, which never changes the bytes, never stands in the way of a resume.
 */
export async function resumedChunkSize(target: string, resume: boolean): Promise<number | null> {
  const dir = partialPath(target);
  if (!resume && !(await exists(metaPath(dir, 'stopped-nonfinite')))) return null;
  return (await readState(metaPath(dir, 'state.json')))?.chunkSize ?? null;
}

/**
 * Creates the partial `dir` whole or not at all: `fill` writes its contents into a temporary
 * directory (with its .pma-resume/), which is flushed and renamed into place. Returns false when
 * another process created `dir` at the same moment (the temporary one is removed).
 */
export async function createPartialDir(
  dir: string,
  token: string,
  fill: (tmp: string) => Promise<void>,
): Promise<boolean> {
  const tmp = `${dir}${CREATING}${token}`;
  try {
    await makeDirs(dirname(dir));
    await removeAbandoned(dir);
    await makeDirs(join(tmp, META_DIR));
    await fill(tmp);
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
    if (code === 'ENOTEMPTY' || code === 'EEXIST') return false;
    throw fsError(e, 'cannot create output in', dirname(dir));
  }
  await fsyncPath(dirname(dir));
  return true;
}

/** Removes partials whose creation was cut short (their creator, on this host, is gone). */
async function removeAbandoned(dir: string): Promise<void> {
  const prefix = basename(dir) + CREATING;
  const names = await readdir(dirname(dir)).catch(() => [] as string[]);
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const pid = Number(name.slice(prefix.length).split('-')[0]);
    if (Number.isSafeInteger(pid) && pid > 0 && !isAlive(pid))
      await rm(join(dirname(dir), name), { recursive: true, force: true });
  }
}

/** Output files made at once (createOutputFile): a sharded 200B output has about a hundred. */
export const FILES_AT_ONCE = 8;

/**
 * Creates one output file: a safetensors file's 8-byte header length and header, then the data's
 * size allocated but unwritten (a hole where the filesystem cannot allocate); a file the ops
 * write whole (DCP) is all data to come.
 */
export async function createOutputFile(path: string, f: MergePlan['outputs'][number]): Promise<void> {
  await makeDirs(dirname(path));
  const fh = await open(path, 'wx');
  try {
    if (f.header !== null) {
      const length = Buffer.alloc(8);
      length.writeBigUInt64LE(BigInt(Buffer.byteLength(f.header, 'utf8')), 0);
      await fh.write(length, 0, 8, 0);
      // A piece at a time: a million tensors' header is tens of MB.
      let at = 8;
      for (const piece of utf8Pieces(f.header)) {
        await fh.write(piece, 0, piece.length, at);
        at += piece.length;
      }
    }
    await fh.truncate(f.size);
    // The blocks allocated now, so that the merge's direct writes only overwrite them (see
    // File::preallocate: allocating writes on ext4 hold the file's lock alone; docs/performance.md,
    // "Aligned chunk cuts and reserved output files") and a full disk shows before any work. A
    // hint where the filesystem cannot.
    native().preallocate(path, f.size);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * An open partial output: holds the lock, and records finished chunks durably in its journal
 * (the output files are fdatasync'ed before each batch of journal lines).
 */
export class PartialOutput {
  private closed = false;

  private constructor(
    readonly dir: string,
    /** Where the lock and journal are: `<partial>/.pma-resume`, or a part's directory in it. */
    private readonly meta: string,
    /** Chunks on disk, with the NaN/Inf counts each found in its inputs. */
    readonly done: ReadonlyMap<number, NonFiniteCounts>,
    private readonly journal: Journal,
    private readonly outputs: FileHandle[],
    /** Releases the lock. */
    private readonly unlock: () => Promise<void>,
    private readonly plan: MergePlan,
    /** Output file name -> its index in `outputs`. */
    private readonly outputIndex: ReadonlyMap<string, number>,
    /** Output files (by index) written since the journal's last flush. */
    private readonly dirty: Set<number>,
  ) {}

  /**
   * Opens `<target>.partial` for this plan: creates it, or (with `resume`) takes over one left by an
   * earlier run of the same merge. Refuses a partial held by a live process, one made by a
   * different merge, one whose inputs changed, and, without `resume` or `force`, any partial.
   */
  static async open(
    target: string,
    plan: MergePlan,
    stamps: InputStamp[],
    o: { resume: boolean; force: boolean },
  ): Promise<PartialOutput> {
    const dir = partialPath(target);
    const token = lockToken();
    await recoverFinishing(dir); // a merge killed while finishing
    if (!(await exists(dir))) return PartialOutput.create(dir, plan, stamps, token);
    if (!(await exists(join(dir, META_DIR))) && (await readdir(dir).catch(() => [])).length > 0) {
      throw new PmaError(
        'E_OUTPUT',
        `${dir} is in the way of the merge's partial output and was not made by pma (it has no ${META_DIR}); remove it or choose another --out`,
        { file: dir },
      );
    }
    await makeDirs(join(dir, META_DIR)).catch((e: unknown) => {
      throw fsError(e, 'cannot lock', dir);
    });
    await acquireLock(metaPath(dir, 'lock'), token, dir, 'pma merge');
    // A merge stopped for NaN/Inf (--on-nonfinite error) is taken up by the next one without
    // --resume: the user follows the error's advice and changes only --on-nonfinite. When that
    // merge is another one (other arguments or inputs), its leftover is replaced.
    const stoppedForNonfinite = await exists(metaPath(dir, 'stopped-nonfinite'));
    if (o.resume || stoppedForNonfinite) {
      try {
        return await PartialOutput.resume(dir, plan, stamps, token);
      } catch (e) {
        const replace = !o.resume && e instanceof PmaError && (e.code === 'E_OUTPUT' || e.code === 'E_INPUT');
        if (!replace) {
          await releaseLock(metaPath(dir, 'lock'), token);
          throw e;
        }
      }
    }
    if (!o.force && !stoppedForNonfinite) {
      const done = await Journal.read(metaPath(dir, 'journal'));
      await releaseLock(metaPath(dir, 'lock'), token);
      throw new PmaError(
        'E_OUTPUT',
        `a partial merge is in ${dir} (${done.size} of its chunks done); pass --resume to finish it with the same arguments, or --force to start over`,
        { file: dir },
      );
    }
    await rm(dir, { recursive: true, force: true });
    return PartialOutput.create(dir, plan, stamps, token);
  }

  /**
   * Builds the partial under a temporary name and renames it into place once its lock, files and
   * state are on disk: a kill during creation leaves no half-made `<out>.partial`.
   */
  private static async create(
    dir: string,
    plan: MergePlan,
    stamps: InputStamp[],
    token: string,
  ): Promise<PartialOutput> {
    const created = await createPartialDir(dir, token, async (tmp) => {
      // Before the files are made: they reserve their blocks (createOutputFile), and a merge that
      // cannot fit is told so in these terms rather than by the first reservation refused.
      await checkFreeSpace(
        dir,
        plan.outputs.reduce((s, f) => s + f.size, 0),
      );
      await acquireLock(metaPath(tmp, 'lock'), token, tmp, 'pma merge');
      // Several at once: each waits on its own fsync, and the filesystem commits them together.
      await eachAtOnce(plan.outputs, FILES_AT_ONCE, (f) => createOutputFile(join(tmp, f.name), f));
      await fsyncSubdirs(
        tmp,
        plan.outputs.map((f) => f.name),
      );
      await writeState(metaPath(tmp, 'state.json'), newState(plan, stamps));
    });
    if (!created) {
      throw new PmaError(
        'E_OUTPUT',
        `${dir} was created by another pma merge at the same moment; wait for it to finish, or stop it`,
        { file: dir },
      );
    }
    return PartialOutput.attachWhole(dir, plan, new Map(), token);
  }

  private static async resume(
    dir: string,
    plan: MergePlan,
    stamps: InputStamp[],
    token: string,
  ): Promise<PartialOutput> {
    await checkResumable(dir, metaPath(dir, 'state.json'), plan, stamps);
    await rm(metaPath(dir, 'stopped-nonfinite'), { force: true });
    for (const f of plan.outputs) {
      const s = await stat(join(dir, f.name)).catch(() => null);
      if (!s || s.size !== f.size) {
        throw new PmaError(
          'E_OUTPUT',
          `cannot resume ${dir}: ${f.name} is missing or has the wrong size; pass --force to start over`,
          { file: join(dir, f.name) },
        );
      }
    }
    return PartialOutput.attachWhole(dir, plan, await Journal.read(metaPath(dir, 'journal')), token);
  }

  private static attachWhole(
    dir: string,
    plan: MergePlan,
    done: Map<number, NonFiniteCounts>,
    token: string,
  ): Promise<PartialOutput> {
    const meta = join(dir, META_DIR);
    const files = plan.outputs.map((f) => f.name);
    return PartialOutput.attach(dir, meta, plan, files, done, () => releaseLock(join(meta, 'lock'), token));
  }

  /**
   * Opens the output `files` of the partial `dir` (all of them, or a part's), with the journal in
   * `meta`: the lock there is held, and `unlock` releases it.
   */
  static async attach(
    dir: string,
    meta: string,
    plan: MergePlan,
    files: readonly string[],
    done: Map<number, NonFiniteCounts>,
    unlock: () => Promise<void>,
  ): Promise<PartialOutput> {
    const opened = await Promise.allSettled(files.map((name) => open(join(dir, name), 'r')));
    const outputs = opened.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    try {
      const failed = opened.find((r) => r.status === 'rejected');
      if (failed) throw fsError(failed.reason, 'cannot open the output in', dir);
      // Before each batch of journal lines: fdatasync of the files its chunks wrote, one at a time,
      // so that a merge writing many files does not hold every libuv thread (the hashing pass
      // reads through them) with fdatasync at once.
      const dirty = new Set<number>();
      const journal = await Journal.open(join(meta, 'journal'), dir, async () => {
        const files = [...dirty];
        dirty.clear();
        try {
          for (const i of files) await (outputs[i] as FileHandle).datasync();
        } catch (e) {
          for (const i of files) dirty.add(i);
          throw e;
        }
      });
      const index = new Map(files.map((name, k) => [name, k]));
      return new PartialOutput(dir, meta, done, journal, outputs, unlock, plan, index, dirty);
    } catch (e) {
      await Promise.all(outputs.map((fh) => fh.close().catch(() => {})));
      throw e;
    }
  }

  /** Records chunk i as written; made durable by the next flush (a quarter of a second later at most). */
  chunkDone(i: number, nonfinite: NonFiniteCounts): void {
    for (const name of this.plan.chunks[i]?.outputs ?? []) {
      const k = this.outputIndex.get(name);
      if (k !== undefined) this.dirty.add(k);
    }
    this.journal.record(i, nonfinite);
  }

  /**
   * Flushes the journal and releases the lock, leaving the partial for --resume; `nonfinite`: the
   * merge stopped for NaN/Inf, and the next one takes it up without --resume.
   */
  async suspend(nonfinite = false): Promise<void> {
    try {
      await this.journal.flush();
      if (nonfinite) await writeFile(join(this.meta, 'stopped-nonfinite'), `${new Date().toISOString()}\n`);
    } finally {
      await this.close();
      await this.unlock();
    }
  }

  /** Every chunk is written: makes the journal durable and closes the files (the lock stays held). */
  async flushAndClose(): Promise<void> {
    await this.journal.flush();
    await this.close();
  }

  /** Releases the lock (after flushAndClose, when the part's record is written). */
  async release(): Promise<void> {
    await this.unlock();
  }

  /**
   * Moves the resume data out to `<out>.partial.finishing` (one rename), so that the directory
   * holds only the output when it is renamed into place; call finished() after that rename. A
   * crash in between leaves the resume data beside the partial, and open() puts it back.
   */
  async complete(): Promise<void> {
    await this.flushAndClose();
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
    await this.journal.close();
    await Promise.all(this.outputs.map((fh) => fh.close().catch(() => {})));
  }
}
