import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';

import type { DType } from '../dtypes.js';
import { PmaError, fsError } from '../errors.js';
import { TORCH_DTYPES } from './torch-dtypes.js';
import { PyDict, PyGlobal, PyObject, PyPersistent, PySet, PyTuple, unpickle, type PyValue } from './pickle.js';

/**
 * A PyTorch Distributed Checkpoint's `.metadata`, read without PyTorch: every item (tensor or
 * byte blob) with where its chunks are stored, checked as strictly as a safetensors header. The
 * pickle names torch 1.13's classes (torch.distributed._shard.checkpoint) or torch 2.x's
 * (torch.distributed.checkpoint); both read the same.
 */
export const METADATA_NAME = '.metadata';

/** Where one stored piece lies: a byte range of a file of the checkpoint. */
export interface DcpStorage {
  /** Absolute path of the .distcp file. */
  file: string;
  offset: number;
  length: number;
}

/** One chunk of a tensor: the box [offsets, offsets + sizes) of the whole tensor, and its storage. */
export interface DcpChunk extends DcpStorage {
  offsets: number[];
  sizes: number[];
}

export interface DcpTensor {
  kind: 'tensor';
  fqn: string;
  /** pma's name for the dtype, or null for one it does not know (such tensors can only be copied). */
  dtype: DType | null;
  /** torch's name ("bfloat16"). */
  torchDtype: string;
  shape: number[];
  /** In the order the metadata lists them. */
  chunks: DcpChunk[];
}

export interface DcpBytes extends DcpStorage {
  kind: 'bytes';
  fqn: string;
}

export type DcpItem = DcpTensor | DcpBytes;

export interface DcpMetadata {
  /** The checkpoint directory. */
  dir: string;
  /** Which torch wrote it, by the module its classes come from. */
  writer: 'torch 1.x' | 'torch 2.x';
  items: DcpItem[];
  byFqn: Map<string, DcpItem>;
  /** The .distcp files the items are stored in, with their sizes. */
  files: Map<string, number>;
}

const MODULES_1 = 'torch.distributed._shard.checkpoint';
const MODULES_2 = 'torch.distributed.checkpoint';
const CLASSES = [
  'Metadata',
  'TensorStorageMetadata',
  'BytesStorageMetadata',
  'ChunkStorageMetadata',
  'MetadataIndex',
  'TensorProperties',
  'StorageMeta',
  '_MEM_FORMAT_ENCODING',
];

/** Every global a DCP .metadata may name: its dataclasses, torch.Size, dtypes, layouts, enums. */
export const METADATA_GLOBALS: ReadonlySet<string> = new Set([
  ...CLASSES.flatMap((c) => [`${MODULES_1}.metadata.${c}`, `${MODULES_2}.metadata.${c}`]),
  `${MODULES_1}.filesystem._StorageInfo`,
  `${MODULES_2}.filesystem._StorageInfo`,
  'torch.distributed._shard.sharded_tensor.metadata.TensorProperties',
  'torch.distributed._shard.sharded_tensor.metadata.MEM_FORMAT_ENCODING',
  'torch.Size',
  'torch.serialization._get_layout',
  'torch.strided',
  'torch.contiguous_format',
  'torch.channels_last',
  'torch.preserve_format',
  'builtins.getattr',
  'collections.OrderedDict',
  'pathlib.PosixPath',
  ...Object.keys(TORCH_DTYPES).map((d) => `torch.${d}`),
]);

class Reader {
  constructor(readonly file: string) {}

  bad(why: string, fqn?: string): never {
    throw new PmaError(
      'E_INPUT',
      `${this.file}: ${fqn === undefined ? '' : `item ${JSON.stringify(fqn)}: `}${why}`,
      fqn === undefined ? { file: this.file } : { file: this.file, tensor: fqn },
    );
  }

  /** A dataclass instance of `cls` (by class name), with its fields. */
  object(v: PyValue, cls: string, fqn?: string): Map<string, PyValue> {
    if (!(v instanceof PyObject) || v.cls.name !== cls) this.bad(`expected a ${cls}, found ${describe(v)}`, fqn);
    const o = v;
    const fields = new Map<string, PyValue>();
    // A dataclass pickles its __dict__ as BUILD state (or as the first of a (dict, slots) pair).
    const state = o.state instanceof PyTuple && o.state.items[0] instanceof PyDict ? o.state.items[0] : o.state;
    if (state instanceof PyDict) for (const [k, val] of state.entries) if (typeof k === 'string') fields.set(k, val);
    return fields;
  }

  dict(v: PyValue | undefined, what: string): [PyValue, PyValue][] {
    if (!(v instanceof PyDict)) return this.bad(`${what} is ${describe(v)}, not a dict`);
    return v.entries;
  }

  /** A torch.Size (or tuple, or list) of non-negative integers. */
  size(v: PyValue | undefined, what: string, fqn: string): number[] {
    const items =
      v instanceof PyObject && v.cls.fullName === 'torch.Size' && v.args[0] instanceof PyTuple
        ? v.args[0].items
        : v instanceof PyTuple
          ? v.items
          : Array.isArray(v)
            ? v
            : null;
    if (!items || !items.every((n) => typeof n === 'number' && Number.isSafeInteger(n) && n >= 0))
      return this.bad(`${what} is ${describe(v)}, not a size`, fqn);
    return items as number[];
  }

  count(v: PyValue | undefined, what: string, fqn?: string): number {
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) return this.bad(`${what} is ${describe(v)}`, fqn);
    return v;
  }

  /** The dtype of a TensorProperties: a field (dataclass state) or the first of its __getstate__ tuple. */
  dtype(props: PyValue | undefined, fqn: string): string {
    if (!(props instanceof PyObject) || props.cls.name !== 'TensorProperties')
      return this.bad(`expected TensorProperties, found ${describe(props)}`, fqn);
    const d =
      props.state instanceof PyTuple ? props.state.items[0] : this.object(props, 'TensorProperties').get('dtype');
    if (!(d instanceof PyGlobal) || d.module !== 'torch' || !(d.name in TORCH_DTYPES))
      return this.bad(`its dtype is ${describe(d)}, not a torch dtype pma knows`, fqn);
    return d.name;
  }
}

/** A value as an error names it. */
export function describe(v: PyValue | undefined): string {
  if (v === undefined) return 'missing';
  if (v === null) return 'None';
  if (v instanceof PyObject) return `a ${v.cls.fullName}`;
  if (v instanceof PyGlobal) return v.fullName;
  if (v instanceof PyTuple) return 'a tuple';
  if (v instanceof PyDict) return 'a dict';
  if (Array.isArray(v)) return 'a list';
  if (v instanceof Uint8Array) return 'bytes';
  if (v instanceof PySet) return 'a set';
  if (v instanceof PyPersistent) return 'a persistent id';
  return typeof v === 'string' ? JSON.stringify(v.slice(0, 80)) : String(v);
}

const storageKey = (fqn: string, offsets: number[] | null) => `${fqn}\u0000${offsets?.join(',') ?? '-'}`;

/** Reads and checks `<dir>/.metadata`: items, chunks, storage; every file named exists and is long enough. */
export async function readDcpMetadata(dir: string): Promise<DcpMetadata> {
  const file = join(dir, METADATA_NAME);
  let buf: Buffer;
  try {
    buf = await readFile(file);
  } catch (e) {
    throw fsError(e, 'cannot read', file);
  }
  const r = new Reader(file);
  const root = unpickle(buf, { file, what: 'the DCP metadata', allow: METADATA_GLOBALS });
  const meta = r.object(root, 'Metadata');
  const writer = root instanceof PyObject && root.cls.module.startsWith(MODULES_1) ? 'torch 1.x' : 'torch 2.x';

  // Where each stored piece is: (fqn, chunk offsets) -> file range.
  const storage = new Map<string, DcpStorage>();
  for (const [k, v] of r.dict(meta.get('storage_data'), 'storage_data')) {
    const idx = r.object(k, 'MetadataIndex');
    const fqn = idx.get('fqn');
    if (typeof fqn !== 'string') r.bad(`a storage key has fqn ${describe(fqn)}`);
    const at = idx.get('offset');
    const offsets = at === null || at === undefined ? null : r.size(at, 'a storage offset', fqn as string);
    const info = r.object(v, '_StorageInfo', fqn as string);
    const path = info.get('relative_path');
    // A file name inside the checkpoint, never a path out of it.
    if (typeof path !== 'string' || path === '' || /[/\\]/.test(path) || path === '.' || path === '..')
      r.bad(`is stored in ${describe(path)}, which is not a file name inside the checkpoint`, fqn as string);
    const transforms = info.get('transform_descriptors');
    if (transforms !== undefined && transforms !== null && !(Array.isArray(transforms) && transforms.length === 0))
      r.bad('is stored transformed (compressed); pma reads plain DCP storage only', fqn as string);
    storage.set(storageKey(fqn as string, offsets), {
      file: join(dir, path as string),
      offset: r.count(info.get('offset'), 'a storage offset', fqn as string),
      length: r.count(info.get('length'), 'a storage length', fqn as string),
    });
  }

  const items: DcpItem[] = [];
  const byFqn = new Map<string, DcpItem>();
  for (const [k, v] of r.dict(meta.get('state_dict_metadata'), 'state_dict_metadata')) {
    if (typeof k !== 'string') r.bad(`an item is named by ${describe(k)}`);
    const fqn = k as string;
    let item: DcpItem;
    if (v instanceof PyObject && v.cls.name === 'BytesStorageMetadata') {
      const s = storage.get(storageKey(fqn, null));
      if (!s) r.bad('has no storage entry', fqn);
      item = { kind: 'bytes', fqn, ...(s as DcpStorage) };
    } else {
      const t = r.object(v, 'TensorStorageMetadata', fqn);
      const torchDtype = r.dtype(t.get('properties'), fqn);
      const shape = r.size(t.get('size'), 'its size', fqn);
      const rawChunks = t.get('chunks');
      if (!Array.isArray(rawChunks)) r.bad(`its chunks are ${describe(rawChunks)}`, fqn);
      const chunks = (rawChunks as PyValue[]).map((c) => {
        const f = r.object(c, 'ChunkStorageMetadata', fqn);
        const offsets = r.size(f.get('offsets'), 'a chunk offset', fqn);
        const sizes = r.size(f.get('sizes'), 'a chunk size', fqn);
        const s = storage.get(storageKey(fqn, offsets));
        if (!s) r.bad(`its chunk at [${offsets.join(', ')}] has no storage entry`, fqn);
        return { offsets, sizes, ...(s as DcpStorage) };
      });
      item = { kind: 'tensor', fqn, dtype: TORCH_DTYPES[torchDtype] ?? null, torchDtype, shape, chunks };
      checkTiling(r, item);
    }
    if (byFqn.has(fqn)) r.bad('is listed twice', fqn);
    byFqn.set(fqn, item);
    items.push(item);
  }

  const files = new Map<string, number>();
  for (const item of items) {
    for (const s of item.kind === 'tensor' ? item.chunks : [item]) {
      let size = files.get(s.file);
      if (size === undefined) {
        const st = await stat(s.file).catch((e: unknown) => {
          throw fsError(e, `${file} names a data file that cannot be read:`, s.file);
        });
        size = st.size;
        files.set(s.file, size);
      }
      if (s.offset + s.length > size) {
        throw new PmaError(
          'E_INPUT',
          `${s.file}: item ${JSON.stringify(item.fqn)} is stored at bytes ${s.offset}+${s.length}, past the end of the file (${size} bytes); it was cut short`,
          { file: s.file, tensor: item.fqn },
        );
      }
    }
  }
  return { dir, writer, items, byFqn, files };
}

const volume = (sizes: number[]) => sizes.reduce((a, b) => a * b, 1);

/** The chunks of a tensor cover it exactly: each inside it, none overlapping, no element left out. */
function checkTiling(r: Reader, t: DcpTensor): void {
  const rank = t.shape.length;
  let total = 0;
  for (const c of t.chunks) {
    if (c.offsets.length !== rank || c.sizes.length !== rank)
      r.bad(`a chunk of rank ${c.offsets.length} in a tensor of shape [${t.shape.join(', ')}]`, t.fqn);
    for (let d = 0; d < rank; d++) {
      if ((c.offsets[d] as number) + (c.sizes[d] as number) > (t.shape[d] as number))
        r.bad(
          `its chunk at [${c.offsets.join(', ')}] of size [${c.sizes.join(', ')}] lies outside its shape [${t.shape.join(', ')}]`,
          t.fqn,
        );
    }
    total += volume(c.sizes);
  }
  // Disjoint chunks whose volumes add up to the tensor's tile it. Sorted by the first dimension,
  // only chunks whose first-dimension ranges meet can overlap.
  const sorted = [...t.chunks].sort((a, b) => (a.offsets[0] ?? 0) - (b.offsets[0] ?? 0));
  for (let i = 0; i < sorted.length; i++) {
    const a = sorted[i] as DcpChunk;
    if (volume(a.sizes) === 0) continue;
    for (let j = i + 1; j < sorted.length; j++) {
      const b = sorted[j] as DcpChunk;
      if (rank > 0 && (b.offsets[0] as number) >= (a.offsets[0] as number) + (a.sizes[0] as number)) break;
      if (volume(b.sizes) === 0) continue;
      const meet = a.offsets.every(
        (o, d) =>
          o < (b.offsets[d] as number) + (b.sizes[d] as number) &&
          (b.offsets[d] as number) < o + (a.sizes[d] as number),
      );
      if (meet) r.bad(`its chunks at [${a.offsets.join(', ')}] and [${b.offsets.join(', ')}] overlap`, t.fqn);
    }
  }
  if (total !== volume(t.shape))
    r.bad(`its chunks hold ${total} elements, its shape [${t.shape.join(', ')}] ${volume(t.shape)}`, t.fqn);
}
