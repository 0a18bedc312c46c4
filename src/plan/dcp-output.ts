import { readdir, stat } from 'node:fs/promises';
import { basename, dirname, join, relative } from 'node:path';

import { MEGATRON_LATEST } from '../checkpoints/discover.js';
import type { LayoutTensor, LoadedCheckpoint } from '../checkpoints/load.js';
import { PMA_RECORD } from '../checkpoints/pma-output.js';
import { DTYPE_BITS, outputDtypeFor, type FloatDType } from '../dtypes.js';
import { PmaError, fsError } from '../errors.js';
import type { TensorSources } from './chunks.js';
import type { ResolvedPlanOptions } from './options.js';
import { runsAcross } from './runs.js';
import type { PlanCopyFile, PlanCrcPatch, PlanOutputFile, PlanTensor } from './types.js';

/**
 * A merge written as a PyTorch Distributed Checkpoint, for a trainer to resume from (PMA-init):
 * the newest checkpoint's files, byte for byte, with the elements of the averaged tensors
 * replaced. Its .metadata, optimizer state, byte blobs, integer tensors, common.pt and
 * metadata.json are the newest's, so the trainer loads it as one of its own; each zip member whose
 * elements are replaced gets its CRC-32 rewritten (torch's reader checks it). The window may mix
 * layouts (a job restarted on another node count): every run of every averaged tensor is written
 * where the newest checkpoint keeps it.
 */
export interface DcpOutput {
  outputs: PlanOutputFile[];
  /** The averaged tensors (where each starts: its first chunk). */
  tensors: PlanTensor[];
  /** The averaged tensors' runs, then the byte ranges copied from the newest checkpoint. */
  items: TensorSources[];
  copyFiles: PlanCopyFile[];
  writtenFiles: Record<string, string>;
  /** Items of the newest checkpoint copied unchanged: tensors not averaged, training state, byte blobs. */
  copiedItems: number;
  copiedBytes: number;
  outputBytes: number;
  notes: string[];
}

const ITER_DIR = /^iter_\d+$/;

/**
 * Whether `ck` is a checkpoint of a Megatron-LM or NeMo run: `iter_NNNNNNN/` whose run names its
 * newest checkpoint in latest_checkpointed_iteration.txt, or holds torch_dist's metadata.json.
 */
async function isMegatron(ck: LoadedCheckpoint): Promise<boolean> {
  if (!ITER_DIR.test(basename(ck.dir))) return false;
  const found = await Promise.all(
    [join(dirname(ck.dir), MEGATRON_LATEST), join(ck.dir, 'metadata.json')].map((p) => stat(p).catch(() => null)),
  );
  return found.some((s) => s?.isFile());
}

/**
 * The members whose CRC-32 is rewritten, by start, checked: no two share a byte, and no CRC-32
 * field lies inside a member's bytes (a damaged archive could claim either; writing the CRC-32
 * would then change bytes the merge wrote).
 */
function disjoint(file: string, patches: PlanCrcPatch[]): PlanCrcPatch[] {
  const unique = [...new Map(patches.map((p) => [`${p.start} ${p.end}`, p])).values()];
  const spans = [
    ...unique.map((p) => [p.start, p.end] as const),
    ...unique.flatMap((p) => p.fields.map((f) => [f, f + 4] as const)),
  ].sort((a, b) => a[0] - b[0]);
  for (let i = 1; i < spans.length; i++) {
    const [a, b] = [spans[i - 1], spans[i]] as [readonly [number, number], readonly [number, number]];
    if (b[0] < a[1])
      throw new PmaError(
        'E_INPUT',
        `${file}: its zip records overlap (bytes ${a[0]}-${a[1]} and ${b[0]}-${b[1]}): the archives are damaged`,
        { file },
      );
  }
  return unique.sort((a, b) => a.start - b.start);
}

/**
 * Lays out a DCP output over the newest checkpoint: `merged` says which of its tensors are
 * averaged. Refuses what a DCP output cannot be: from a newest checkpoint that is not DCP, or in
 * another dtype.
 */
export async function layoutDcpOutput(
  cks: LoadedCheckpoint[],
  o: ResolvedPlanOptions,
  merged: (t: LayoutTensor) => boolean,
): Promise<DcpOutput> {
  const newest = cks[cks.length - 1] as LoadedCheckpoint;
  if (newest.layout.kind !== 'dcp')
    throw new PmaError(
      'E_USAGE',
      `a DCP output is the newest checkpoint's DCP files with the averages written in, but ${newest.path} is not a DCP checkpoint: pass --format safetensors`,
      { option: 'format', file: newest.path },
    );
  const megatron = await isMegatron(newest);
  // A Megatron output is a run of one checkpoint, which `--load <out>` resumes from.
  const prefix = megatron ? `${basename(newest.dir)}/` : '';
  const outName = (file: string) => prefix + relative(newest.dir, file);

  // [start, end, index of the averaged tensor] of each run, by file.
  const taken = new Map<string, [number, number, number][]>(newest.files.map((f) => [f.path, []]));
  const crcs = new Map<string, PlanCrcPatch[]>(newest.files.map((f) => [f.path, []]));
  const tensors: PlanTensor[] = [];
  const averaged: TensorSources[] = [];
  let copiedItems = newest.others.length;
  for (const t of newest.contents.tensors) {
    if (!merged(t)) {
      copiedItems++;
      continue;
    }
    if (outputDtypeFor(t.dtype as FloatDType, o.dtype) !== t.dtype)
      throw new PmaError(
        'E_USAGE',
        `a DCP output keeps every tensor as the newest checkpoint stores it (${t.name}: ${t.dtype}), so it cannot be written in ${o.dtype}: pass --format safetensors for the average in another dtype`,
        { option: 'dtype', file: newest.path, tensor: t.name },
      );
    const width = DTYPE_BITS[t.dtype] / 8;
    const runs = runsAcross(t.name, t.shape, t.dtype, cks);
    for (const r of runs) {
      // The newest checkpoint's copy of the run is where it goes.
      const at = r.sources[r.sources.length - 1] as { file: string; offset: number };
      r.out = { file: outName(at.file), offset: at.offset };
      taken.get(at.file)?.push([at.offset, at.offset + r.count * width, tensors.length]);
    }
    for (const c of t.chunks ?? []) {
      if (c.member)
        crcs
          .get(c.file)
          ?.push({ start: c.member.offset, end: c.member.offset + c.member.size, fields: c.member.crcFields });
    }
    const first = runs.find((r) => r.element === 0)?.out ?? { file: '', offset: 0 };
    tensors.push({
      name: t.name,
      action: 'merge',
      inDtype: t.dtype,
      outDtype: t.dtype,
      shape: t.shape,
      file: first.file,
      offset: first.offset,
      bytes: t.bytes,
    });
    averaged.push({ tensor: tensors[tensors.length - 1] as PlanTensor, sources: [], runs });
  }

  // Everything else in the newest's data files is copied: zip records, training state, the rest.
  // Each range goes with the averaged tensor whose run follows it (or, at a file's end, precedes
  // it), so that the files are finished front to back as the merge goes and the hashing pass
  // keeps up with it, rather than waiting for copies cut last.
  const before = averaged.map((): TensorSources[] => []);
  const after = averaged.map((): TensorSources[] => []);
  const rest: TensorSources[] = [];
  const outputs: PlanOutputFile[] = [];
  let copiedBytes = 0;
  for (const f of newest.files) {
    const name = outName(f.path);
    const copy = (a: number, b: number): TensorSources => {
      copiedBytes += b - a;
      return {
        tensor: {
          name: `${name} [${a}, ${b})`,
          action: 'copy',
          inDtype: 'U8',
          outDtype: 'U8',
          shape: [b - a],
          file: name,
          offset: a,
          bytes: b - a,
        },
        sources: [{ file: f.path, offset: a }],
      };
    };
    let at = 0;
    let last: number | null = null;
    for (const [a, b, owner] of (taken.get(f.path) ?? []).sort((x, y) => x[0] - y[0])) {
      if (a > at) before[owner]?.push(copy(at, a));
      at = Math.max(at, b);
      last = owner;
    }
    if (at < f.size) (last === null ? rest : (after[last] as TensorSources[])).push(copy(at, f.size));
    outputs.push({
      name,
      size: f.size,
      header: null,
      tensors: new Set((taken.get(f.path) ?? []).map((r) => r[2])).size,
      crcs: disjoint(f.path, crcs.get(f.path) ?? []),
    });
  }
  const items = [...averaged.flatMap((t, i) => [...(before[i] ?? []), t, ...(after[i] ?? [])]), ...rest];

  // The checkpoint's other files (.metadata, common.pt, metadata.json, ...) are copied as they are.
  const data = new Set(newest.files.map((f) => f.path));
  let entries;
  try {
    entries = await readdir(newest.dir, { withFileTypes: true });
  } catch (e) {
    throw fsError(e, 'cannot list', newest.dir);
  }
  const copyFiles = entries
    .filter((e) => e.isFile() && e.name !== PMA_RECORD && !data.has(join(newest.dir, e.name)))
    .map((e) => ({ from: join(newest.dir, e.name), to: prefix + e.name }))
    .sort((a, b) => a.to.localeCompare(b.to));
  const notes: string[] = [];
  const dirs = entries.filter((e) => e.isDirectory()).map((e) => e.name);
  if (dirs.length > 0)
    notes.push(`subdirectories of ${newest.name} are not copied into the DCP output: ${dirs.sort().join(', ')}`);
  const writtenFiles: Record<string, string> = {};
  if (megatron) {
    // Megatron writes the iteration alone, with no newline.
    writtenFiles[MEGATRON_LATEST] = String(newest.step ?? Number(basename(newest.dir).slice(5)));
    notes.push(
      `a Megatron-LM run of one checkpoint: ${prefix} with ${MEGATRON_LATEST} naming it, which --load <out> resumes from`,
    );
  }
  return {
    outputs,
    tensors,
    items,
    copyFiles,
    writtenFiles,
    copiedItems,
    copiedBytes,
    outputBytes: newest.files.reduce((s, f) => s + f.size, 0),
    notes,
  };
}
