import { closeSync, mkdirSync, openSync, renameSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';

import { DTYPE_BITS } from '../dtypes.js';
import { METADATA_NAME } from '../dcp/metadata.js';
import { metadataPickle, tensorArchive, type CrcPlacement, type MetadataItem } from '../dcp/writer.js';
import type { SyntheticTensor } from './writer.js';

/**
 * A synthetic PyTorch Distributed Checkpoint, as `ranks` processes save one: each rank writes its
 * row block of every tensor (a tensor with fewer rows than ranks is saved by rank 0 whole) into
 * `__<rank>_0.distcp`, each chunk a torch.save archive, then `.metadata` is renamed into place
 * last, as torch does. For tests and benchmarks; torch 1.13's DCP reader loads it.
 */
export interface SyntheticDcp {
  tensors: SyntheticTensor[];
  /** The whole tensor's bytes (row-major), asked for once. */
  data: (t: SyntheticTensor) => Uint8Array;
  /** Processes that saved it (default 1). */
  ranks?: number;
  /** Byte blobs (training state), by fqn: stored raw by rank 0. */
  bytes?: Record<string, Uint8Array>;
  /** Where the archives record CRC-32s besides their directory: torch's data descriptors by default. */
  crcAt?: CrcPlacement;
}

export function writeSyntheticDcp(dir: string, c: SyntheticDcp): void {
  mkdirSync(dir, { recursive: true });
  const ranks = c.ranks ?? 1;
  const files = Array.from({ length: ranks }, (_, r) => ({ name: `__${r}_0.distcp`, at: 0, fd: -1 }));
  for (const f of files) f.fd = openSync(join(dir, f.name), 'w');
  const items: MetadataItem[] = [];
  try {
    for (const t of c.tensors) {
      const all = c.data(t);
      const rows = t.shape[0] ?? 1;
      const rowBytes = rows === 0 ? 0 : all.length / rows;
      const parts = t.shape.length === 0 || rows < ranks ? 1 : ranks;
      const chunks: Extract<MetadataItem, { kind: 'tensor' }>['chunks'] = [];
      for (let r = 0; r < parts; r++) {
        const from = Math.floor((rows * r) / parts);
        const to = Math.floor((rows * (r + 1)) / parts);
        const sizes = t.shape.length === 0 ? [] : [to - from, ...t.shape.slice(1)];
        const payload = t.shape.length === 0 ? all : all.subarray(from * rowBytes, to * rowBytes);
        const a = tensorArchive(t.dtype, sizes, payload, c.crcAt);
        const f = files[r] as (typeof files)[number];
        for (const b of [a.head, payload, a.tail]) writeSync(f.fd, b);
        chunks.push({
          offsets: t.shape.map((_, d) => (d === 0 ? from : 0)),
          sizes,
          file: f.name,
          offset: f.at,
          length: a.length,
        });
        f.at += a.length;
      }
      if (all.length !== (t.shape.reduce((x, y) => x * y, 1) * DTYPE_BITS[t.dtype]) / 8)
        throw new Error(`synthetic DCP: ${t.name} has ${all.length} bytes`);
      items.push({ kind: 'tensor', fqn: t.name, dtype: t.dtype, shape: t.shape, chunks });
    }
    const first = files[0] as (typeof files)[number];
    for (const [fqn, b] of Object.entries(c.bytes ?? {})) {
      writeSync(first.fd, b);
      items.push({ kind: 'bytes', fqn, file: first.name, offset: first.at, length: b.length });
      first.at += b.length;
    }
  } finally {
    for (const f of files) closeSync(f.fd);
  }
  writeFileSync(join(dir, `${METADATA_NAME}.tmp`), metadataPickle(items));
  renameSync(join(dir, `${METADATA_NAME}.tmp`), join(dir, METADATA_NAME));
}
