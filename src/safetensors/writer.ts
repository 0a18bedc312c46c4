import { DTYPE_BITS, type DType } from '../dtypes.js';

const ARRAY_INDEX = /^(?:0|[1-9][0-9]*)$/;

export interface OutputTensorSpec {
  name: string;
  dtype: DType;
  shape: number[];
  bytes: number;
}

export interface FileLayout {
  /** The JSON header as the file holds it after its 8-byte length: padded with spaces to a multiple of 8 bytes. */
  json: string;
  /** The 8-byte length followed by `json` (encoded on each access: the planner keeps the text). */
  readonly header: Buffer;
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
 * Entries joined this many at a time: a piece is short-lived garbage while it is built, where a
 * list of every entry's text (a million of them for a million tensors) lives until the end and is
 * copied through the heap's generations on the way.
 */
const ENTRIES_PER_PIECE = 4096;

/**
 * Lays out one safetensors file: tensors ordered by element width (widest first, stable), so
 * every tensor's data is aligned to its element size (the header is padded to 8), contiguous
 * offsets from 0, and `__metadata__` {"format": "pt"} as transformers expects.
 */
export function layoutFile(
  tensors: OutputTensorSpec[],
  metadata: Record<string, string> = { format: 'pt' },
): FileLayout {
  return layoutTensors(tensors, (t) => t.dtype, metadata);
}

/**
 * layoutFile for tensors of any type, `dtypeOf` giving each one's dtype in the file: the planner
 * lays out its own plan tensors, with no second object per tensor to describe them.
 */
export function layoutTensors<T extends Omit<OutputTensorSpec, 'dtype'>>(
  tensors: T[],
  dtypeOf: (t: T) => DType,
  metadata: Record<string, string> = { format: 'pt' },
): FileLayout {
  // Widest first, in their given order within a width: one bucket of indices per width, no sort.
  const buckets = new Map<number, number[]>();
  for (const [k, t] of tensors.entries()) {
    const w = DTYPE_BITS[dtypeOf(t)];
    const b = buckets.get(w);
    if (b) b.push(k);
    else buckets.set(w, [k]);
  }
  const sequence = [...buckets.keys()].sort((a, b) => b - a).flatMap((w) => buckets.get(w) as number[]);
  const at = new Array<number>(tensors.length);
  const pieces: string[] = [];
  let piece: string[] = [];
  const indexNamed: [number, string][] = [];
  let pos = 0;
  // The text between a name and its offsets, made again only when the dtype or the shape array
  // changes: neighbours often share both (the header scanner shares equal shapes' arrays).
  let dtype: DType | null = null;
  let shape: number[] | null = null;
  let middle = '';
  for (const k of sequence) {
    const t = tensors[k] as T;
    const d = dtypeOf(t);
    if (d !== dtype || t.shape !== shape) {
      dtype = d;
      shape = t.shape;
      middle = `:{"dtype":${JSON.stringify(d)},"shape":${JSON.stringify(shape)},"data_offsets":[`;
    }
    const entry = `${JSON.stringify(t.name)}${middle}${pos},${pos + t.bytes}]}`;
    if (ARRAY_INDEX.test(t.name) && Number(t.name) < 2 ** 32 - 1) indexNamed.push([Number(t.name), entry]);
    else if (piece.push(entry) === ENTRIES_PER_PIECE) {
      pieces.push(piece.join(','));
      piece = [];
    }
    at[k] = pos;
    pos += t.bytes;
  }
  if (piece.length > 0) pieces.push(piece.join(','));
  // The text JSON.stringify gives for an object of these entries, without building an object of a
  // million keys: its keys in insertion order, except that names which are array indices ("0",
  // "17") come first in numeric order, as in any JavaScript object. Measured piece by piece and
  // joined once: a header of a million tensors is tens of MB, and each copy of it costs.
  indexNamed.sort((x, y) => x[0] - y[0]);
  const all = [...indexNamed.map(([, e]) => e), `"__metadata__":${JSON.stringify(metadata)}`, ...pieces];
  let textBytes = 2 + all.length - 1;
  for (const p of all) textBytes += Buffer.byteLength(p);
  const padded = textBytes + ((8 - (textBytes % 8)) % 8);
  all[0] = `{${all[0] as string}`;
  all[all.length - 1] = `${all[all.length - 1] as string}}${' '.repeat(padded - textBytes)}`;
  const json = all.join(',');
  for (let k = 0; k < at.length; k++) at[k] = (at[k] as number) + 8 + padded;
  return {
    json,
    get header() {
      const header = Buffer.allocUnsafe(8 + padded);
      header.writeBigUInt64LE(BigInt(padded), 0);
      header.write(json, 8, 'utf8');
      return header;
    },
    size: 8 + padded + pos,
    sequence,
    at,
    get offsets() {
      return new Map(tensors.map((t, k) => [t.name, at[k] as number]));
    },
    get order() {
      return sequence.map((k) => (tensors[k] as T).name);
    },
  };
}

/** Shard file names the way Hugging Face writes them. */
export function shardName(i: number, n: number): string {
  return `model-${String(i + 1).padStart(5, '0')}-of-${String(n).padStart(5, '0')}.safetensors`;
}

/**
 * Splits tensors, in order, into shards of at most maxBytes of tensor data (a tensor larger than
 * maxBytes gets a shard of its own), as Hugging Face's save_pretrained does. A tensor for which
 * `withPrevious` holds (an FP8 weight's scales) stays in its predecessor's shard.
 */
export function splitShards<T extends { bytes: number }>(
  tensors: T[],
  maxBytes: number,
  withPrevious: (t: T) => boolean = () => false,
): T[][] {
  const shards: T[][] = [];
  let cur: T[] = [];
  let size = 0;
  for (const t of tensors) {
    if (cur.length > 0 && size + t.bytes > maxBytes && !withPrevious(t)) {
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
