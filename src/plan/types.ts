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
  tensor: string;
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
  outFile: number;
  outOffset: number;
  bytes: number;
  inputs: [PlanInputRange];
}

export type PlanOp = PlanMergeOp | PlanCopyOp;

export interface PlanCheckpoint {
  path: string;
  name: string;
  step: number | null;
  /** Tokens seen, when the selection was made in tokens; else null. */
  tokens: number | null;
}

export interface PlanTensor {
  name: string;
  action: 'merge' | 'copy';
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
  notes: string[];
  /** What the user must hear even with --quiet: fewer checkpoints than asked, differing configs. */
  warnings: string[];
}

/** Bytes an op writes. */
export function opOutputBytes(op: PlanOp): number {
  return op.kind === 'copy' ? op.bytes : op.count * floatSize(op.outDtype);
}

/** Bytes a chunk writes. */
export function chunkOutputBytes(c: PlanChunk): number {
  return c.ops.reduce((s, op) => s + opOutputBytes(op), 0);
}
