import type { Fp8DType } from '../checkpoints/quantization.js';
import { floatSize, type DType, type FloatDType, type OutputDTypeOption } from '../dtypes.js';
import type { Method, Schedule } from './weights.js';

/**
 * A merge plan is plain data: which bytes of which files, with which weights, go where. It can be
 * printed (--dry-run), serialised, checked without the addon and executed by any engine; the
 * native surface (src/native.ts) takes its ops as they are.
 */

/** What a merge writes: a Hugging Face safetensors checkpoint, or a PyTorch Distributed Checkpoint. */
export const OUTPUT_FORMATS = ['safetensors', 'dcp'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

/** The accumulator: 'f32' is the golden contract; 'f64' accumulates with float64 weights. */
export type Accumulate = 'f32' | 'f64';
/**
 * The checksum pma.json records of every output file: 'blake3' (the default; `b3sum` prints the
 * same digest) hashes several times faster than 'sha256' on one core, so it keeps up with the
 * disk; 'sha256' where a consumer needs that digest.
 */
export const CHECKSUMS = ['blake3', 'sha256'] as const;
export type Checksum = (typeof CHECKSUMS)[number];

/** Where an op reads one checkpoint's bytes. */
export interface PlanInputRange {
  /** Index into PlanChunk.inputs. */
  file: number;
  /** Absolute byte offset in that file. */
  offset: number;
}

/** Averages `count` elements: one input range per checkpoint, oldest first. */
export interface PlanMergeOp {
  kind: 'merge';
  /** The (first) tensor the op writes: what errors name. */
  tensor: string;
  /**
   * Tensors the op covers when more than one: small tensors of the same dtypes that lie one after
   * another in every input and in the output are averaged by one op (src/plan/chunks.ts).
   */
  tensors?: number;
  /** Index into PlanChunk.outputs, and the absolute offset in that file. */
  outFile: number;
  outOffset: number;
  inDtype: FloatDType;
  outDtype: FloatDType;
  count: number;
  inputs: PlanInputRange[];
}

/** Copies `bytes` from the newest checkpoint (tensors that are not averaged). */
export interface PlanCopyOp {
  kind: 'copy';
  tensor: string;
  /** Tensors the op covers when more than one (as a merge op's). */
  tensors?: number;
  outFile: number;
  outOffset: number;
  bytes: number;
  inputs: [PlanInputRange];
}

/**
 * A band of rows [row0, row0 + rows) of a block-scaled FP8 tensor viewed as [rows of the tensor,
 * cols]: every checkpoint's codes dequantised with their scales and averaged (docs/contract.md,
 * "FP8"). A requantised band spans whole block rows, since its new scales need whole blocks.
 */
export interface PlanFp8Op {
  kind: 'fp8';
  tensor: string;
  /** Where the band's codes (or dequantised values) go. */
  outFile: number;
  outOffset: number;
  inDtype: Fp8DType;
  /** The input's own FP8 dtype: requantised with new block scales. A float dtype: dequantised. */
  outDtype: Fp8DType | FloatDType;
  rows: number;
  cols: number;
  row0: number;
  blockRows: number;
  blockCols: number;
  /** The band's first byte in each checkpoint, oldest first. */
  inputs: PlanInputRange[];
  /** The scale tensor: each checkpoint's first scale of the band, and where new scales go (requantised). Null: no scales. */
  scale: { dtype: FloatDType; inputs: PlanInputRange[]; out: { file: number; offset: number } | null } | null;
}

export type PlanOp = PlanMergeOp | PlanCopyOp | PlanFp8Op;

export interface PlanCheckpoint {
  path: string;
  name: string;
  step: number | null;
  /** Tokens seen, when the selection was made in tokens; else null. */
  tokens: number | null;
}

export interface PlanTensor {
  name: string;
  /** 'scale': an FP8 tensor's scales, written by that tensor's ops (requantised output). */
  action: 'merge' | 'copy' | 'scale';
  inDtype: DType;
  outDtype: DType;
  shape: number[];
  /** Output file name (relative to the output directory) and absolute offset in it. */
  file: string;
  offset: number;
  bytes: number;
}

export interface PlanOutputFile {
  /** Relative to the output directory (a Megatron output puts its files under iter_NNNNNNN/). */
  name: string;
  size: number;
  /**
   * A safetensors file's padded JSON header: the file is its 8-byte length, this, then the data.
   * Null for a file the ops write whole (a DCP .distcp file: copied ranges and averaged ones).
   */
  header: string | null;
  tensors: number;
  /** Zip members whose bytes the merge replaces (DCP): their CRC-32 fields are rewritten. */
  crcs: PlanCrcPatch[];
}

/**
 * A zip member of an output file whose bytes are averaged: once [start, end) is written, its
 * CRC-32 is computed from the output and written at each of `fields` (4 bytes, little-endian)
 * before the file is hashed, so that torch's reader, which checks it, accepts the archive.
 */
export interface PlanCrcPatch {
  start: number;
  end: number;
  fields: number[];
}

/** A file of the newest checkpoint copied into the output: absolute source, name in the output. */
export interface PlanCopyFile {
  from: string;
  to: string;
}

/** A bounded unit of work: executed by one native call in one worker. */
export interface PlanChunk {
  /** Absolute input paths the ops refer to by index. */
  inputs: string[];
  /** Output file names (relative to the output directory) the ops refer to by index. */
  outputs: string[];
  ops: PlanOp[];
  /** Bytes read plus bytes written. */
  bytes: number;
}

export interface MergePlan {
  /** 2: output files may be written whole by the ops (DCP: `header` null, `crcs`), copies name their destination. */
  version: 2;
  /** The output's format: what --format asked for, else the inputs' (DCP when any input is). */
  format: OutputFormat;
  method: Method;
  alpha: number | null;
  /** The decay shape of method 'decay', else null. */
  schedule: Schedule | null;
  accumulate: Accumulate;
  dtype: OutputDTypeOption;
  /** The checksum of the output files in pma.json. */
  checksum: Checksum;
  checkpoints: PlanCheckpoint[];
  weights: { w64: number[]; w32: number[] };
  outputs: PlanOutputFile[];
  /** model.safetensors.index.json text when the output is sharded. */
  index: string | null;
  tensors: PlanTensor[];
  /** The work unit the chunks were cut at (bytes read plus written); never changes the bytes. */
  chunkSize: number;
  chunks: PlanChunk[];
  /** Files of the newest checkpoint copied as they are (model description; DCP: .metadata, common.pt ...). */
  copyFiles: PlanCopyFile[];
  /**
   * Files written with this text, by name in the output (in place of a copy of the same name):
   * config.json with its torch_dtype set to the output's dtype when --dtype changes it; Megatron's
   * latest_checkpointed_iteration.txt.
   */
  writtenFiles: Record<string, string>;
  totals: { inputBytes: number; outputBytes: number; tensors: number; merged: number; copied: number };
  /** The inputs' quantization: FP8 averaged, or another scheme's tensors copied; null when not quantized. */
  quantization: PlanQuantization | null;
  /** A merge split into parts: which part writes each output file. Null: one process writes all. */
  parts: PlanParts | null;
  notes: string[];
  /** What the user must hear even with --quiet: fewer checkpoints than asked, differing configs. */
  warnings: string[];
}

/**
 * The output files shared among the parts of a merge, the same for every part (the process's own
 * index is not in the plan). A chunk writes one file, so it belongs to that file's part.
 */
export interface PlanParts {
  count: number;
  /** The part that writes each output file, in the order of MergePlan.outputs. */
  files: number[];
}

/** The chunks part `index` runs, by index (every chunk without parts): those writing its files. */
export function chunksOfPart(plan: MergePlan, index: number): number[] {
  const parts = plan.parts;
  if (parts === null) return plan.chunks.map((_, i) => i);
  const owner = new Map(plan.outputs.map((f, i) => [f.name, parts.files[i]]));
  return plan.chunks.flatMap((c, i) => (owner.get(c.outputs[0] as string) === index ? [i] : []));
}

/** What pma.json records of the inputs' quantization (src/checkpoints/quantization.ts). */
export interface PlanQuantization {
  /** quantization_config.quant_method of the newest config.json, or null. */
  method: string | null;
  /** FP8 tensors averaged; `output` says how they are written. */
  fp8: { tensors: number; output: 'requantised' | 'dequantised' } | null;
  /** Tensors of a scheme pma cannot average, copied from the newest checkpoint (--copy-quantized). */
  copied: { scheme: string; tensors: string[] } | null;
}

/** The byte ranges an op writes: its own, and an FP8 band's new scales. */
export function opWrites(op: PlanOp): { file: number; offset: number; bytes: number }[] {
  switch (op.kind) {
    case 'copy':
      return [{ file: op.outFile, offset: op.outOffset, bytes: op.bytes }];
    case 'merge':
      return [{ file: op.outFile, offset: op.outOffset, bytes: op.count * floatSize(op.outDtype) }];
    case 'fp8': {
      const out = op.outDtype === op.inDtype ? 1 : floatSize(op.outDtype as FloatDType);
      const main = { file: op.outFile, offset: op.outOffset, bytes: op.rows * op.cols * out };
      if (!op.scale?.out) return [main];
      const scaleRows =
        op.rows === 0 ? 0 : Math.floor((op.row0 + op.rows - 1) / op.blockRows) - Math.floor(op.row0 / op.blockRows) + 1;
      const bytes = scaleRows * Math.ceil(op.cols / op.blockCols) * floatSize(op.scale.dtype);
      return [main, { file: op.scale.out.file, offset: op.scale.out.offset, bytes }];
    }
  }
}

/** Bytes an op writes. */
export function opOutputBytes(op: PlanOp): number {
  return opWrites(op).reduce((s, w) => s + w.bytes, 0);
}

/** Bytes a chunk writes. */
export function chunkOutputBytes(c: PlanChunk): number {
  return c.ops.reduce((s, op) => s + opOutputBytes(op), 0);
}
