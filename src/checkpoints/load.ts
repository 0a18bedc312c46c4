import type { DType } from '../dtypes.js';
import { PmaError } from '../errors.js';
import { readHeader, type SafetensorsHeader } from '../safetensors/header.js';
import { readShardIndex, shardPath } from '../safetensors/shard-index.js';
import type { CheckpointRef } from './discover.js';

export interface TensorLocation {
  name: string;
  dtype: DType;
  shape: number[];
  /** The file holding it and the absolute byte range there. */
  file: string;
  offset: number;
  bytes: number;
}

export interface LoadedCheckpoint extends CheckpointRef {
  files: { path: string; size: number }[];
  /** In file order, then data order. */
  tensors: TensorLocation[];
  byName: Map<string, TensorLocation>;
  totalBytes: number;
}

function locations(h: SafetensorsHeader): TensorLocation[] {
  return h.tensors.map((t) => ({
    name: t.name,
    dtype: t.dtype,
    shape: t.shape,
    file: h.path,
    offset: h.dataStart + t.begin,
    bytes: t.end - t.begin,
  }));
}

/** Reads every header of a checkpoint (and its shard index), validated; no tensor data is read. */
export async function loadCheckpoint(ref: CheckpointRef): Promise<LoadedCheckpoint> {
  const tensors: TensorLocation[] = [];
  const files: LoadedCheckpoint['files'] = [];
  if (ref.layout.kind === 'single') {
    const h = await readHeader(ref.layout.file);
    files.push({ path: h.path, size: h.fileSize });
    tensors.push(...locations(h));
  } else {
    const index = await readShardIndex(ref.layout.index);
    const headers = await Promise.all(index.shards.map((s) => readHeader(shardPath(index, s))));
    const seen = new Map<string, string>();
    for (const [i, h] of headers.entries()) {
      const shard = index.shards[i] as string;
      files.push({ path: h.path, size: h.fileSize });
      for (const t of locations(h)) {
        const other = seen.get(t.name);
        if (other !== undefined) {
          throw new PmaError('E_SAFETENSORS', `${index.path}: tensor ${JSON.stringify(t.name)} is stored twice, in ${other} and ${shard}`, { file: index.path, tensor: t.name });
        }
        seen.set(t.name, shard);
        const listed = index.weightMap.get(t.name);
        if (listed !== shard) {
          const why = listed === undefined ? 'is not listed in the weight_map' : `is listed under ${listed}`;
          throw new PmaError('E_SAFETENSORS', `${index.path}: tensor ${JSON.stringify(t.name)} is in shard ${shard} but ${why}`, { file: index.path, tensor: t.name });
        }
        tensors.push(t);
      }
    }
    for (const [name, shard] of index.weightMap) {
      if (!seen.has(name)) {
        throw new PmaError('E_SAFETENSORS', `${index.path}: weight_map puts tensor ${JSON.stringify(name)} in ${shard}, whose header does not hold it`, { file: index.path, tensor: name });
      }
    }
  }
  const byName = new Map(tensors.map((t) => [t.name, t]));
  const totalBytes = tensors.reduce((s, t) => s + t.bytes, 0);
  return { ...ref, files, tensors, byName, totalBytes };
}

const shapeText = (s: number[]) => `[${s.join(', ')}]`;
const sameShape = (a: number[], b: number[]) => a.length === b.length && a.every((d, i) => d === b[i]);

/**
 * Checks that every checkpoint holds the same tensors with the same shapes and dtypes as the
 * newest one, naming the first tensor and the two checkpoints that disagree.
 */
export function checkConsistent(cks: LoadedCheckpoint[]): void {
  const ref = cks[cks.length - 1];
  if (!ref) return;
  for (const ck of cks) {
    if (ck === ref) continue;
    for (const t of ref.tensors) {
      const o = ck.byName.get(t.name);
      const at = { file: ck.path, tensor: t.name };
      if (!o) throw new PmaError('E_MISMATCH', `tensor ${JSON.stringify(t.name)} is in ${ref.path} but not in ${ck.path}`, at);
      if (o.dtype !== t.dtype) {
        throw new PmaError('E_MISMATCH', `tensor ${JSON.stringify(t.name)} is ${o.dtype} in ${ck.path} but ${t.dtype} in ${ref.path}`, at);
      }
      if (!sameShape(o.shape, t.shape)) {
        throw new PmaError('E_MISMATCH', `tensor ${JSON.stringify(t.name)} has shape ${shapeText(o.shape)} in ${ck.path} but ${shapeText(t.shape)} in ${ref.path}`, at);
      }
    }
    if (ck.tensors.length !== ref.tensors.length) {
      const extra = ck.tensors.find((t) => !ref.byName.has(t.name));
      if (extra) {
        throw new PmaError('E_MISMATCH', `tensor ${JSON.stringify(extra.name)} is in ${ck.path} but not in ${ref.path}`, { file: ref.path, tensor: extra.name });
      }
    }
  }
}
