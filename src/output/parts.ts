import { open, readFile, rename, stat } from 'node:fs/promises';
import { join } from 'node:path';

import { PMA_RECORD } from '../checkpoints/pma-output.js';
import { PmaError, fsError } from '../errors.js';
import type { Checksum, MergePlan, PlanCopyFile } from '../plan/types.js';
import { chunksOfPart } from '../plan/types.js';
import { exists, fsyncPath } from '../util/fs.js';
import { lockToken } from '../util/lock.js';
import { readLease, type LeaseHolder } from '../util/lease.js';
import { Journal } from './journal.js';
import { createPartialDir, META_DIR, partialPath, recoverFinishing } from './partial.js';
import type { InputStamp } from './stamps.js';
import { checkResumable, newState, planFingerprint, readState, writeState } from './state.js';

/**
 * A merge split into parts shares one `<out>.partial/` among processes on many machines. Beside
 * the output files (each written by one part), `.pma-resume/` holds:
 *
 *   state.json      the merge's identity (plan fingerprint, inputs), as for a merge in one process
 *   parts.json      what `pma finalize` needs without the plan: the files, their parts, the index,
 *                   the companion files and pma.json's fields
 *   part-<i>/       part i's lock (a lease), journal, and done.json once its files are complete
 *   finalize        the lease of the process that finalizes
 *
 * Only whole files are shared out, so no two machines ever write the same file; the part that
 * completes last (or `pma finalize`) checks every part's record and renames the output into place.
 */
export interface PartsInfo {
  version: 1;
  fingerprint: string;
  count: number;
  files: { name: string; size: number; part: number }[];
  /** How many chunks each part runs. */
  chunks: number[];
  index: string | null;
  copyFiles: PlanCopyFile[];
  writtenFiles: Record<string, string>;
  /** pma.json's fields that the plan decides. */
  record: Record<string, unknown>;
  /** The checksum the parts compute of their files (absent before it was a choice: SHA-256). */
  checksum?: Checksum;
  /** Replace an existing output at the end (--force). */
  replace: boolean;
}

/** A part's record once its files are complete (`part-<i>/done.json`). */
export interface PartRecord {
  version: 1;
  fingerprint: string;
  part: number;
  count: number;
  /** Where the part came from: "--part 1/4", "SLURM_ARRAY_TASK_ID=1, ...". */
  source: string;
  host: string;
  pid: number;
  startedAt: string;
  finishedAt: string;
  seconds: number;
  device: string;
  threads: number;
  bytesRead: number;
  bytesWritten: number;
  /** Chunks found done by this run (a rerun after a failure). */
  resumedChunks: number;
  /**
   * Each file the part wrote: its size, modification time and checksum (PartsInfo.checksum),
   * checked by finalize. `sha256` in the records of pma before the checksum was a choice.
   */
  files: Record<string, { size: number; mtimeMs: number; sum?: string; sha256?: string }>;
  /** NaN/Inf found in its inputs (merged anyway: --on-nonfinite warn). */
  nonfinite: unknown[];
  commandLine: string[] | null;
}

const INFO_VERSION = 1;

export const metaDir = (dir: string) => join(dir, META_DIR);
export const partDir = (dir: string, i: number) => join(dir, META_DIR, `part-${i}`);
export const partsInfoPath = (dir: string) => join(dir, META_DIR, 'parts.json');
export const finalizeLeasePath = (dir: string) => join(dir, META_DIR, 'finalize');
const recordPath = (dir: string, i: number) => join(partDir(dir, i), 'done.json');

/** What parts.json records of a plan, for finalize. */
export function partsInfo(plan: MergePlan, record: Record<string, unknown>, replace: boolean): PartsInfo {
  const parts = plan.parts;
  if (parts === null) throw new PmaError('E_INTERNAL', 'partsInfo of a plan without parts');
  return {
    version: INFO_VERSION,
    fingerprint: planFingerprint(plan),
    count: parts.count,
    files: plan.outputs.map((f, i) => ({ name: f.name, size: f.size, part: parts.files[i] as number })),
    chunks: Array.from({ length: parts.count }, (_, p) => chunksOfPart(plan, p).length),
    index: plan.index,
    copyFiles: plan.copyFiles,
    writtenFiles: plan.writtenFiles,
    record,
    checksum: plan.checksum,
    replace,
  };
}

async function readJson<T>(path: string): Promise<T | null> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as T;
  } catch {
    return null;
  }
}

export const readPartsInfo = (dir: string) => readJson<PartsInfo>(partsInfoPath(dir));
export const readPartRecord = (dir: string, i: number) => readJson<PartRecord>(recordPath(dir, i));

/** Writes `text` to `path` whole or not at all (a temporary file renamed over it), and flushes it. */
async function writeDurably(path: string, text: string): Promise<void> {
  const tmp = `${path}.tmp-${lockToken()}`;
  const fh = await open(tmp, 'w');
  try {
    await fh.writeFile(text);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
}

/** Records part i as complete: its files, their sums; flushed before it counts. */
export async function writePartRecord(dir: string, r: PartRecord): Promise<void> {
  try {
    await writeDurably(recordPath(dir, r.part), `${JSON.stringify(r, null, 2)}\n`);
    await fsyncPath(partDir(dir, r.part));
  } catch (e) {
    throw fsError(e, 'cannot record the part in', partDir(dir, r.part));
  }
}

/** The plan fingerprint of the merge in parts whose output is in place at `target` (its pma.json's `parts`), or null. */
export async function finalizedFingerprint(target: string): Promise<string | null> {
  try {
    const r = JSON.parse(await readFile(join(target, PMA_RECORD), 'utf8')) as { parts?: { fingerprint?: string } };
    return r.parts?.fingerprint ?? null;
  } catch {
    return null;
  }
}

/**
 * The shared partial of a merge in parts, created if none is there (by whichever part comes
 * first: built under a temporary name and renamed, so parts starting together agree on one), or
 * joined: refused when it belongs to another merge (other arguments, another number of parts,
 * changed inputs) or to a merge in one process. Returns its directory, or null when this merge's
 * output is in place already.
 */
export async function joinPartial(
  target: string,
  plan: MergePlan,
  stamps: InputStamp[],
  info: PartsInfo,
): Promise<string | null> {
  const dir = partialPath(target);
  await recoverFinishing(dir); // waits for a part or `pma finalize` renaming it into place
  if (!(await exists(dir))) {
    // Finalized a moment ago (this part's record was there already: a scheduler's rerun).
    if ((await finalizedFingerprint(target)) === info.fingerprint) return null;
    await createShared(dir, plan, stamps, info);
  }
  if (!(await exists(metaDir(dir)))) {
    throw new PmaError(
      'E_OUTPUT',
      `${dir} is in the way of the merge's partial output and was not made by pma (it has no ${META_DIR}); remove it or choose another --out`,
      { file: dir },
    );
  }
  if ((await readPartsInfo(dir)) === null && (await readState(join(metaDir(dir), 'state.json'))) !== null) {
    throw new PmaError(
      'E_OUTPUT',
      `${dir} holds a merge run in one process, not in parts; finish it with --resume and without --part, or remove it`,
      { file: dir },
    );
  }
  await checkResumable(dir, join(metaDir(dir), 'state.json'), plan, stamps, `remove ${dir} to start over`);
  return dir;
}

/** Creates the shared partial with its state and parts.json; joined as any other when another part was first. */
async function createShared(dir: string, plan: MergePlan, stamps: InputStamp[], info: PartsInfo): Promise<void> {
  await createPartialDir(dir, lockToken(), async (tmp) => {
    await writeState(join(tmp, META_DIR, 'state.json'), newState(plan, stamps));
    await writeDurably(join(tmp, META_DIR, 'parts.json'), `${JSON.stringify(info, null, 2)}\n`);
  });
}

/** Where one part stands, as `pma status` and `pma finalize` see it. */
export interface PartState {
  index: number;
  /** done: its record is there and checks out; running: its lock is held; stopped: work left, no holder; missing: never started. */
  state: 'done' | 'running' | 'stopped' | 'missing' | 'invalid';
  files: string[];
  bytes: number;
  chunks: number;
  /** Chunks journaled as done (a running or stopped part). */
  chunksDone: number;
  /** The lock's holder: who runs it (or ran it last, when stopped). */
  holder: LeaseHolder | null;
  record: PartRecord | null;
  /** Why a part is invalid: its record does not match the merge, or a file changed since. */
  problem: string | null;
}

/** Each part's state in the partial `dir`; `live(holder)` says whether a lock's holder still runs. */
export async function partStates(
  dir: string,
  info: PartsInfo,
  live: (lockPath: string, h: LeaseHolder) => Promise<boolean>,
): Promise<PartState[]> {
  const out: PartState[] = [];
  for (let i = 0; i < info.count; i++) {
    const mine = info.files.filter((f) => f.part === i);
    const base = {
      index: i,
      files: mine.map((f) => f.name),
      bytes: mine.reduce((s, f) => s + f.size, 0),
      chunks: info.chunks[i] ?? 0,
    };
    const record = await readPartRecord(dir, i);
    if (record) {
      const problem = await recordProblem(dir, info, i, record);
      out.push({
        ...base,
        state: problem ? 'invalid' : 'done',
        chunksDone: base.chunks,
        holder: null,
        record,
        problem,
      });
      continue;
    }
    const lockPath = join(partDir(dir, i), 'lock');
    const holder = await readLease(lockPath);
    const chunksDone = (await Journal.read(join(partDir(dir, i), 'journal'))).size;
    const running = holder !== null && (await live(lockPath, holder));
    const started = holder !== null || chunksDone > 0 || (await exists(partDir(dir, i)));
    out.push({
      ...base,
      state: running ? 'running' : started ? 'stopped' : 'missing',
      chunksDone,
      holder,
      record: null,
      problem: null,
    });
  }
  return out;
}

/** Why a part's record cannot be trusted: another merge's, other files, or a file changed since; else null. */
export async function recordProblem(dir: string, info: PartsInfo, i: number, r: PartRecord): Promise<string | null> {
  if (r.fingerprint !== info.fingerprint || r.count !== info.count || r.part !== i)
    return 'its record is of another merge';
  for (const f of info.files.filter((x) => x.part === i)) {
    const rec = r.files[f.name];
    if (!rec) return `its record lacks ${f.name}`;
    const s = await stat(join(dir, f.name)).catch(() => null);
    if (!s) return `${f.name} is missing`;
    if (s.size !== f.size || rec.size !== f.size) return `${f.name} has ${s.size} bytes, expected ${f.size}`;
    if (s.mtimeMs !== rec.mtimeMs)
      return `${f.name} was modified after the part finished (at ${new Date(s.mtimeMs).toISOString()})`;
  }
  return null;
}

/** "part 2 (running: pid 7 on host n3, alive at ...)": one part's state in words. */
export function describePartState(p: PartState): string {
  const who = (h: LeaseHolder) => `pid ${h.pid} on host ${h.host}`;
  switch (p.state) {
    case 'done':
      return `part ${p.index}: done${p.record ? ` (${p.record.host}, ${p.record.finishedAt})` : ''}`;
    case 'running':
      return `part ${p.index}: running, ${p.chunksDone} of ${p.chunks} chunks done (${p.holder ? `${who(p.holder)}, alive at ${p.holder.at}` : ''})`;
    case 'stopped':
      return `part ${p.index}: stopped with ${p.chunksDone} of ${p.chunks} chunks done${p.holder ? ` (last run by ${who(p.holder)})` : ''}: rerun it`;
    case 'missing':
      return `part ${p.index}: not started`;
    case 'invalid':
      return `part ${p.index}: ${p.problem ?? 'invalid'}: rerun it`;
  }
}
