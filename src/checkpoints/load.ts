import { PmaError } from '../errors.js';
import { readHeader, type HeaderCache, type SafetensorsHeader } from '../safetensors/header.js';
import { readShardIndex, shardPath, type ShardIndex, type ShardIndexCache } from '../safetensors/shard-index.js';
import type { CheckpointContents, LayoutTensor } from './contents.js';
import { loadDcp } from './dcp.js';
import type { CheckpointRef } from './discover.js';

export interface LoadedCheckpoint extends CheckpointRef {
  files: { path: string; size: number; dataStart: number }[];
  contents: CheckpointContents;
  /** DCP: the items that are not averaged (training state, byte blobs), with why. */
  others: { fqn: string; why: string }[];
}

export type { CheckpointContents, LayoutTensor, LocatedChunk } from './contents.js';

/** Parsed headers, indexes and layouts of one planning session, shared across its checkpoints. */
export class LoadCache {
  readonly headers: HeaderCache = new Map();
  readonly indexes: ShardIndexCache = new Map();
  private readonly layouts = new Map<string, CheckpointContents>();
  private readonly ids = new Map<object, number>();

  /** A key naming the parsed objects a layout was built from (same objects, same layout). */
  key(parts: object[]): string {
    return parts
      .map((p) => {
        let id = this.ids.get(p);
        if (id === undefined) {
          id = this.ids.size;
          this.ids.set(p, id);
        }
        return id;
      })
      .join(',');
  }

  layout(key: string, build: () => CheckpointContents): CheckpointContents {
    let l = this.layouts.get(key);
    if (!l) {
      l = build();
      this.layouts.set(key, l);
    }
    return l;
  }
}

/** Absolute location of a layout tensor in one checkpoint. */
export function locate(ck: LoadedCheckpoint, t: LayoutTensor): { file: string; offset: number } {
  const f = ck.files[t.shard ?? 0] as LoadedCheckpoint['files'][number];
  return { file: f.path, offset: f.dataStart + t.begin };
}

function makeLayout(tensors: LayoutTensor[]): CheckpointContents {
  // Filled in a loop: no [name, tensor] pair per tensor on the way.
  const byName = new Map<string, LayoutTensor>();
  let totalBytes = 0;
  for (const t of tensors) {
    byName.set(t.name, t);
    totalBytes += t.bytes;
  }
  return { tensors, byName, totalBytes };
}

function shardTensors(h: SafetensorsHeader, shard: number): LayoutTensor[] {
  return h.tensors.map((t) => ({
    name: t.name,
    dtype: t.dtype,
    shape: t.shape,
    shard,
    begin: t.begin,
    bytes: t.bytes,
  }));
}

/** Checks an index against its shards' headers: every tensor in exactly one shard, as listed. */
function shardedLayout(index: ShardIndex, headers: SafetensorsHeader[]): CheckpointContents {
  const tensors: LayoutTensor[] = [];
  const seen = new Map<string, string>();
  for (const [i, h] of headers.entries()) {
    const shard = index.shards[i] as string;
    for (const t of shardTensors(h, i)) {
      const other = seen.get(t.name);
      if (other !== undefined) {
        throw new PmaError(
          'E_SAFETENSORS',
          `${index.path}: tensor ${JSON.stringify(t.name)} is stored twice, in ${other} and ${shard}`,
          { file: index.path, tensor: t.name },
        );
      }
      seen.set(t.name, shard);
      const listed = index.weightMap.get(t.name);
      if (listed !== shard) {
        const why = listed === undefined ? 'is not listed in the weight_map' : `is listed under ${listed}`;
        throw new PmaError(
          'E_SAFETENSORS',
          `${index.path}: tensor ${JSON.stringify(t.name)} is in shard ${shard} but ${why}`,
          { file: index.path, tensor: t.name },
        );
      }
      tensors.push(t);
    }
  }
  if (seen.size !== index.weightMap.size) {
    for (const [name, shard] of index.weightMap) {
      if (!seen.has(name)) {
        throw new PmaError(
          'E_SAFETENSORS',
          `${index.path}: weight_map puts tensor ${JSON.stringify(name)} in ${shard}, whose header does not hold it`,
          { file: index.path, tensor: name },
        );
      }
    }
  }
  return makeLayout(tensors);
}

/**
 * Reads every header of a checkpoint (and its shard index), validated; no tensor data is read. Of
 * a DCP checkpoint, the tensors `include` takes (default: all but training state).
 */
export async function loadCheckpoint(
  ref: CheckpointRef,
  cache: LoadCache = new LoadCache(),
  include?: (fqn: string) => boolean,
): Promise<LoadedCheckpoint> {
  if (ref.layout.kind === 'dcp') return { ...ref, ...(await loadDcp(ref.dir, include)) };
  let headers: SafetensorsHeader[];
  let contents: CheckpointContents;
  if (ref.layout.kind === 'single') {
    const h = await readHeader(ref.layout.file, cache.headers);
    headers = [h];
    // The header's own entries and map: a header entry is a layout tensor of the first file.
    contents = cache.layout(cache.key([h.tensors]), () => ({
      tensors: h.tensors,
      byName: h.byName,
      totalBytes: h.tensors.reduce((s, t) => s + t.bytes, 0),
      ...(h.pmaText === null ? {} : { pmaText: h.pmaText }),
    }));
  } else {
    const index = await readShardIndex(ref.layout.index, cache.indexes);
    headers = await Promise.all(index.shards.map((s) => readHeader(shardPath(index, s), cache.headers)));
    const hs = headers;
    contents = cache.layout(cache.key([index.weightMap, ...hs.map((h) => h.tensors)]), () => shardedLayout(index, hs));
  }
  return {
    ...ref,
    files: headers.map((h) => ({ path: h.path, size: h.fileSize, dataStart: h.dataStart })),
    contents,
    others: [],
  };
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
  const want = ref.contents;
  for (const ck of cks) {
    if (ck.contents === want) continue;
    for (const t of want.tensors) {
      const o = ck.contents.byName.get(t.name);
      const at = { file: ck.path, tensor: t.name };
      if (!o)
        throw new PmaError(
          'E_MISMATCH',
          `tensor ${JSON.stringify(t.name)} is in ${ref.path} but not in ${ck.path}`,
          at,
        );
      if (o.dtype !== t.dtype) {
        throw new PmaError(
          'E_MISMATCH',
          `tensor ${JSON.stringify(t.name)} is ${o.dtype} in ${ck.path} but ${t.dtype} in ${ref.path}`,
          at,
        );
      }
      if (!sameShape(o.shape, t.shape)) {
        throw new PmaError(
          'E_MISMATCH',
          `tensor ${JSON.stringify(t.name)} has shape ${shapeText(o.shape)} in ${ck.path} but ${shapeText(t.shape)} in ${ref.path}`,
          at,
        );
      }
    }
    if (ck.contents.tensors.length !== want.tensors.length) {
      const extra = ck.contents.tensors.find((t) => !want.byName.has(t.name));
      if (extra) {
        throw new PmaError(
          'E_MISMATCH',
          `tensor ${JSON.stringify(extra.name)} is in ${ck.path} but not in ${ref.path}`,
          { file: ref.path, tensor: extra.name },
        );
      }
    }
  }
}
