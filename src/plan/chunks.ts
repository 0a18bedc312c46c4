import { isFp8, type Fp8Tensor } from '../checkpoints/quantization.js';
import { floatSize, type FloatDType } from '../dtypes.js';
import type { Run } from './runs.js';
import type { PlanChunk, PlanCopyOp, PlanFp8Op, PlanInputRange, PlanMergeOp, PlanOp, PlanTensor } from './types.js';

export interface TensorSources {
  tensor: PlanTensor;
  /** Absolute (file, offset) of the tensor in each checkpoint, oldest first; copies use the last. */
  sources: { file: string; offset: number }[];
  /**
   * A tensor stored in pieces (DCP chunks): its contiguous runs, in place of `sources`. Element
   * `run.element` of the tensor is written at `tensor.offset + run.element * output width`, or
   * at `run.out` where the run says.
   */
  runs?: Run[];
  /** An FP8 tensor: how it is scaled, where each checkpoint's scales are, and where new ones go (requantised). */
  fp8?: {
    info: Fp8Tensor;
    scaleSources: { file: string; offset: number }[];
    scaleOut: { file: string; offset: number } | null;
  };
}

/**
 * Ops per chunk at most. A chunk crosses to its worker as a structured clone, a few microseconds
 * per op: a file of a million tiny tensors in one chunk would be one long copy that no other
 * worker shares. Capped, chunks go out in turn while the workers run the earlier ones.
 */
export const MAX_OPS_PER_CHUNK = 16_384;

class ChunkBuilder {
  readonly chunks: PlanChunk[] = [];
  private cur: PlanChunk = ChunkBuilder.empty();
  private inIdx = new Map<string, number>();
  private outIdx = new Map<string, number>();
  /** The output file the open chunk writes: a chunk never writes two (see cutChunks). */
  private file: string | null = null;

  constructor(private readonly limit: number) {}

  private static empty(): PlanChunk {
    return { inputs: [], outputs: [], ops: [], bytes: 0 };
  }

  /**
   * Whole units of `perUnit` bytes for output file `file` that fit in the open chunk; flushes it
   * when none fit, or when it writes another file.
   */
  fit(perUnit: number, file: string): number {
    if (this.cur.ops.length >= MAX_OPS_PER_CHUNK || (this.file !== null && this.file !== file)) this.flush();
    this.file = file;
    const n = Math.floor((this.limit - this.cur.bytes) / perUnit);
    if (n > 0 || this.cur.ops.length === 0) return Math.max(1, n);
    this.flush();
    this.file = file;
    return Math.max(1, Math.floor(this.limit / perUnit));
  }

  input(path: string): number {
    let i = this.inIdx.get(path);
    if (i === undefined) {
      i = this.cur.inputs.push(path) - 1;
      this.inIdx.set(path, i);
    }
    return i;
  }

  output(name: string): number {
    let i = this.outIdx.get(name);
    if (i === undefined) {
      i = this.cur.outputs.push(name) - 1;
      this.outIdx.set(name, i);
    }
    return i;
  }

  /** The open chunk's last op, if any: the one a contiguous op may extend (see cutChunks). */
  last(): PlanOp | undefined {
    return this.cur.ops[this.cur.ops.length - 1];
  }

  /** Adds bytes of work to the open chunk without a new op (the last op was extended). */
  grow(bytes: number): void {
    this.cur.bytes += bytes;
    if (this.cur.bytes >= this.limit) this.flush();
  }

  add(op: PlanOp, bytes: number): void {
    this.cur.ops.push(op);
    this.cur.bytes += bytes;
    if (this.cur.bytes >= this.limit) this.flush();
  }

  flush(): void {
    if (this.cur.ops.length > 0) this.chunks.push(this.cur);
    this.cur = ChunkBuilder.empty();
    this.inIdx = new Map();
    this.outIdx = new Map();
    this.file = null;
  }
}

/**
 * Whether `last` can take `n` more units (elements of a merge, bytes of a copy) that follow it in
 * the output and in every input: the same kind and dtypes, the same files, no gap. Averaging
 * elements does not depend on which tensor holds them, so one op then does the work of two.
 */
function follows(
  last: PlanOp | undefined,
  kind: 'merge' | 'copy',
  outFile: number,
  outOffset: number,
  dtypes: { in: FloatDType; out: FloatDType } | null,
  inputs: PlanInputRange[],
): last is PlanMergeOp | PlanCopyOp {
  if (last === undefined || last.kind !== kind || last.outFile !== outFile) return false;
  let inBytes: number;
  let outBytes: number;
  if (last.kind === 'merge') {
    if (dtypes === null || last.inDtype !== dtypes.in || last.outDtype !== dtypes.out) return false;
    inBytes = last.count * floatSize(last.inDtype);
    outBytes = last.count * floatSize(last.outDtype);
  } else {
    inBytes = outBytes = last.bytes;
  }
  if (last.outOffset + outBytes !== outOffset || last.inputs.length !== inputs.length) return false;
  for (let k = 0; k < inputs.length; k++) {
    const a = last.inputs[k] as PlanInputRange;
    const b = inputs[k] as PlanInputRange;
    if (a.file !== b.file || a.offset + inBytes !== b.offset) return false;
  }
  return true;
}

export interface CutOptions {
  /**
   * One op per tensor (or piece of a tensor), never one op for several: for `pma analyze`, whose
   * statistics are per op. Default false.
   */
  opPerTensor?: boolean;
}

/**
 * Cuts the work into chunks of about `limit` bytes (read + written) and at most MAX_OPS_PER_CHUNK
 * ops. Large tensors are split on element boundaries, small ones share a chunk, so memory and
 * latency stay bounded whatever the model's size and the pool stays busy. Consecutive tensors
 * that lie one after another in every input and in the output share one op (`tensors` says how
 * many): a checkpoint of a million tiny tensors is a few ops, not a million objects to build,
 * send to workers and run. Chunk boundaries and shared ops never change the result bytes. A chunk
 * writes one output file (an FP8 weight's new scales are in its shard): the parts of a merge split
 * across machines own whole files, so each runs whole chunks.
 */
export function cutChunks(items: Iterable<TensorSources>, limit: number, options: CutOptions = {}): PlanChunk[] {
  const b = new ChunkBuilder(limit);
  const share = options.opPerTensor !== true;
  for (const { tensor: t, sources, runs, fp8 } of items) {
    if (t.bytes === 0) continue;
    if (fp8) {
      cutFp8(b, t, sources, fp8);
      continue;
    }
    const merge = t.action === 'merge';
    const inSize = merge ? floatSize(t.inDtype as FloatDType) : 1;
    const outSize = merge ? floatSize(t.outDtype as FloatDType) : 1;
    const reads = merge ? (runs?.[0]?.sources.length ?? sources.length) : 1;
    const perUnit = inSize * reads + outSize;
    // Units are elements for a merge, bytes for a copy; a tensor in pieces is cut piece by piece.
    const unitsPerElement = merge ? 1 : t.bytes / t.shape.reduce((a, c) => a * c, 1);
    const pieces: Run[] = runs ?? [{ element: 0, count: t.bytes / outSize / unitsPerElement, sources }];
    for (const piece of pieces) {
      const start = piece.element * unitsPerElement;
      const units = piece.count * unitsPerElement;
      for (let done = 0; done < units;) {
        const outAt = (d: number) => (piece.out ? piece.out.offset + d * outSize : t.offset + (start + d) * outSize);
        let n = Math.min(units - done, b.fit(perUnit, piece.out?.file ?? t.file));
        const cut = n < units - done;
        if (cut) n = alignedCut(outAt(done), n, outSize);
        const inputs = (merge ? piece.sources : piece.sources.slice(-1)).map((s) => ({
          file: b.input(s.file),
          offset: s.offset + done * inSize,
        }));
        const outFile = b.output(piece.out?.file ?? t.file);
        const outOffset = outAt(done);
        // A tensor in pieces (a DCP tensor's runs, written over the newest checkpoint's) is left
        // one op per piece: where its elements go is not one range of the output per tensor.
        const last = share && runs === undefined ? b.last() : undefined;
        const dtypes = merge ? { in: t.inDtype as FloatDType, out: t.outDtype as FloatDType } : null;
        if (follows(last, merge ? 'merge' : 'copy', outFile, outOffset, dtypes, inputs)) {
          if (last.kind === 'merge') last.count += n;
          else last.bytes += n;
          if (done === 0) last.tensors = (last.tensors ?? 1) + 1; // a tensor's later pieces are not new ones
          b.grow(n * perUnit);
        } else if (merge) {
          b.add(
            {
              kind: 'merge',
              tensor: t.name,
              outFile,
              outOffset,
              inDtype: t.inDtype as FloatDType,
              outDtype: t.outDtype as FloatDType,
              count: n,
              inputs,
            },
            n * perUnit,
          );
        } else {
          b.add(
            { kind: 'copy', tensor: t.name, outFile, outOffset, bytes: n, inputs: [inputs[0] as PlanInputRange] },
            n * perUnit,
          );
        }
        // The chunk ends where the piece was cut: on a 4 KiB boundary of the output (alignedCut).
        if (cut) b.flush();
        done += n;
      }
    }
  }
  b.flush();
  return b.chunks;
}

/** Output alignment of the cuts inside a tensor: the block of O_DIRECT writes (kDirectAlign). */
export const CUT_ALIGN = 4096;

/**
 * `n` units of `size` bytes from output offset `at`, fewer if that makes the cut end on a
 * CUT_ALIGN boundary. The engine writes a chunk's output directly (O_DIRECT) but its unaligned
 * ends through the page cache, and on ext4 such a write waits for every direct write in flight to
 * the file (the inode's lock): with two at each chunk boundary, the engine's `write` took 0.27-0.29
 * thread-seconds of a merge of 5 x 1 GB, 0.05 once aligned (docs/performance.md, "Aligned chunk
 * cuts and reserved output files"). Aligned, the ends of neighbouring chunks go direct too. Where
 * no cut in the range is aligned, `n` as it was.
 */
function alignedCut(at: number, n: number, size: number): number {
  const over = (at + n * size) % CUT_ALIGN;
  if (over % size !== 0 || over / size >= n) return n;
  return n - over / size;
}

/**
 * An FP8 tensor in bands of whole rows; a requantised one in bands of one block row, since its
 * new scales need every value of a block (a per-tensor scale: the whole tensor in one op).
 */
function cutFp8(
  b: ChunkBuilder,
  t: PlanTensor,
  sources: { file: string; offset: number }[],
  fp8: NonNullable<TensorSources['fp8']>,
): void {
  const { info: f, scaleSources, scaleOut } = fp8;
  const requantise = isFp8(t.outDtype);
  const outSize = requantise ? 1 : floatSize(t.outDtype as FloatDType);
  const scaleSize = f.scaleDtype ? floatSize(f.scaleDtype) : 0;
  const scaleCols = Math.ceil(f.cols / f.blockCols);
  const unitRows = requantise && f.scale ? f.blockRows : 1;
  const perUnit = unitRows * f.cols * (sources.length + outSize) + scaleCols * scaleSize * (sources.length + 1);
  for (let row = 0; row < f.rows;) {
    // A requantised band is one block row: the engine holds its accumulators whole, and one
    // block row of them stays in the CPU's cache where a chunk's worth would not.
    const fit = b.fit(perUnit, t.file);
    const rows = Math.min(f.rows - row, (requantise && f.scale ? 1 : fit) * unitRows);
    const scaleAt = Math.floor(row / f.blockRows) * scaleCols * scaleSize;
    const op: PlanFp8Op = {
      kind: 'fp8',
      tensor: t.name,
      outFile: b.output(t.file),
      outOffset: t.offset + row * f.cols * outSize,
      inDtype: f.dtype,
      outDtype: t.outDtype as PlanFp8Op['outDtype'],
      rows,
      cols: f.cols,
      row0: row,
      blockRows: f.blockRows,
      blockCols: f.blockCols,
      inputs: sources.map((s) => ({ file: b.input(s.file), offset: s.offset + row * f.cols })),
      scale:
        f.scaleDtype === null
          ? null
          : {
              dtype: f.scaleDtype,
              inputs: scaleSources.map((s) => ({ file: b.input(s.file), offset: s.offset + scaleAt })),
              out: requantise && scaleOut ? { file: b.output(scaleOut.file), offset: scaleOut.offset + scaleAt } : null,
            },
    };
    b.add(op, Math.ceil(rows / unitRows) * perUnit);
    row += rows;
  }
}
