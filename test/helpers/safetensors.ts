// The tests' own safetensors writer and parser, written apart from src/ so that files pma writes
// are checked by an independent reader, and inputs are not made by the code under test.
import { mkdirSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

export const SIZE: Record<string, number> = { BOOL: 1, U8: 1, I8: 1, I16: 2, U16: 2, F16: 2, BF16: 2, I32: 4, U32: 4, F32: 4, F64: 8, I64: 8, U64: 8 };

export interface RawTensor {
  name: string;
  dtype: string;
  shape: number[];
  data: Uint8Array;
}

export function encodeSafetensors(tensors: RawTensor[], metadata: Record<string, string> | null = { format: 'pt' }): Buffer {
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
  const sized: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let pos = 0;
  for (const t of specs) {
    const bytes = t.shape.reduce((a, x) => a * x, 1) * (SIZE[t.dtype] as number);
    sized[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [pos, pos + bytes] };
    pos += bytes;
  }
  let json = JSON.stringify(sized);
  while (Buffer.byteLength(json) % 8 !== 0) json += ' ';
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, Buffer.concat([len, Buffer.from(json)]));
  truncateSync(path, 8 + Buffer.byteLength(json) + pos);
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
  const header = JSON.parse(headerText) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
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
    tensors.set(name, { name, dtype: v.dtype, shape: v.shape, data: buf.subarray(8 + n + b, 8 + n + e), begin: b, end: e });
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

/** A deterministic pseudo-random generator (mulberry32), so failures reproduce. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Random data of a dtype: for floats, values near 1 of the dtype's own format. */
export function randomData(dtype: string, elements: number, rand: () => number): Uint8Array {
  const size = SIZE[dtype] ?? 1;
  const buf = Buffer.alloc(elements * size);
  for (let i = 0; i < elements; i++) {
    const x = (rand() - 0.5) * 4;
    switch (dtype) {
      case 'F32': buf.writeFloatLE(x, i * 4); break;
      case 'F64': buf.writeDoubleLE(x, i * 8); break;
      case 'BF16': { const f = Buffer.alloc(4); f.writeFloatLE(x); buf.writeUInt16LE(f.readUInt16LE(2), i * 2); break; }
      case 'F16': buf.writeUInt16LE(0x3c00 ^ Math.floor(rand() * 0x3ff) ^ (rand() < 0.5 ? 0x8000 : 0), i * 2); break;
      default: for (let k = 0; k < size; k++) buf[i * size + k] = Math.floor(rand() * 256); break;
    }
  }
  return buf;
}

export interface TensorSpec {
  name: string;
  dtype: string;
  shape: number[];
}

/**
 * Writes a checkpoint directory: model.safetensors, or `shards` shard files plus the index, with
 * a config.json, a tokenizer file and training state that must not be copied.
 */
export function writeCheckpoint(dir: string, specs: TensorSpec[], seed: number, opts: { shards?: number } = {}): Map<string, RawTensor> {
  const rand = rng(seed);
  const tensors = specs.map((s) => ({ ...s, data: randomData(s.dtype, s.shape.reduce((a, b) => a * b, 1), rand) }));
  mkdirSync(dir, { recursive: true });
  const shards = opts.shards ?? 1;
  if (shards <= 1) {
    writeSafetensors(join(dir, 'model.safetensors'), tensors);
  } else {
    const per = Math.ceil(tensors.length / shards);
    const weightMap: Record<string, string> = {};
    let total = 0;
    for (let i = 0; i < shards; i++) {
      const part = tensors.slice(i * per, (i + 1) * per);
      const name = `model-${String(i + 1).padStart(5, '0')}-of-${String(shards).padStart(5, '0')}.safetensors`;
      writeSafetensors(join(dir, name), part);
      for (const t of part) {
        weightMap[t.name] = name;
        total += t.data.length;
      }
    }
    writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }));
  }
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ model_type: 'test', seed }));
  writeFileSync(join(dir, 'tokenizer_config.json'), '{}');
  writeFileSync(join(dir, 'optimizer.pt'), 'not a model file');
  writeFileSync(join(dir, 'trainer_state.json'), '{}');
  return new Map(tensors.map((t) => [t.name, t]));
}
