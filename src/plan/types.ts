import type { DType, FloatDType, OutputDTypeOption } from '../dtypes.js';
import type { Accumulate, NativeOp } from '../native.js';
import type { Method, Schedule } from '../weights.js';

/**
 * A merge plan is plain data: which bytes of which files, with which weights, go where. It can be
 * printed (--dry-run), serialised, checked without the addon and executed by any engine.
 */
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
  name: string;
  size: number;
  /** The padded JSON header; the file is its 8-byte length, this, then the data. */
  header: string;
  tensors: number;
}

/** A bounded unit of work: executed by one native call in one worker. */
export interface PlanChunk {
  /** Absolute input paths the ops refer to by index. */
  inputs: string[];
  /** Output file names (relative to the output directory) the ops refer to by index. */
  outputs: string[];
  ops: NativeOp[];
  /** Bytes read plus bytes written. */
  bytes: number;
}

export interface MergePlan {
  version: 1;
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
  chunks: PlanChunk[];
  /** Model-description files of the newest checkpoint to copy (absolute paths). */
  copyFiles: string[];
  totals: { inputBytes: number; outputBytes: number; tensors: number; merged: number; copied: number };
  notes: string[];
}

export type { FloatDType };
