import { open, type FileHandle } from 'node:fs/promises';

import { DTYPE_BITS, type DType, isDType } from '../dtypes.js';
import { PmaError, fsError } from '../errors.js';
import { withReadSlot } from '../util/read-slots.js';
import { scanCompactHeader } from './compact-header.js';
import { formatError } from './format-error.js';
import { bytesKey, bytesKeyOfFile, duplicateKeyOf } from './json-keys.js';

/** The reference reader's limit on the JSON header. */
export const MAX_HEADER_LENGTH = 100_000_000;

export interface TensorEntry {
  name: string;
  dtype: DType;
  shape: number[];
  /** Byte range relative to the start of the data buffer. */
  begin: number;
  end: number;
  /** end - begin. */
  bytes: number;
}

export interface SafetensorsHeader {
  path: string;
  fileSize: number;
  /** Absolute offset of the data buffer: 8 + header length. */
  dataStart: number;
  metadata: Record<string, string> | null;
  /** In data-offset order. */
  tensors: TensorEntry[];
  /** The same entries by name. */
  byName: ReadonlyMap<string, TensorEntry>;
  /**
   * The header's JSON text (padded, as the file holds it) when it is byte for byte what pma's
   * writer makes of these entries, else null: a merge that keeps every tensor as it is reuses it
   * instead of writing a million entries again.
   */
  pmaText: string | null;
}

const bad = formatError;

const utf8 = new TextDecoder('utf-8', { fatal: true });
const U64_MAX = (1n << 64n) - 1n;

function isUsize(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0;
}

function parseEntry(path: string, name: string, v: unknown): TensorEntry {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw bad(path, 'entry is not an object', name);
  const o = v as Record<string, unknown>;
  if (typeof o.dtype !== 'string') throw bad(path, 'dtype is missing or not a string', name);
  if (!isDType(o.dtype)) throw bad(path, `unknown dtype ${JSON.stringify(o.dtype)}`, name);
  if (!Array.isArray(o.shape) || !o.shape.every(isUsize)) {
    throw bad(path, 'shape must be an array of non-negative integers', name);
  }
  const off = o.data_offsets;
  if (!Array.isArray(off) || off.length !== 2 || !off.every(isUsize)) {
    throw bad(path, 'data_offsets must be two non-negative integers', name);
  }
  const [begin, end] = off as [number, number];
  return { name, dtype: o.dtype, shape: o.shape, begin, end, bytes: end - begin };
}

/**
 * The tensor's size in bytes from shape x dtype. Plain numbers while the product is exact (below
 * 2^53, every real tensor); BigInt only to word the overflow errors exactly.
 */
function byteLength(path: string, t: TensorEntry): number {
  let elements = 1;
  for (const d of t.shape) {
    elements *= d;
    if (!Number.isSafeInteger(elements)) return bigByteLength(path, t);
  }
  const bits = elements * DTYPE_BITS[t.dtype];
  if (!Number.isSafeInteger(bits)) return bigByteLength(path, t);
  if (bits % 8 !== 0) throw bad(path, `${elements} elements of ${t.dtype} do not fill whole bytes`, t.name);
  return bits / 8;
}

/** The reference reader's checked u64 arithmetic; any size that gets here cannot match a file. */
function bigByteLength(path: string, t: TensorEntry): never {
  let big = 1n;
  for (const d of t.shape) {
    big *= BigInt(d);
    if (big > U64_MAX) throw bad(path, `shape [${t.shape.join(', ')}] has more elements than fit in 64 bits`, t.name);
  }
  const bytes = (big * BigInt(DTYPE_BITS[t.dtype])) / 8n;
  if (bytes > U64_MAX) throw bad(path, `shape [${t.shape.join(', ')}] x ${t.dtype} overflows 64 bits`, t.name);
  throw bad(
    path,
    `data_offsets [${t.begin}, ${t.end}] hold ${t.end - t.begin} bytes but shape [${t.shape.join(', ')}] x ${t.dtype} needs ${bytes}`,
    t.name,
  );
}

/** A validated header body; identical header bytes give the same body, so it can be shared. */
export interface HeaderBody {
  metadata: Record<string, string> | null;
  /** In data-offset order. */
  tensors: TensorEntry[];
  byName: ReadonlyMap<string, TensorEntry>;
  pmaText: string | null;
  /** Bytes of the data buffer the header describes. */
  dataLength: number;
}

/**
 * Header bodies by the SHA-256 of their bytes (bytesKey). The shards of one run usually have
 * identical headers from one checkpoint to the next, so a run of N checkpoints is parsed about
 * once, not N times, and the others are not even decoded.
 */
export type HeaderCache = Map<string, HeaderBody>;

/** Any header JSON.parse accepts: entries checked one by one, each error worded. */
function parseJsonBody(
  path: string,
  text: string,
): { metadata: Record<string, string> | null; tensors: TensorEntry[]; byName: Map<string, TensorEntry> } {
  let root: unknown;
  try {
    root = JSON.parse(text);
  } catch (e) {
    throw bad(path, `header is not valid JSON (${(e as Error).message})`);
  }
  if (typeof root !== 'object' || root === null || Array.isArray(root)) throw bad(path, 'header is not a JSON object');
  const dup = duplicateKeyOf(text, root);
  if (dup)
    throw bad(
      path,
      `header names ${dup.path.length === 0 ? 'tensor' : `key in ${dup.path.join('.')}`} ${JSON.stringify(dup.key)} twice`,
      dup.path.length === 0 ? dup.key : dup.path[0],
    );

  let metadata: Record<string, string> | null = null;
  const tensors: TensorEntry[] = [];
  // Keys, not entries: no [name, value] pair per tensor (a million of them for a million tensors).
  const obj = root as Record<string, unknown>;
  for (const name of Object.keys(obj)) {
    const v = obj[name];
    if (name === '__metadata__') {
      if (
        typeof v !== 'object' ||
        v === null ||
        Array.isArray(v) ||
        !Object.values(v).every((s) => typeof s === 'string')
      ) {
        throw bad(path, '__metadata__ must be an object of string values');
      }
      metadata = v as Record<string, string>;
      continue;
    }
    tensors.push(parseEntry(path, name, v));
  }
  return { metadata, tensors, byName: new Map(tensors.map((t) => [t.name, t])) };
}

/** `text` is the header's `bytes` bytes decoded. */
function parseBody(path: string, text: string, bytes: number): HeaderBody {
  const compact = scanCompactHeader(text);
  const { metadata, tensors, byName } = compact
    ? {
        metadata: compact.metadata === null ? null : (JSON.parse(compact.metadata) as Record<string, string>),
        tensors: compact.entries,
        byName: compact.byName,
      }
    : parseJsonBody(path, text);
  tensors.sort((a, b) => a.begin - b.begin || a.end - b.end);

  let expected = 0;
  for (const t of tensors) {
    if (t.end < t.begin) throw bad(path, `data_offsets [${t.begin}, ${t.end}] end before they begin`, t.name);
    if (t.begin !== expected) {
      const why =
        expected === 0
          ? 'the first tensor does not start at offset 0'
          : t.begin > expected
            ? `leaves a hole: starts at ${t.begin}, previous tensor ends at ${expected}`
            : `overlaps the previous tensor: starts at ${t.begin}, previous tensor ends at ${expected}`;
      throw bad(path, why, t.name);
    }
    const bytes = byteLength(path, t);
    if (t.end - t.begin !== bytes) {
      throw bad(
        path,
        `data_offsets [${t.begin}, ${t.end}] hold ${t.end - t.begin} bytes but shape [${t.shape.join(', ')}] x ${t.dtype} needs ${bytes}`,
        t.name,
      );
    }
    expected = t.end;
  }
  // pma's padding: the fewest spaces that make the header a multiple of 8 bytes.
  const pmaText =
    compact?.pmaLayout === true && compact.padding === (8 - ((bytes - compact.padding) % 8)) % 8 ? text : null;
  return { metadata, tensors, byName, pmaText, dataLength: expected };
}

/**
 * Parses and validates a header (the JSON bytes after the 8-byte length), rejecting what the
 * reference Rust reader rejects: bad UTF-8 or JSON, wrong entry types, unknown dtypes, offsets
 * with holes or overlaps, sizes that overflow or disagree with shape x dtype, and a data buffer
 * that does not end exactly at the end of the file.
 *
 * @example
 * ```ts
 * import { readFile } from 'node:fs/promises';
 * import { parseHeader } from 'pma';
 * const path = 'runs/exp7/checkpoint-1000/model.safetensors';
 * const bytes = await readFile(path);
 * const length = Number(bytes.readBigUInt64LE(0));
 * const h = parseHeader(path, bytes.subarray(8, 8 + length), bytes.length);
 * console.log(h.tensors.length, h.dataStart);
 * ```
 */
export function parseHeader(path: string, json: Uint8Array, fileSize: number, cache?: HeaderCache): SafetensorsHeader {
  const key = cache ? cacheKey(json.length, bytesKey(json)) : '';
  let body = cache?.get(key);
  if (!body) {
    body = bodyOf(path, json);
    cache?.set(key, body);
  }
  return withBody(path, body, json.length, fileSize);
}

/** The header's bytes decoded and parsed. */
function bodyOf(path: string, json: Uint8Array): HeaderBody {
  let text: string;
  try {
    text = utf8.decode(json);
  } catch {
    throw bad(path, 'header is not valid UTF-8');
  }
  return parseBody(path, text, json.length);
}

/** A header cache key: the header's length and the SHA-256 of its bytes. */
function cacheKey(length: number, sha256: string): string {
  return `${length}:${sha256}`;
}

/** The header of a file whose header of `length` bytes has `body`: checked against the file's size. */
function withBody(path: string, body: HeaderBody, length: number, fileSize: number): SafetensorsHeader {
  const dataStart = 8 + length;
  const dataEnd = dataStart + body.dataLength;
  if (dataEnd > fileSize) {
    throw bad(path, `file is truncated: the header describes ${dataEnd} bytes but the file has ${fileSize}`);
  }
  if (dataEnd < fileSize) {
    throw bad(path, `${fileSize - dataEnd} trailing bytes after the last tensor (the data buffer must end the file)`);
  }
  return {
    path,
    fileSize,
    dataStart,
    metadata: body.metadata,
    tensors: body.tensors,
    byName: body.byName,
    pmaText: body.pmaText,
  };
}

// A header this large is hashed a block at a time before it is read whole: a repeat of a header
// the cache holds or is parsing (the next checkpoint of a run of a million tensors, 75 MB) then
// needs no buffer of its size, whose fresh pages cost a page fault each.
const HASH_FIRST_FROM = 4 * 2 ** 20;
const HASH_BLOCK = 2 ** 20;
// Large headers being parsed, per cache, by key: readers of the same bytes wait for the first.
const parsing = new WeakMap<HeaderCache, Map<string, Promise<HeaderBody>>>();

async function largeHeaderBody(
  path: string,
  fh: FileHandle,
  length: number,
  cache: HeaderCache,
  buffer: (n: number) => Buffer,
): Promise<HeaderBody> {
  const hashed = await bytesKeyOfFile(fh, buffer(HASH_BLOCK), 8, 8 + length);
  if (hashed.bytes !== length) throw bad(path, 'file shrank while its header was read');
  const key = cacheKey(length, hashed.key);
  // A parse of the same bytes that failed says nothing of this file's name: it reads its own.
  const cached =
    cache.get(key) ??
    (await parsing
      .get(cache)
      ?.get(key)
      ?.catch(() => undefined));
  if (cached) return cached;
  const inFlight = (async () => {
    const json = buffer(length).subarray(0, length);
    const { bytesRead } = await fh.read(json, 0, length, 8);
    if (bytesRead !== length) throw bad(path, 'file shrank while its header was read');
    return bodyOf(path, json);
  })();
  const byKey = parsing.get(cache) ?? new Map<string, Promise<HeaderBody>>();
  parsing.set(cache, byKey.set(key, inFlight));
  try {
    const body = await inFlight;
    cache.set(key, body);
    return body;
  } finally {
    byKey.delete(key);
  }
}

/** Reads and validates the header of a safetensors file; reads nothing of the data buffer. *
 * @example
 * ```ts
 * import { readHeader } from 'pma';
 * const h = await readHeader('runs/exp7/checkpoint-1000/model.safetensors');
 * for (const t of h.tensors) console.log(t.name, t.dtype, t.shape);
 * ```
 */
export async function readHeader(path: string, cache?: HeaderCache): Promise<SafetensorsHeader> {
  return withReadSlot(async (buffer) => {
    let fh;
    try {
      fh = await open(path, 'r');
    } catch (e) {
      throw fsError(e, 'cannot open', path);
    }
    try {
      const { size } = await fh.stat();
      if (size < 8) throw bad(path, `file is ${size} bytes, shorter than the 8-byte header length`);
      const lenBuf = Buffer.allocUnsafe(8);
      await fh.read(lenBuf, 0, 8, 0);
      const n = lenBuf.readBigUInt64LE(0);
      if (n > BigInt(MAX_HEADER_LENGTH))
        throw bad(path, `header length ${n} is over the limit of ${MAX_HEADER_LENGTH} bytes`);
      if (8n + n > BigInt(size)) throw bad(path, `header length ${n} runs past the end of the file (${size} bytes)`);
      if (cache && n >= HASH_FIRST_FROM) {
        return withBody(path, await largeHeaderBody(path, fh, Number(n), cache, buffer), Number(n), size);
      }
      // A reused buffer: parseHeader keeps nothing of the bytes (it hashes and decodes them).
      const json = buffer(Number(n)).subarray(0, Number(n));
      const { bytesRead } = await fh.read(json, 0, json.length, 8);
      if (bytesRead !== json.length) throw bad(path, 'file shrank while its header was read');
      return parseHeader(path, json, size, cache);
    } catch (e) {
      throw e instanceof PmaError ? e : fsError(e, 'cannot read', path);
    } finally {
      await fh.close();
    }
  });
}
