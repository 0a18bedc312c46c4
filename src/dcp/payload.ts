import type { FileHandle } from 'node:fs/promises';

import { DTYPE_BITS, type DType } from '../dtypes.js';
import { PmaError } from '../errors.js';
import { describe, type DcpChunk } from './metadata.js';
import { STORAGE_DTYPES } from './torch-dtypes.js';
import { PyGlobal, PyObject, PyPersistent, PyTuple, unpickle, type PyValue } from './pickle.js';
import { ArchiveBytes, readZip } from './zip.js';

/**
 * Where a DCP chunk's elements are: torch.save wrote the chunk as a zip archive inside the .distcp
 * file, with `<name>/data.pkl` (how to rebuild the tensor: storage, offset, size, stride) and the
 * storage's bytes in `<name>/data/<key>`. The elements are located, checked and never copied: the
 * engine reads them at `offset`, as it reads a safetensors tensor.
 */
export interface ChunkPayload {
  /** Absolute offset of the chunk's first element in the .distcp file. */
  offset: number;
  bytes: number;
  /** The storage member holding them: its bytes, and where its CRC-32 is recorded (a writer that replaces them rewrites it). */
  member: StorageMember;
}

/** A zip member holding a tensor's storage: [offset, offset + size) of its file, and its CRC-32 fields. */
export interface StorageMember {
  offset: number;
  size: number;
  crc32: number;
  crcFields: number[];
}

const PAYLOAD_GLOBALS: ReadonlySet<string> = new Set([
  'torch._utils._rebuild_tensor_v2',
  'collections.OrderedDict',
  ...Object.keys(STORAGE_DTYPES).map((s) => `torch.${s}`),
]);

const ints = (v: PyValue | undefined): number[] | null =>
  v instanceof PyTuple && v.items.every((n) => typeof n === 'number' && Number.isSafeInteger(n) && n >= 0)
    ? (v.items as number[])
    : null;

/** Row-major strides of `sizes`; a dimension of size 1 may have any stride. */
function contiguous(sizes: number[], stride: number[]): boolean {
  let want = 1;
  for (let d = sizes.length - 1; d >= 0; d--) {
    const n = sizes[d] as number;
    if (n !== 1 && stride[d] !== want) return false;
    want *= n;
  }
  return true;
}

/** Locates and checks the elements of `chunk` of tensor `fqn` (of `dtype`) in its open file. */
export async function locateChunk(fh: FileHandle, chunk: DcpChunk, fqn: string, dtype: DType): Promise<ChunkPayload> {
  const at = `the chunk at [${chunk.offsets.join(', ')}]`;
  const bad = (why: string): never => {
    throw new PmaError('E_INPUT', `${chunk.file}: tensor ${JSON.stringify(fqn)}: ${at} ${why}`, {
      file: chunk.file,
      tensor: fqn,
    });
  };
  const bytes = await ArchiveBytes.open(fh, chunk.file, chunk.offset, Math.max(chunk.length, 0));
  const members = await readZip(bytes, chunk.offset, chunk.length, `tensor ${JSON.stringify(fqn)}`);
  const pkl = members.find((m) => m.name.endsWith('/data.pkl'));
  if (!pkl) return bad('has no data.pkl in its archive');
  if (pkl.size > 1 << 20) bad(`has a data.pkl of ${pkl.size} bytes; a tensor's is a few hundred`);
  const text = await bytes.read(pkl.dataOffset, pkl.size);
  const root = unpickle(text, {
    file: chunk.file,
    what: `the data.pkl of tensor ${JSON.stringify(fqn)}`,
    allow: PAYLOAD_GLOBALS,
    persistent: true,
  });
  if (!(root instanceof PyObject) || root.cls.fullName !== 'torch._utils._rebuild_tensor_v2')
    return bad('is not a tensor saved by torch.save');
  const [pid, storageOffset, size, stride] = root.args;
  const id = pid instanceof PyPersistent && pid.id instanceof PyTuple ? pid.id.items : [];
  const [kind, storageType, key, , numel] = id;
  if (kind !== 'storage' || !(storageType instanceof PyGlobal) || typeof key !== 'string' || typeof numel !== 'number')
    return bad('names its storage in a way pma does not know');
  const stored = STORAGE_DTYPES[storageType.name];
  if (stored !== dtype) bad(`is stored as ${storageType.name}, but the metadata says ${dtype}`);
  const sizes = ints(size);
  const strides = ints(stride);
  if (!sizes || sizes.join() !== chunk.sizes.join())
    bad(`has size ${describeInts(size)}, the metadata [${chunk.sizes.join(', ')}]`);
  if (!strides || strides.length !== chunk.sizes.length || !contiguous(chunk.sizes, strides))
    bad(`is not contiguous (stride ${describeInts(stride)})`);
  if (typeof storageOffset !== 'number' || !Number.isSafeInteger(storageOffset) || storageOffset < 0)
    return bad('has no storage offset');
  const elements = chunk.sizes.reduce((a, b) => a * b, 1);
  if (storageOffset + elements > numel) bad(`needs ${storageOffset + elements} elements of a storage of ${numel}`);
  const width = DTYPE_BITS[dtype] / 8;
  const data = members.find((m) => m.name.endsWith(`/data/${key}`));
  if (!data) return bad(`has no data/${key} in its archive`);
  if (data.size !== numel * width) bad(`has ${data.size} bytes of storage for ${numel} ${dtype} elements`);
  return {
    offset: data.dataOffset + storageOffset * width,
    bytes: elements * width,
    member: { offset: data.dataOffset, size: data.size, crc32: data.crc32, crcFields: data.crcFields },
  };
}

function describeInts(v: PyValue | undefined): string {
  return v instanceof PyTuple ? `(${v.items.map((x) => describe(x)).join(', ')})` : describe(v);
}
