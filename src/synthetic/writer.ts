import { closeSync, mkdirSync, openSync, ftruncateSync, writeFileSync, writevSync } from 'node:fs';
import { join } from 'node:path';

import { DTYPE_BITS, type DType } from '../dtypes.js';
import { PmaError } from '../errors.js';
import { INDEX_NAME } from '../safetensors/shard-index.js';
import { layoutFile, shardIndexJson, shardName, splitShards, type OutputTensorSpec } from '../safetensors/writer.js';

/**
 * The one writer of synthetic checkpoints, shared by the tests, the demo and the benchmarks: a
 * checkpoint directory as a trainer saves it (model.safetensors, or shards and their index, beside
 * config and training-state files), with tensor bytes from a callback. It writes the format the
 * way the safetensors library does (src/safetensors/writer.ts lays the files out); tests read what
 * pma makes with their own reader (test/helpers/safetensors.ts), never with this.
 */
export interface SyntheticTensor {
  name: string;
  dtype: DType;
  shape: number[];
}

/**
 * A tensor's bytes: one buffer, several pieces written one after another (a large tensor made
 * from windows of one random buffer), or null for zeros that take no disk space (a sparse hole).
 */
export type TensorBytes = Uint8Array | Uint8Array[] | null;

export interface SyntheticCheckpoint {
  tensors: SyntheticTensor[];
  /** The bytes of each tensor, asked for once, in file order. */
  data: (t: SyntheticTensor, index: number) => TensorBytes;
  /** Split into this many shard files of about equal bytes plus the index (default 1: model.safetensors). */
  shards?: number;
  /** Or: shards of at most this many tensor bytes, as save_pretrained cuts them (wins over `shards`). */
  maxShardBytes?: number;
  /** The header's __metadata__ (default {"format": "pt"}). */
  metadata?: Record<string, string>;
  /** Other files of the checkpoint directory, by name: config.json, trainer_state.json, optimizer.pt. */
  files?: Record<string, string | Uint8Array>;
}

export interface WrittenFile {
  path: string;
  size: number;
}

export const tensorBytes = (t: SyntheticTensor): number =>
  (t.shape.reduce((a, b) => a * b, 1) * DTYPE_BITS[t.dtype]) / 8;

/** Splits tensors, in order, into `n` contiguous groups of about equal bytes, each holding at least one. */
export function splitEvenly<T extends SyntheticTensor>(tensors: T[], n: number): T[][] {
  const total = tensors.reduce((s, t) => s + tensorBytes(t), 0);
  const groups: T[][] = Array.from({ length: n }, () => []);
  let acc = 0;
  for (const [i, t] of tensors.entries()) {
    let g = Math.min(n - 1, total > 0 ? Math.floor((acc * n) / total) : Math.floor((i * n) / tensors.length));
    // Every group gets at least one tensor: the last ones go one to a group when they must.
    const left = tensors.length - i;
    const emptyAfter = groups.slice(g + 1).filter((x) => x.length === 0).length;
    if (left <= emptyAfter) g = n - left;
    (groups[g] as T[]).push(t);
    acc += tensorBytes(t);
  }
  return groups;
}

const WRITE_BATCH = 64 * 2 ** 20;

/** Writes one safetensors file; tensors whose bytes are null are left as a hole. */
export function writeSafetensorsFile(
  path: string,
  tensors: SyntheticTensor[],
  data: (t: SyntheticTensor) => TensorBytes,
  metadata: Record<string, string> = { format: 'pt' },
): WrittenFile {
  const specs: OutputTensorSpec[] = tensors.map((t) => ({ ...t, bytes: tensorBytes(t) }));
  const layout = layoutFile(specs, metadata);
  const fd = openSync(path, 'w');
  try {
    let pos = 0;
    const header = layout.header;
    let pending: Uint8Array[] = [header];
    let pendingBytes = header.length;
    const flush = () => {
      for (let done = 0; done < pendingBytes;) {
        const n = writevSync(fd, pending, pos + done);
        done += n;
        // A short write (rare on a regular file): drop what was written and go on.
        let skip = n;
        while (pending.length > 0 && skip >= (pending[0] as Uint8Array).length)
          skip -= (pending.shift() as Uint8Array).length;
        if (skip > 0 && pending[0]) pending[0] = pending[0].subarray(skip);
      }
      pos += pendingBytes;
      pending = [];
      pendingBytes = 0;
    };
    for (const k of layout.sequence) {
      const t = tensors[k] as SyntheticTensor;
      const want = tensorBytes(t);
      const d = data(t);
      if (d === null) {
        flush();
        pos += want; // a hole: ftruncate below gives the file its length
        continue;
      }
      const pieces = Array.isArray(d) ? d : [d];
      const got = pieces.reduce((s, p) => s + p.length, 0);
      if (got !== want)
        throw new PmaError('E_INTERNAL', `synthetic tensor ${t.name}: ${got} bytes given, ${want} needed`);
      for (const p of pieces) {
        pending.push(p);
        pendingBytes += p.length;
        if (pendingBytes >= WRITE_BATCH || pending.length >= 512) flush();
      }
    }
    flush();
    ftruncateSync(fd, layout.size);
  } finally {
    closeSync(fd);
  }
  return { path, size: layout.size };
}

/** Writes a checkpoint directory; returns the safetensors files written. */
export function writeSyntheticCheckpoint(dir: string, c: SyntheticCheckpoint): WrittenFile[] {
  mkdirSync(dir, { recursive: true });
  const index = new Map(c.tensors.map((t, i) => [t, i]));
  const data = (t: SyntheticTensor) => c.data(t, index.get(t) as number);
  const groups =
    c.maxShardBytes !== undefined
      ? splitShards(
          c.tensors.map((t) => ({ t, bytes: tensorBytes(t) })),
          c.maxShardBytes,
        ).map((g) => g.map((x) => x.t))
      : splitEvenly(c.tensors, Math.max(1, Math.min(c.shards ?? 1, c.tensors.length)));
  const written: WrittenFile[] = [];
  if (groups.length === 1) {
    written.push(writeSafetensorsFile(join(dir, 'model.safetensors'), c.tensors, data, c.metadata));
  } else {
    const weightMap = new Map<string, string>();
    for (const [i, g] of groups.entries()) {
      const name = shardName(i, groups.length);
      written.push(writeSafetensorsFile(join(dir, name), g, data, c.metadata));
      for (const t of g) weightMap.set(t.name, name);
    }
    writeFileSync(
      join(dir, INDEX_NAME),
      shardIndexJson(
        c.tensors.reduce((s, t) => s + tensorBytes(t), 0),
        weightMap,
      ),
    );
  }
  for (const [name, body] of Object.entries(c.files ?? {})) writeFileSync(join(dir, name), body);
  return written;
}
