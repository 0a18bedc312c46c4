import { open, type FileHandle } from 'node:fs/promises';

import { DTYPE_BITS } from '../dtypes.js';
import { fsError } from '../errors.js';
import { isTrainingState } from '../dcp/items.js';
import { readDcpMetadata } from '../dcp/metadata.js';
import { locateChunk } from '../dcp/payload.js';
import type { CheckpointContents, LayoutTensor } from './contents.js';

/** A DCP checkpoint as the planner sees it: the model's tensors, each in located chunks, and the rest. */
export interface DcpContents {
  contents: CheckpointContents;
  files: { path: string; size: number; dataStart: number }[];
  /** Items that are not averaged: training state, byte blobs, tensors of a dtype pma does not know. */
  others: { fqn: string; why: string }[];
}

/**
 * Reads a DCP checkpoint's metadata and locates every chunk of its model tensors in the .distcp
 * files (each chunk's torch.save archive is read for where its elements start); no element is read.
 */
export async function loadDcp(dir: string): Promise<DcpContents> {
  const meta = await readDcpMetadata(dir);
  const handles = new Map<string, FileHandle>();
  const others: DcpContents['others'] = [];
  const tensors: LayoutTensor[] = [];
  try {
    for (const item of meta.items) {
      if (item.kind === 'bytes') others.push({ fqn: item.fqn, why: 'a byte blob' });
      else if (isTrainingState(item.fqn)) others.push({ fqn: item.fqn, why: 'training state' });
      else if (item.dtype === null) others.push({ fqn: item.fqn, why: `a ${item.torchDtype} tensor` });
      else {
        const dtype = item.dtype;
        const chunks = [];
        for (const c of item.chunks) {
          let fh = handles.get(c.file);
          if (!fh) {
            fh = await open(c.file, 'r').catch((e: unknown) => {
              throw fsError(e, 'cannot open', c.file);
            });
            handles.set(c.file, fh);
          }
          const p = await locateChunk(fh, c, item.fqn, dtype);
          chunks.push({ offsets: c.offsets, sizes: c.sizes, file: c.file, offset: p.offset });
        }
        const elements = item.shape.reduce((a, b) => a * b, 1);
        tensors.push({
          name: item.fqn,
          dtype,
          shape: item.shape,
          shard: 0,
          begin: 0,
          bytes: (elements * DTYPE_BITS[dtype]) / 8,
          chunks,
        });
      }
    }
  } finally {
    await Promise.all([...handles.values()].map((fh) => fh.close().catch(() => {})));
  }
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
