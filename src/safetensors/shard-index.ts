import { open } from 'node:fs/promises';
import { dirname, join } from 'node:path';

import { fsError } from '../errors.js';
import { withReadSlot } from '../util/read-slots.js';
import { formatError } from './format-error.js';
import { bytesKey, duplicateKeyOf } from './json-keys.js';

export const INDEX_NAME = 'model.safetensors.index.json';

export interface ShardIndex {
  path: string;
  /** Tensor name -> shard file name (relative to the index's directory). */
  weightMap: Map<string, string>;
  /** Shard file names in sorted order. */
  shards: string[];
}

const bad = formatError;

/** Reads a model.safetensors.index.json; checking it against the shards is done by the loader. */
export async function readShardIndex(path: string, cache?: Map<string, Omit<ShardIndex, 'path'>>): Promise<ShardIndex> {
  return withReadSlot(async (buffer) => {
    let fh;
    let bytes: Buffer;
    try {
      fh = await open(path, 'r');
      const { size } = await fh.stat();
      bytes = buffer(size).subarray(0, size);
      let got = 0;
      while (got < size) {
        const { bytesRead } = await fh.read(bytes, got, size - got, got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
      bytes = bytes.subarray(0, got);
    } catch (e) {
      throw fsError(e, 'cannot read shard index', path);
    } finally {
      await fh?.close().catch(() => {});
    }
    // From here on synchronous: the first of several checkpoints with the same index bytes parses
    // it and fills the cache before any other gets here.
    return parseShardIndex(path, bytes, cache);
  });
}

/**
 * Keyed by the bytes' hash: the indexes of a run's checkpoints are usually the same bytes, and
 * then they are hashed (in a reused buffer) and not even decoded.
 */
function parseShardIndex(path: string, bytes: Buffer, cache?: Map<string, Omit<ShardIndex, 'path'>>): ShardIndex {
  const key = cache ? bytesKey(bytes) : '';
  const known = cache?.get(key);
  if (known) return { path, ...known };
  const text = bytes.toString('utf8');
  let root: unknown;
  try {
    root = JSON.parse(text);
  } catch (e) {
    throw bad(path, `not valid JSON (${(e as Error).message})`);
  }
  const dup = duplicateKeyOf(text, root);
  if (dup)
    throw bad(
      path,
      `${dup.path.length === 0 ? 'the index' : dup.path.join('.')} names ${JSON.stringify(dup.key)} twice`,
      dup.path[0] === 'weight_map' ? dup.key : undefined,
    );
  const wm = (root as { weight_map?: unknown } | null)?.weight_map;
  if (typeof wm !== 'object' || wm === null || Array.isArray(wm))
    throw bad(path, 'weight_map is missing or not an object');
  const weightMap = new Map<string, string>();
  for (const [name, file] of Object.entries(wm as Record<string, unknown>)) {
    if (
      typeof file !== 'string' ||
      file === '' ||
      file.includes('/') ||
      file.includes('\\') ||
      file === '.' ||
      file === '..'
    ) {
      throw bad(path, `weight_map names ${JSON.stringify(file)}, not a shard file name in ${dirname(path)}`, name);
    }
    weightMap.set(name, file);
  }
  const shards = [...new Set(weightMap.values())].sort();
  cache?.set(key, { weightMap, shards });
  return { path, weightMap, shards };
}

export function shardPath(index: ShardIndex, shard: string): string {
  return join(dirname(index.path), shard);
}
