import { crc32 } from 'node:zlib';

import { DTYPE_BITS, type DType } from '../dtypes.js';
import { PmaError } from '../errors.js';
import { dataclass, pickle, size, type P } from './pickler.js';
import { storageName, torchName } from './torch-dtypes.js';

/**
 * Writes what torch's DCP reader reads: a chunk as torch.save's zip archive (data.pkl, the
 * storage, version), and `.metadata` with torch 1.x's classes (torch.distributed._shard.checkpoint),
 * which torch 2.x reads too.
 */

function storageOf(dtype: DType): string {
  const s = storageName(dtype);
  if (!s) throw new PmaError('E_UNSUPPORTED', `pma cannot write a ${dtype} tensor into a DCP checkpoint`);
  return s;
}

/** data.pkl of a contiguous tensor of `sizes` whose storage is member data/0. */
function tensorPickle(dtype: DType, sizes: number[]): Buffer {
  const stride = sizes.map((_, d) => sizes.slice(d + 1).reduce((a, b) => a * b, 1));
  const numel = sizes.reduce((a, b) => a * b, 1);
  return pickle({
    call: 'torch._utils._rebuild_tensor_v2',
    args: [
      { persistent: { tuple: ['storage', { global: `torch.${storageOf(dtype)}` }, '0', 'cpu', numel] } },
      0,
      { tuple: sizes },
      { tuple: stride },
      false,
      { call: 'collections.OrderedDict', args: [] },
    ],
  });
}

const DATA_ALIGN = 64;
// General purpose flags: names in UTF-8, and (bit 3) the CRC-32 and sizes in a data descriptor.
const UTF8 = 0x800;
const DESCRIPTOR = 0x8;

/**
 * A zip record of `length` bytes: its signature, version 2.0, the flags, then the CRC-32, the two
 * sizes (a stored member: equal) and the name's length from byte `at` (14 in a local header, 16
 * in the central directory).
 */
function zipRecord(
  length: number,
  signature: number,
  at: number,
  flags: number,
  crc: number,
  size: number,
  nameLength: number,
) {
  const b = Buffer.alloc(length);
  b.writeUInt32LE(signature, 0);
  b.writeUInt16LE(20, 4);
  b.writeUInt16LE(flags, at - 8);
  b.writeUInt32LE(crc >>> 0, at);
  b.writeUInt32LE(size, at + 4);
  b.writeUInt32LE(size, at + 8);
  b.writeUInt16LE(nameLength, at + 12);
  return b;
}

/** Where an archive records its members' CRC-32s besides the central directory. */
export type CrcPlacement = 'descriptor' | 'local-header';

/**
 * A torch.save archive of one tensor chunk, as three parts: the bytes before its elements, where
 * the elements go, and the bytes after them (so a large payload need not be copied into it).
 * Members are stored; the elements start 64-byte aligned, as torch aligns them. As torch does
 * ('descriptor'), each member's CRC-32 and sizes follow it in a data descriptor and the local
 * header leaves them 0; 'local-header' puts them there instead (as other zip writers do).
 */
export function tensorArchive(
  dtype: DType,
  sizes: number[],
  payload: Uint8Array,
  crcAt: CrcPlacement = 'descriptor',
): { head: Buffer; tail: Buffer; length: number } {
  const want = (sizes.reduce((a, b) => a * b, 1) * DTYPE_BITS[dtype]) / 8;
  if (payload.length !== want)
    throw new PmaError(
      'E_INTERNAL',
      `a ${dtype} chunk of [${sizes.join(', ')}] is ${want} bytes, not ${payload.length}`,
    );
  const members = [
    { name: 'archive/data.pkl', data: tensorPickle(dtype, sizes) as Uint8Array },
    { name: 'archive/data/0', data: payload },
    { name: 'archive/version', data: Buffer.from('3\n') as Uint8Array },
  ];
  const descriptor = crcAt === 'descriptor';
  const flags = UTF8 | (descriptor ? DESCRIPTOR : 0);
  const parts: Buffer[] = [];
  const central: Buffer[] = [];
  let at = 0;
  let head: Buffer | null = null;
  for (const m of members) {
    const name = Buffer.from(m.name, 'utf8');
    const start = at + 30 + name.length;
    const pad = m.data === payload ? (DATA_ALIGN - ((start + 4) % DATA_ALIGN)) % DATA_ALIGN : 0;
    const extra = m.data === payload ? Buffer.alloc(4 + pad, 0x5a) : Buffer.alloc(0);
    if (extra.length > 0) {
      extra.writeUInt16LE(0x4246, 0); // "FB": torch's padding field
      extra.writeUInt16LE(pad, 2);
    }
    const crc = crc32(m.data);
    const local = zipRecord(
      30,
      0x04034b50,
      14,
      flags,
      descriptor ? 0 : crc,
      descriptor ? 0 : m.data.length,
      name.length,
    );
    local.writeUInt16LE(extra.length, 28);
    const c = zipRecord(46, 0x02014b50, 16, flags, crc, m.data.length, name.length);
    c.writeUInt16LE(20, 6); // version needed, after "made by"
    c.writeUInt32LE(at, 42); // where the local header is
    central.push(c, name);
    const after = Buffer.alloc(descriptor ? 16 : 0);
    if (descriptor) {
      after.writeUInt32LE(0x08074b50, 0);
      after.writeUInt32LE(crc >>> 0, 4);
      after.writeUInt32LE(m.data.length, 8);
      after.writeUInt32LE(m.data.length, 12);
    }
    parts.push(local, name, extra);
    if (m.data === payload) {
      head = Buffer.concat(parts.splice(0));
      parts.push(after);
      at = head.length + payload.length + after.length;
    } else {
      parts.push(Buffer.from(m.data), after);
      at += 30 + name.length + extra.length + m.data.length + after.length;
    }
  }
  const dir = Buffer.concat(central);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(members.length, 8);
  end.writeUInt16LE(members.length, 10);
  end.writeUInt32LE(dir.length, 12);
  end.writeUInt32LE(at, 16);
  if (at + dir.length > 0xffffffff)
    throw new PmaError('E_UNSUPPORTED', 'a DCP chunk of 4 GiB or more needs ZIP64, which pma does not write yet');
  const tail = Buffer.concat([...parts, dir, end]);
  const h = head as Buffer;
  return { head: h, tail, length: h.length + payload.length + tail.length };
}

/** One item of a DCP checkpoint to describe in `.metadata`. */
export type MetadataItem =
  | {
      kind: 'tensor';
      fqn: string;
      dtype: DType;
      shape: number[];
      chunks: { offsets: number[]; sizes: number[]; file: string; offset: number; length: number }[];
    }
  | { kind: 'bytes'; fqn: string; file: string; offset: number; length: number };

/** The module paths each torch generation pickles DCP's classes under. */
const CLASSES = {
  'torch 1.x': {
    metadata: 'torch.distributed._shard.checkpoint.metadata',
    storage: 'torch.distributed._shard.checkpoint.filesystem._StorageInfo',
    properties: 'torch.distributed._shard.sharded_tensor.metadata.TensorProperties',
  },
  'torch 2.x': {
    metadata: 'torch.distributed.checkpoint.metadata',
    storage: 'torch.distributed.checkpoint.filesystem._StorageInfo',
    properties: 'torch.distributed.checkpoint.metadata.TensorProperties',
  },
} as const;

/**
 * `.metadata` for the items (file names relative to the checkpoint), pickled as `writer` does:
 * torch 1.x by default, which torch 2.x reads too (its unpickler maps the old module paths).
 */
export function metadataPickle(items: MetadataItem[], writer: keyof typeof CLASSES = 'torch 1.x'): Buffer {
  const K = CLASSES[writer];
  const M = K.metadata;
  // TensorProperties pickles its __getstate__ tuple; the memory format as an enum member.
  const memoryFormat: P =
    writer === 'torch 1.x'
      ? {
          call: 'builtins.getattr',
          args: [
            { global: `${K.properties.replace(/TensorProperties$/, 'MEM_FORMAT_ENCODING')}` },
            'TORCH_CONTIGUOUS_FORMAT',
          ],
        }
      : { call: `${M}._MEM_FORMAT_ENCODING`, args: [0] };
  const props = (dtype: DType): P => ({
    call: K.properties,
    args: [],
    newobj: true,
    state: {
      tuple: [
        { global: `torch.${torchName(dtype) ?? storageOf(dtype)}` },
        { call: 'torch.serialization._get_layout', args: ['torch.strided'] },
        false,
        memoryFormat,
        false,
      ],
    },
  });
  const info = (s: { file: string; offset: number; length: number }): P =>
    dataclass(K.storage, {
      relative_path: s.file,
      offset: s.offset,
      length: s.length,
    });
  return pickle(
    dataclass(`${M}.Metadata`, {
      state_dict_metadata: {
        dict: items.map((it) => [
          it.fqn,
          it.kind === 'bytes'
            ? dataclass(`${M}.BytesStorageMetadata`, {})
            : dataclass(`${M}.TensorStorageMetadata`, {
                properties: props(it.dtype),
                size: size(it.shape),
                chunks: it.chunks.map((c) =>
                  dataclass(`${M}.ChunkStorageMetadata`, { offsets: size(c.offsets), sizes: size(c.sizes) }),
                ),
              }),
        ]),
      },
      planner_data: null,
      storage_data: {
        dict: items.flatMap((it): [P, P][] =>
          it.kind === 'bytes'
            ? [[dataclass(`${M}.MetadataIndex`, { fqn: it.fqn, offset: null, index: null }), info(it)]]
            : it.chunks.map((c, i) => [
                dataclass(`${M}.MetadataIndex`, { fqn: it.fqn, offset: size(c.offsets), index: i }),
                info(c),
              ]),
        ),
      },
    }),
  );
}
