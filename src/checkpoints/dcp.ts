import { open, type FileHandle } from 'node:fs/promises';

import { DTYPE_BITS, type DType } from '../dtypes.js';
import { fsError } from '../errors.js';
import { isTrainingState } from '../dcp/items.js';
import { readDcpMetadata, type DcpTensor } from '../dcp/metadata.js';
import { locateChunk } from '../dcp/payload.js';
import type { CheckpointContents, LayoutTensor, LocatedChunk } from './contents.js';

// Chunk archives read at once while planning.
const LOCATE_AT_ONCE = 32;

/** A DCP checkpoint as the planner sees it: the model's tensors, each in located chunks, and the rest. */
export interface DcpContents {
  contents: CheckpointContents;
  files: { path: string; size: number; dataStart: number }[];
  /** Items that are not averaged: training state, byte blobs, tensors of a dtype pma does not know. */
  others: { fqn: string; why: string }[];
}

/**
 * Reads a DCP checkpoint's metadata and locates every chunk of the tensors `include` takes (by
 * default the model's: all but training state) in the .distcp
 * files (each chunk's torch.save archive is read for where its elements start); no element is read.
 */
export async function loadDcp(
  dir: string,
  include: (fqn: string) => boolean = (fqn) => !isTrainingState(fqn),
): Promise<DcpContents> {
  const meta = await readDcpMetadata(dir);
  const handles = new Map<string, Promise<FileHandle>>();
  const handle = (file: string) => {
    let fh = handles.get(file);
    if (!fh) {
      fh = open(file, 'r').catch((e: unknown) => {
        throw fsError(e, 'cannot open', file);
      });
      handles.set(file, fh);
    }
    return fh;
  };
  const others: DcpContents['others'] = [];
  const model: (DcpTensor & { dtype: DType })[] = [];
  for (const item of meta.items) {
    if (item.kind === 'bytes') others.push({ fqn: item.fqn, why: 'a byte blob' });
    else if (!include(item.fqn))
      others.push({ fqn: item.fqn, why: isTrainingState(item.fqn) ? 'training state' : 'not selected' });
    else if (item.dtype === null) others.push({ fqn: item.fqn, why: `a ${item.torchDtype} tensor` });
    else model.push({ ...item, dtype: item.dtype });
  }
  // Each chunk's archive takes a few small reads: many at a time, or planning waits on each in turn.
  const jobs = model.flatMap((t) => t.chunks.map((c) => ({ t, c })));
  const located: LocatedChunk[] = new Array<LocatedChunk>(jobs.length);
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < jobs.length; i = next++) {
      const { t, c } = jobs[i] as (typeof jobs)[number];
      const p = await locateChunk(await handle(c.file), c, t.fqn, t.dtype);
      located[i] = { offsets: c.offsets, sizes: c.sizes, file: c.file, offset: p.offset, member: p.member };
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(LOCATE_AT_ONCE, jobs.length) }, worker));
  } finally {
    await Promise.all([...handles.values()].map((fh) => fh.then((h) => h.close()).catch(() => {})));
  }
  let at = 0;
  const tensors: LayoutTensor[] = model.map((t) => {
    const chunks = located.slice(at, (at += t.chunks.length));
    const elements = t.shape.reduce((a, b) => a * b, 1);
    return {
      name: t.fqn,
      dtype: t.dtype,
      shape: t.shape,
      shard: 0,
      begin: 0,
      bytes: (elements * DTYPE_BITS[t.dtype]) / 8,
      chunks,
    };
  });
  return {
    contents: {
      tensors,
      byName: new Map(tensors.map((t) => [t.name, t])),
      totalBytes: tensors.reduce((s, t) => s + t.bytes, 0),
    },
    files: [...meta.files].map(([path, size]) => ({ path, size, dataStart: 0 })),
    others,
  };
}
