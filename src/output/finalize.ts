import { rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

import { PmaError } from '../errors.js';
import { exists, fsyncPath } from '../util/fs.js';
import { goneHere, Lease } from '../util/lease.js';
import { finishOutput } from './finish.js';
import type { HashFile } from './hash-threads.js';
import { finishingPath, META_DIR, partialPath, recoverFinishing } from './partial.js';
import {
  describePartState,
  finalizedFingerprint,
  finalizeLeasePath,
  partStates,
  readPartsInfo,
  type PartRecord,
  type PartState,
  type PartsInfo,
} from './parts.js';
import { changedInput } from './stamps.js';
import { readState } from './state.js';
import { checkOutputPath } from './target.js';

/** What pma.json records of a merge in parts (its `parts` field). */
export interface PartsProvenance {
  count: number;
  fingerprint: string;
  parts: (Omit<PartRecord, 'files' | 'nonfinite' | 'fingerprint' | 'version' | 'count' | 'commandLine'> & {
    files: string[];
  })[];
}

export interface FinalizeResult {
  out: string;
  /** 'finalized': renamed into place now; 'already': an earlier finalize did it. */
  status: 'finalized' | 'already';
  parts: number;
  files: number;
  bytes: number;
  elapsedMs: number;
}

/** The state of every part of the merge in parts at `dir` (`pma status`). */
export async function partsOf(dir: string): Promise<{ info: PartsInfo; parts: PartState[] }> {
  const info = await readPartsInfo(dir);
  if (info === null) {
    throw new PmaError('E_INPUT', `${dir} is not the partial output of a merge in parts (no ${META_DIR}/parts.json)`, {
      file: dir,
    });
  }
  return { info, parts: await partStates(dir, info, (_, h) => Promise.resolve(!goneHere(h))) };
}

/**
 * Finishes a merge in parts once every part is complete: checks each part's record against the
 * merge (same plan, its files' sizes and modification times unchanged since) and the inputs, writes
 * the index, the companion files and pma.json (every part's host, time and bytes, and the checksum
 * each part computed of its files), flushes and renames `<out>.partial` to `<out>`.
 *
 * Throws E_INCOMPLETE, naming the parts that are missing, running or failed, and leaves everything
 * as it is. `auto`: called by a part that just completed, which gives way (returns null) when
 * another process is finalizing.
 */
export async function finalizeParts(
  target: string,
  hash: HashFile,
  o: { auto: boolean },
): Promise<FinalizeResult | null> {
  const started = performance.now();
  const dir = partialPath(target);
  await recoverFinishing(dir);
  if (!(await exists(dir))) {
    if ((await finalizedFingerprint(target)) !== null)
      return { ...empty(target), elapsedMs: performance.now() - started };
    throw new PmaError('E_INCOMPLETE', `no merge in parts to finalize: ${dir} does not exist`, { file: dir });
  }
  const info = await readPartsInfo(dir);
  if (info === null) {
    // Finalized by another part this instant (its resume data is moved aside first).
    if (o.auto) return null;
    throw new PmaError('E_INPUT', `${dir} is not the partial output of a merge in parts (no ${META_DIR}/parts.json)`, {
      file: dir,
    });
  }
  const check = async () => {
    const parts = await partStates(dir, info, (_, h) => Promise.resolve(!goneHere(h)));
    const notDone = parts.filter((p) => p.state !== 'done');
    if (notDone.length > 0) {
      throw new PmaError(
        'E_INCOMPLETE',
        `${dir}: ${notDone.length} of ${info.count} part(s) are not complete, so nothing was written to ${target}: ${notDone.map(describePartState).join('; ')}`,
        { file: dir },
      );
    }
    return parts;
  };
  await check(); // before the lease: a part that is not last says so, whoever finalizes
  const leasePath = finalizeLeasePath(dir);
  const lease = o.auto
    ? await Lease.tryCreate(leasePath)
    : await Lease.acquire(leasePath, `the finalizing of ${dir}`, 'pma finalize');
  if (lease === null) return null;
  let aside = false;
  try {
    const parts = await check();
    const state = await readState(join(dir, META_DIR, 'state.json'));
    const changed = state ? await changedInput(state.inputs) : null;
    if (changed) {
      throw new PmaError(
        'E_INPUT',
        `input ${changed.path} ${changed.change} since the merge began: its parts may mix old and new bytes; remove ${dir} and merge again`,
        { file: changed.path },
      );
    }
    await checkOutputPath(target, { checkpoints: [] }, info.replace);
    const records = parts.map((p) => p.record as PartRecord);
    const checksum = info.checksum ?? 'sha256';
    const sums = Object.fromEntries(
      records.flatMap((r) => Object.entries(r.files).map(([n, f]) => [n, (f.sum ?? f.sha256) as string])),
    );
    const record = {
      ...info.record,
      createdAt: new Date().toISOString(),
      device: [...new Set(records.map((r) => r.device))].join(', '),
      commandLine: records[0]?.commandLine ?? null,
      nonfinite: records.flatMap((r) => r.nonfinite),
      leftOut: [],
      parts: provenanceOf(info, records),
    };
    // The resume data goes aside first (one rename), so that the directory renamed into place
    // holds only the output; a crash in between is undone by recoverFinishing().
    await rename(join(dir, META_DIR), finishingPath(dir));
    aside = true;
    lease.relocate(join(finishingPath(dir), basename(leasePath))); // it beats where it is now
    await fsyncPath(dirname(dir));
    await finishOutput(dir, target, { ...info, checksum }, record, info.replace, sums, (p) => hash(p, checksum));
    aside = false;
    await rm(finishingPath(dir), { recursive: true, force: true });
    return {
      out: target,
      status: 'finalized',
      parts: info.count,
      files: info.files.length,
      bytes: info.files.reduce((s, f) => s + f.size, 0),
      elapsedMs: performance.now() - started,
    };
  } finally {
    if (aside) {
      await recoverFinishing(dir).catch(() => {}); // the lease comes back with it
      lease.relocate(leasePath);
    }
    await lease.release();
  }
}

function empty(target: string): Omit<FinalizeResult, 'elapsedMs'> {
  return { out: target, status: 'already', parts: 0, files: 0, bytes: 0 };
}

function provenanceOf(info: PartsInfo, records: PartRecord[]): PartsProvenance {
  return {
    count: info.count,
    fingerprint: info.fingerprint,
    parts: records.map((r) => ({
      part: r.part,
      source: r.source,
      host: r.host,
      pid: r.pid,
      startedAt: r.startedAt,
      finishedAt: r.finishedAt,
      seconds: r.seconds,
      device: r.device,
      threads: r.threads,
      bytesRead: r.bytesRead,
      bytesWritten: r.bytesWritten,
      resumedChunks: r.resumedChunks,
      files: Object.keys(r.files),
    })),
  };
}
