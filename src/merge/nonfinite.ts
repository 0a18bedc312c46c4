import { PmaError } from '../errors.js';
import type { ChunkStats } from '../native.js';
import type { MergePlan } from '../plan/types.js';

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

/** NaN/Inf counts reported by the engine, gathered per tensor and checkpoint across chunks. */
export class NonFiniteLog {
  private readonly counts = new Map<string, NonFiniteFinding>();

  constructor(private readonly plan: MergePlan) {}

  add(chunk: number, found: ChunkStats['nonfinite']): void {
    const ops = this.plan.chunks[chunk]?.ops ?? [];
    for (const [op, input, count] of found) {
      const tensor = ops[op]?.tensor ?? `?op${op}`;
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
