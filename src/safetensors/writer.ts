import { DTYPE_BITS, type DType } from '../dtypes.js';

const ARRAY_INDEX = /^(?:0|[1-9][0-9]*)$/;

export interface OutputTensorSpec {
  name: string;
  dtype: DType;
  shape: number[];
  bytes: number;
}

export interface FileLayout {
  /** The 8-byte length followed by the JSON header, padded with spaces to a multiple of 8. */
  header: Buffer;
  /** The file's total size. */
  size: number;
  /** Indices into the given tensors, in data order. */
  sequence: number[];
  /** Absolute offset in the file of each given tensor, by its index in the list given. */
  at: number[];
  /** Absolute offsets by tensor name (built on each access, from `at`: the planner uses `at`). */
  readonly offsets: Map<string, number>;
  /** Tensor names in data order (built on each access, from `sequence`). */
  readonly order: string[];
}

/**
 * Lays out one safetensors file: tensors ordered by element width (widest first, stable), so
 * every tensor's data is aligned to its element size (the header is padded to 8), contiguous
 * offsets from 0, and `__metadata__` {"format": "pt"} as transformers expects.
 */
export function layoutFile(
  tensors: OutputTensorSpec[],
  metadata: Record<string, string> = { format: 'pt' },
): FileLayout {
  // Widest first, in their given order within a width: one bucket of indices per width, no sort.
  const buckets = new Map<number, number[]>();
  for (const [k, t] of tensors.entries()) {
    const w = DTYPE_BITS[t.dtype];
    const b = buckets.get(w);
    if (b) b.push(k);
    else buckets.set(w, [k]);
  }
  const sequence = [...buckets.keys()].sort((a, b) => b - a).flatMap((w) => buckets.get(w) as number[]);
  const rel = new Array<number>(tensors.length);
  const entries: string[] = [];
  const indexNamed: [number, string][] = [];
  let pos = 0;
  for (const k of sequence) {
    const t = tensors[k] as OutputTensorSpec;
    const entry = `${JSON.stringify(t.name)}:{"dtype":${JSON.stringify(t.dtype)},"shape":${JSON.stringify(t.shape)},"data_offsets":[${pos},${pos + t.bytes}]}`;
    if (ARRAY_INDEX.test(t.name) && Number(t.name) < 2 ** 32 - 1) indexNamed.push([Number(t.name), entry]);
    else entries.push(entry);
    rel[k] = pos;
    pos += t.bytes;
  }
  // The text JSON.stringify gives for an object of these entries, without building an object of a
  // million keys: its keys in insertion order, except that names which are array indices ("0",
  // "17") come first in numeric order, as in any JavaScript object.
  indexNamed.sort((x, y) => x[0] - y[0]);
  const all = [...indexNamed.map(([, e]) => e), `"__metadata__":${JSON.stringify(metadata)}`, ...entries];
  const json = `{${all.join(',')}}`;
  const jsonBytes = Buffer.byteLength(json);
  const padded = jsonBytes + ((8 - (jsonBytes % 8)) % 8);
  // One buffer, written in place: a header of a million tensors is tens of MB.
  const header = Buffer.allocUnsafe(8 + padded);
  header.writeBigUInt64LE(BigInt(padded), 0);
  header.write(json, 8, 'utf8');
  header.fill(0x20, 8 + jsonBytes);
  const at = rel.map((r) => header.length + r);
  return {
    header,
    size: header.length + pos,
    sequence,
    at,
    get offsets() {
      return new Map(tensors.map((t, k) => [t.name, at[k] as number]));
    },
    get order() {
      return sequence.map((k) => (tensors[k] as OutputTensorSpec).name);
    },
  };
}

/** Shard file names the way Hugging Face writes them. */
export function shardName(i: number, n: number): string {
  return `model-${String(i + 1).padStart(5, '0')}-of-${String(n).padStart(5, '0')}.safetensors`;
}

/**
 * Splits tensors, in order, into shards of at most maxBytes of tensor data (a tensor larger than
 * maxBytes gets a shard of its own), as Hugging Face's save_pretrained does.
 */
export function splitShards<T extends { bytes: number; withPrevious?: boolean }>(
  tensors: T[],
  maxBytes: number,
): T[][] {
  const shards: T[][] = [];
  let cur: T[] = [];
  let size = 0;
  for (const t of tensors) {
    // A tensor `withPrevious` (an FP8 weight's scales) stays in its predecessor's shard.
    if (cur.length > 0 && size + t.bytes > maxBytes && t.withPrevious !== true) {
      shards.push(cur);
      cur = [];
      size = 0;
    }
    cur.push(t);
    size += t.bytes;
  }
  if (cur.length > 0 || shards.length === 0) shards.push(cur);
  return shards;
}

/** The model.safetensors.index.json of a sharded output. */
export function shardIndexJson(totalSize: number, weightMap: Map<string, string>): string {
  const sorted = Object.fromEntries([...weightMap].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  return `${JSON.stringify({ metadata: { total_size: totalSize }, weight_map: sorted }, null, 2)}\n`;
}
