// The tests' own safetensors parser, written apart from src/ so that the files pma writes are
// checked by an independent reader, and a raw encoder for crafting files byte by byte (malformed
// ones too). Whole checkpoints come from the one synthetic-checkpoint writer (src/synthetic/),
// which the demo and the benchmarks share.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

import type { DType } from '../../src/dtypes.js';
import { randomData, rng } from '../../src/synthetic/values.js';
import { writeSafetensorsFile, writeSyntheticCheckpoint } from '../../src/synthetic/writer.js';

export { randomData, rng };

export const SIZE: Record<string, number> = {
  BOOL: 1,
  U8: 1,
  F8_E4M3: 1,
  F8_E5M2: 1,
  I8: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  F64: 8,
  I64: 8,
  U64: 8,
};

export interface RawTensor {
  name: string;
  dtype: string;
  shape: number[];
  data: Uint8Array;
}

export function encodeSafetensors(
  tensors: RawTensor[],
  metadata: Record<string, string> | null = { format: 'pt' },
): Buffer {
  const header: Record<string, unknown> = metadata ? { __metadata__: metadata } : {};
  let pos = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [pos, pos + t.data.length] };
    pos += t.data.length;
  }
  let json = JSON.stringify(header);
  while (Buffer.byteLength(json) % 8 !== 0) json += ' ';
  const h = Buffer.from(json);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  return Buffer.concat([len, h, ...tensors.map((t) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.length))]);
}

export function writeSafetensors(path: string, tensors: RawTensor[], metadata?: Record<string, string> | null): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, encodeSafetensors(tensors, metadata));
}

/**
 * A file whose tensors are all zeros and take no disk space: the header, then a hole. For inputs
 * far larger than the suite could write (a 4 TiB merge, a chunk that runs for seconds).
 */
export function writeSparseSafetensors(path: string, specs: { name: string; dtype: string; shape: number[] }[]): void {
  mkdirSync(dirname(path), { recursive: true });
  writeSafetensorsFile(
    path,
    specs.map((t) => ({ ...t, dtype: t.dtype as DType })),
    () => null,
  );
}

export interface ParsedFile {
  metadata: Record<string, string> | undefined;
  headerLength: number;
  headerText: string;
  tensors: Map<string, RawTensor & { begin: number; end: number }>;
}

/** Strict, minimal reader: checks padding, contiguity and that the buffer ends the file. */
export function parseSafetensors(buf: Buffer): ParsedFile {
  const n = Number(buf.readBigUInt64LE(0));
  const headerText = buf.subarray(8, 8 + n).toString('utf8');
  const header = JSON.parse(headerText) as Record<
    string,
    { dtype: string; shape: number[]; data_offsets: [number, number] }
  >;
  const tensors = new Map<string, RawTensor & { begin: number; end: number }>();
  let metadata: Record<string, string> | undefined;
  const spans: [number, number][] = [];
  for (const [name, v] of Object.entries(header)) {
    if (name === '__metadata__') {
      metadata = v as unknown as Record<string, string>;
      continue;
    }
    const [b, e] = v.data_offsets;
    spans.push([b, e]);
    const elems = v.shape.reduce((a, x) => a * x, 1);
    if (e - b !== elems * (SIZE[v.dtype] ?? NaN)) throw new Error(`bad size for ${name}`);
    tensors.set(name, {
      name,
      dtype: v.dtype,
      shape: v.shape,
      data: buf.subarray(8 + n + b, 8 + n + e),
      begin: b,
      end: e,
    });
  }
  spans.sort((a, b) => a[0] - b[0]);
  let pos = 0;
  for (const [b, e] of spans) {
    if (b !== pos) throw new Error('offsets not contiguous');
    pos = e;
  }
  if (8 + n + pos !== buf.length) throw new Error('buffer does not end the file');
  return { metadata, headerLength: n, headerText, tensors };
}

export function readSafetensors(path: string): ParsedFile {
  return parseSafetensors(readFileSync(path));
}

export interface TensorSpec {
  name: string;
  dtype: string;
  shape: number[];
}

/**
 * Writes a checkpoint directory with random tensors from `seed`: model.safetensors, or `shards`
 * shard files plus the index, with a config.json, a tokenizer file and training state that must
 * not be copied. Returns the tensors with their bytes.
 */
export function writeCheckpoint(
  dir: string,
  specs: TensorSpec[],
  seed: number,
  opts: { shards?: number } = {},
): Map<string, RawTensor> {
  const rand = rng(seed);
  const tensors = specs.map((s) => ({
    ...s,
    data: randomData(
      s.dtype as DType,
      s.shape.reduce((a, b) => a * b, 1),
      rand,
    ),
  }));
  const byName = new Map(tensors.map((t) => [t.name, t]));
  writeSyntheticCheckpoint(dir, {
    tensors: specs.map((t) => ({ ...t, dtype: t.dtype as DType })),
    data: (t) => (byName.get(t.name) as RawTensor).data,
    shards: opts.shards ?? 1,
    files: {
      'config.json': JSON.stringify({ model_type: 'test', seed }),
      'tokenizer_config.json': '{}',
      'optimizer.pt': 'not a model file',
      'trainer_state.json': '{}',
    },
  });
  return byName;
}
