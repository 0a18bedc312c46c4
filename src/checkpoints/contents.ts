import type { StorageMember } from '../dcp/payload.js';
import type { DType } from '../dtypes.js';

/** A tensor of a checkpoint layout: which shard holds it, and where in that shard's data buffer. */
export interface LayoutTensor {
  name: string;
  dtype: DType;
  shape: number[];
  /** Index into LoadedCheckpoint.files; absent: the first (a single-file checkpoint's header entries as they are). */
  shard?: number;
  /** Offset in the shard's data buffer (add the file's dataStart for the absolute offset). */
  begin: number;
  bytes: number;
  /**
   * A DCP tensor's chunks (boxes of the whole tensor) and where each one's elements start; such a
   * tensor is not contiguous in one file (shard and begin are unused).
   */
  chunks?: LocatedChunk[];
}

/** A box [offsets, offsets + sizes) of a tensor, stored contiguously (row-major) at `offset` of `file`. */
export interface LocatedChunk {
  offsets: number[];
  sizes: number[];
  file: string;
  offset: number;
  /** A DCP chunk's zip member (its elements and maybe more), whose CRC-32 a DCP output rewrites. */
  member?: StorageMember;
}

/**
 * What a checkpoint holds, apart from where its files are. Checkpoints of one run whose index and
 * headers are byte-identical share one layout object: parsed once, and trivially consistent.
 */
export interface CheckpointContents {
  /** In file order, then data order. */
  tensors: LayoutTensor[];
  byName: ReadonlyMap<string, LayoutTensor>;
  /** A single-file checkpoint's header text, when it is pma's own layout of `tensors` (SafetensorsHeader.pmaText). */
  pmaText?: string;
  totalBytes: number;
}
