import { readdir, readFile, stat } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join, relative } from 'node:path';

import { discover } from './checkpoints/discover.js';
import { loadCheckpoint } from './checkpoints/load.js';
import { PMA_RECORD } from './checkpoints/pma-output.js';
import { PmaError, fsError } from './errors.js';
import { withFileHashing } from './output/hash-threads.js';
import { CHECKSUMS, type Checksum } from './plan/types.js';
import { nonEmptyString } from './validate.js';

export interface VerifiedFile {
  name: string;
  /** Recorded in pma.json. */
  expected: string;
  /** Recomputed now; null when the file is missing. */
  actual: string | null;
  ok: boolean;
}

export interface VerifyResult {
  out: string;
  /** Every header and the index were valid, and every recorded file has its recorded checksum. */
  ok: boolean;
  /** The checksum pma.json records ('blake3', or 'sha256'); null when it records none. */
  checksum: Checksum | null;
  tensors: number;
  files: VerifiedFile[];
  /** Files in the output that pma.json does not list (not a failure: added later by someone). */
  unrecorded: string[];
  problems: string[];
}

/** Every file under `dir`, by its path relative to it (a Megatron output keeps its files in iter_NNNNNNN/). */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  return entries.filter((e) => e.isFile()).map((e) => relative(dir, join(e.parentPath, e.name)));
}

/**
 * Re-reads a merged checkpoint: validates every safetensors header and the shard index, or a DCP
 * checkpoint's metadata and chunk archives (as an
 * input is validated), and recomputes the checksum (BLAKE3 or SHA-256, the one recorded) of each
 * file recorded in pma.json. Throws for an
 * unreadable output or header; a checksum that differs is reported in the result (ok: false).
 *
 * @example
 * ```ts
 * import { merge, verify } from 'pma';
 * await merge({ inputs: 'runs/exp7', last: 3, out: 'merged' });
 * const r = await verify('merged');
 * console.log(r.ok ? `intact: ${r.files.length} files` : r.problems.join('; '));
 * ```
 */
export async function verify(out: string): Promise<VerifyResult> {
  const dir = nonEmptyString('out', out);
  let record: Partial<Record<Checksum, Record<string, string>>>;
  try {
    record = JSON.parse(await readFile(join(dir, PMA_RECORD), 'utf8')) as typeof record;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
      const s = await stat(dir).catch(() => null);
      if (!s) throw new PmaError('E_INPUT', `${dir} does not exist`, { file: dir });
      if (!s.isDirectory())
        throw new PmaError('E_INPUT', `${dir} is not a directory: pma verify takes a merged output directory`, {
          file: dir,
        });
      throw new PmaError('E_INPUT', `${dir} has no pma.json: it was not written by pma`, {
        file: join(dir, PMA_RECORD),
      });
    }
    throw e instanceof SyntaxError
      ? new PmaError('E_INPUT', `${join(dir, PMA_RECORD)} is not valid JSON: ${e.message}`, {
          file: join(dir, PMA_RECORD),
        })
      : fsError(e, 'cannot read', join(dir, PMA_RECORD));
  }
  const found = await discover([dir]);
  const ref = found.checkpoints[0];
  if (!ref) throw new PmaError('E_INPUT', `${dir} holds no checkpoint (safetensors or DCP)`, { file: dir });
  const ck = await loadCheckpoint(ref);
  const problems: string[] = [];
  const checksum = CHECKSUMS.find((c) => record[c] !== undefined) ?? null;
  const sums = checksum === null ? undefined : record[checksum];
  if (!sums || typeof sums !== 'object')
    problems.push(
      'pma.json records no checksums (written by pma 0.1 before they were added): only the headers were checked',
    );
  const names = Object.keys(sums ?? {}).sort();
  const present = new Set(await filesUnder(dir));
  const files: VerifiedFile[] = await withFileHashing(
    Math.max(1, Math.min(availableParallelism(), names.length)),
    (hash) =>
      Promise.all(
        names.map(async (name) => {
          const expected = String((sums as Record<string, string>)[name]);
          if (!present.has(name)) return { name, expected, actual: null, ok: false };
          const actual = await hash(join(dir, name), checksum as Checksum);
          return { name, expected, actual, ok: actual === expected };
        }),
      ),
  );
  for (const f of files) {
    if (!f.ok)
      problems.push(
        f.actual === null
          ? `${f.name} is missing`
          : `${f.name} has ${checksum === 'sha256' ? 'SHA-256' : 'BLAKE3'} ${f.actual}, pma.json records ${f.expected}`,
      );
  }
  const unrecorded = [...present].filter((f) => f !== PMA_RECORD && !names.includes(f)).sort();
  return {
    out: dir,
    checksum,
    ok: files.every((f) => f.ok) && sums !== undefined,
    tensors: ck.contents.tensors.length,
    files,
    unrecorded,
    problems,
  };
}
