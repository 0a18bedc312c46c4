import { open, type FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';

import { fsError } from '../errors.js';
import { withReadSlot } from '../util/read-slots.js';
import { formatError } from './format-error.js';
import { scanWeightMap } from './index-scan.js';
import { bytesKeyOfFile, duplicateKeyOf } from './json-keys.js';

export const INDEX_NAME = 'model.safetensors.index.json';

export interface ShardIndex {
  path: string;
  /** Tensor name -> shard file name (relative to the index's directory). */
  weightMap: Map<string, string>;
  /** Shard file names in sorted order. */
  shards: string[];
}

const bad = formatError;

/**
 * Parsed indexes by the SHA-256 of their bytes: the indexes of a run's checkpoints are usually
 * the same bytes. A promise, so that checkpoints read at once wait for the one parse.
 */
export type ShardIndexCache = Map<string, Promise<Omit<ShardIndex, 'path'>>>;

/** Bytes hashed at a time: an index found in the cache is never held whole in memory. */
const HASH_BLOCK = 256 * 1024;

/**
 * Reads a model.safetensors.index.json; checking it against the shards is done by the loader.
 * With a cache, the file is first hashed in blocks: the nine indexes of ten checkpoints that
 * repeat the first are never read into a buffer of their own (a 200B MoE's index is 3 MB, and
 * fresh memory costs a page fault per 4 KiB).
 */
export async function readShardIndex(path: string, cache?: ShardIndexCache): Promise<ShardIndex> {
  if (!cache)
    return { path, ...(await withReadSlot(async (buffer) => parseShardIndex(path, await readAll(path, buffer)))) };
  const key = await withReadSlot((buffer) => hashOf(path, buffer(HASH_BLOCK).subarray(0, HASH_BLOCK)));
  const own = () => withReadSlot(async (buffer) => parseShardIndex(path, await readAll(path, buffer)));
  const shared = cache.get(key);
  if (shared) {
    // A parse of the same bytes that failed named the other file: this one reads its own, so that
    // its error names it.
    return { path, ...((await shared.catch(() => undefined)) ?? (await own())) };
  }
  const parsed = own();
  cache.set(key, parsed);
  return { path, ...(await parsed) };
}

/** Opens `path` and runs `use` on it, any failure worded as the index's. */
async function withFile<T>(path: string, use: (fh: FileHandle) => Promise<T>): Promise<T> {
  let fh: FileHandle | undefined;
  try {
    fh = await open(path, 'r');
    return await use(fh);
  } catch (e) {
    throw fsError(e, 'cannot read shard index', path);
  } finally {
    await fh?.close().catch(() => {});
  }
}

/** The cache key of a file's bytes (bytesKey's), read through `block`. */
function hashOf(path: string, block: Buffer): Promise<string> {
  return withFile(path, async (fh) => (await bytesKeyOfFile(fh, block, 0)).key);
}

/** The whole file, in a buffer of the read slot (valid until the slot's callback settles). */
function readAll(path: string, buffer: (n: number) => Buffer): Promise<Buffer> {
  return withFile(path, async (fh) => {
    const { size } = await fh.stat();
    const bytes = buffer(size).subarray(0, size);
    let got = 0;
    while (got < size) {
      const { bytesRead } = await fh.read(bytes, got, size - got, got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    return bytes.subarray(0, got);
  });
}

/** The weight map and shard list of an index's bytes. */
function parseShardIndex(path: string, bytes: Buffer): Omit<ShardIndex, 'path'> {
  const text = bytes.toString('utf8');
  const weightMap = scanWeightMap(text) ?? weightMapOf(path, text);
  // Each shard's name checked once: the map holds one string per shard.
  const shards = [...new Set(weightMap.values())].sort();
  for (const file of shards) {
    if (file === '' || file.includes('/') || file.includes('\\') || file === '.' || file === '..') {
      throw notAShard(path, file, [...weightMap].find(([, f]) => f === file)?.[0]);
    }
  }
  return { weightMap, shards };
}

/** The error for a weight_map value that is not a shard file's name, naming the tensor. */
function notAShard(path: string, file: unknown, name: string | undefined) {
  return bad(path, `weight_map names ${JSON.stringify(file)}, not a shard file name in ${dirname(path)}`, name);
}

/** The weight_map of any index JSON.parse accepts, or the error that words what is wrong. */
function weightMapOf(path: string, text: string): Map<string, string> {
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
    if (typeof file !== 'string') throw notAShard(path, file, name);
    weightMap.set(name, file);
  }
  return weightMap;
}

export function shardPath(index: ShardIndex, shard: string): string {
  return join(dirname(index.path), shard);
}
