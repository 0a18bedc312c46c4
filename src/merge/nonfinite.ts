import { closeSync, openSync, readSync } from 'node:fs';

import { floatSize } from '../dtypes.js';
import { PmaError } from '../errors.js';
import { native, type ChunkStats } from '../native.js';
import type { MergePlan, PlanChunk, PlanMergeOp, PlanTensor } from '../plan/types.js';

export const NONFINITE_MODES = ['error', 'warn', 'skip-checkpoint'] as const;
export type NonFiniteMode = (typeof NONFINITE_MODES)[number];

export interface NonFiniteFinding {
  tensor: string;
  /** The checkpoint's path and step. */
  checkpoint: string;
  step: number | null;
  /** NaN and infinity elements seen. */
  count: number;
}

/** `length` bytes of `path` from `offset`. */
function readRange(path: string, offset: number, length: number): Buffer {
  const buf = Buffer.alloc(length);
  const fd = openSync(path, 'r');
  try {
    for (let got = 0; got < length;) {
      const n = readSync(fd, buf, got, length - got, offset + got);
      if (n === 0) throw new Error(`${path} ends before byte ${offset + length}`);
      got += n;
    }
  } finally {
    closeSync(fd);
  }
  return buf;
}

/** NaN/Inf counts reported by the engine, gathered per tensor and checkpoint across chunks. */
export class NonFiniteLog {
  private readonly counts = new Map<string, NonFiniteFinding>();
  /** Averaged tensors by output file, in offset order: built at the first finding that needs it. */
  private placed: Map<string, PlanTensor[]> | undefined;

  constructor(private readonly plan: MergePlan) {}

  add(chunk: number, found: ChunkStats['nonfinite']): void {
    const c = this.plan.chunks[chunk];
    for (const [opIndex, input, count] of found) {
      const op = c?.ops[opIndex];
      const parts =
        c && op?.kind === 'merge' && (op.tensors ?? 1) > 1
          ? this.perTensor(c, op, input, count)
          : [{ tensor: op?.tensor ?? `?op${opIndex}`, count }];
      for (const f of parts) this.note(f.tensor, input, f.count);
    }
  }

  private note(tensor: string, input: number, count: number): void {
    const ck = this.plan.checkpoints[input];
    const key = `${input}\u0000${tensor}`;
    const f = this.counts.get(key) ?? {
      tensor,
      checkpoint: ck?.path ?? `?input${input}`,
      step: ck?.step ?? null,
      count: 0,
    };
    f.count += count;
    this.counts.set(key, f);
  }

  /**
   * An op that averages several small tensors at once (src/plan/chunks.ts) reports one count for
   * all of them: its input range is read again and counted tensor by tensor with the engine's own
   * count. Such an op spans a chunk at most, so this is a short read, and only where NaN or Inf
   * was found. Should the input no longer hold what the engine saw, what is left is reported
   * against the op's tensors as a whole.
   */
  private perTensor(c: PlanChunk, op: PlanMergeOp, input: number, count: number): { tensor: string; count: number }[] {
    const inSize = floatSize(op.inDtype);
    const outSize = floatSize(op.outDtype);
    const range = op.inputs[input];
    const out: { tensor: string; count: number }[] = [];
    let left = count;
    if (range) {
      try {
        const bytes = readRange(c.inputs[range.file] as string, range.offset, op.count * inSize);
        const end = op.outOffset + op.count * outSize;
        for (const t of this.tensorsFrom(c.outputs[op.outFile] as string, op.outOffset)) {
          if (t.offset >= end) break;
          const from = ((t.offset - op.outOffset) / outSize) * inSize;
          const n = native().countNonfinite(bytes.subarray(from, from + (t.bytes / outSize) * inSize), op.inDtype);
          if (n > 0) out.push({ tensor: t.name, count: n });
          left -= n;
        }
      } catch {
        // Counted below as the op's tensors as a whole.
      }
    }
    if (left > 0 || out.length === 0) {
      const others = (op.tensors ?? 1) - 1;
      out.push({ tensor: `${op.tensor} or one of the ${others} tensor(s) after it`, count: left > 0 ? left : count });
    }
    return out;
  }

  /** The averaged tensors of output file `file` from offset `offset` on, in offset order. */
  private *tensorsFrom(file: string, offset: number): Generator<PlanTensor> {
    if (!this.placed) {
      this.placed = new Map();
      for (const t of this.plan.tensors) {
        if (t.action !== 'merge' || t.bytes === 0) continue;
        let list = this.placed.get(t.file);
        if (!list) this.placed.set(t.file, (list = []));
        list.push(t);
      }
      for (const list of this.placed.values()) list.sort((a, b) => a.offset - b.offset);
    }
    const list = this.placed.get(file) ?? [];
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((list[mid] as PlanTensor).offset < offset) lo = mid + 1;
      else hi = mid;
    }
    for (let i = lo; i < list.length; i++) yield list[i] as PlanTensor;
  }

  get any(): boolean {
    return this.counts.size > 0;
  }

  findings(): NonFiniteFinding[] {
    return [...this.counts.values()].sort(
      (a, b) => a.checkpoint.localeCompare(b.checkpoint) || a.tensor.localeCompare(b.tensor),
    );
  }

  /** Each checkpoint with NaN or Inf, and what was found in it ("NaN or Inf values (3 in a.w, ...)"). */
  byCheckpoint(): Map<string, string> {
    const found = new Map<string, string[]>();
    for (const f of this.findings())
      found.set(f.checkpoint, [...(found.get(f.checkpoint) ?? []), `${f.count} in ${f.tensor}`]);
    return new Map([...found].map(([ck, what]) => [ck, `NaN or Inf values (${what.join(', ')})`]));
  }

  /** "12 in model.layers.3.mlp.weight of .../checkpoint-3000, ..." (the first few). */
  describe(limit = 5): string {
    const all = this.findings();
    const shown = all.slice(0, limit).map((f) => `${f.count} in ${f.tensor} of ${f.checkpoint}`);
    return shown.join(', ') + (all.length > limit ? `, and ${all.length - limit} more` : '');
  }

  error(): PmaError {
    const first = this.findings()[0];
    return new PmaError(
      'E_NONFINITE',
      `NaN or Inf values in the inputs: ${this.describe()}; the merge stopped before writing its output (a checkpoint from a loss spike would poison the average). Pass --on-nonfinite skip-checkpoint to leave those checkpoints out, or warn to merge them anyway`,
      first ? { file: first.checkpoint, tensor: first.tensor } : {},
    );
  }
}
