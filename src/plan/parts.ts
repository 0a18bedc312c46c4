import { PmaError } from '../errors.js';
import * as v from '../validate.js';
import type { MergePlan } from './types.js';

/**
 * One merge split into N parts, each a plain pma process on its own machine (docs/parts.md). Which part a process is comes from `--part I/N` or
 * from the scheduler that started it; which output files a part writes is decided here, the same
 * way by every part, from the plan alone.
 */
export interface PartSpec {
  /** 0-based. */
  index: number;
  count: number;
  /** Where the part came from, for the plan to say: "--part 2/4", "SLURM_ARRAY_TASK_ID=5 ...". */
  source: string;
}

type Env = Readonly<Record<string, string | undefined>>;

/** A non-negative integer from the environment variable `name`, or E_USAGE naming it. */
function envInt(env: Env, name: string, min: number): number {
  const raw = env[name];
  const n = raw !== undefined && /^\d+$/.test(raw.trim()) ? Number(raw) : NaN;
  if (!Number.isSafeInteger(n) || n < min) {
    throw new PmaError('E_USAGE', `--part auto: ${name}=${raw ?? ''} is not an integer >= ${min}`, { option: 'part' });
  }
  return n;
}

const has = (env: Env, name: string) => env[name] !== undefined && env[name] !== '';

/**
 * The part from the scheduler's environment, in this order: a Slurm job array
 * (SLURM_ARRAY_TASK_ID, SLURM_ARRAY_TASK_COUNT, SLURM_ARRAY_TASK_MIN), Slurm tasks under srun
 * (SLURM_PROCID, SLURM_NTASKS), a Kubernetes Indexed Job (JOB_COMPLETION_INDEX, with `parts`:
 * Kubernetes does not export the count), torchrun (RANK, WORLD_SIZE).
 */
function partFromEnv(env: Env, parts: number | undefined): PartSpec {
  let index: number;
  let count: number;
  let source: string;
  if (has(env, 'SLURM_ARRAY_TASK_ID')) {
    const id = envInt(env, 'SLURM_ARRAY_TASK_ID', 0);
    const min = has(env, 'SLURM_ARRAY_TASK_MIN') ? envInt(env, 'SLURM_ARRAY_TASK_MIN', 0) : 0;
    count = envInt(env, 'SLURM_ARRAY_TASK_COUNT', 1);
    index = id - min;
    source = `SLURM_ARRAY_TASK_ID=${id}, SLURM_ARRAY_TASK_MIN=${min}, SLURM_ARRAY_TASK_COUNT=${count}`;
    if (index < 0 || index >= count) {
      throw new PmaError(
        'E_USAGE',
        `--part auto: ${source} is not one of ${count} consecutive tasks (an array with a step or a limit such as --array=0-15:2?); submit --array=0-${count - 1}`,
        { option: 'part' },
      );
    }
  } else if (has(env, 'SLURM_PROCID') && has(env, 'SLURM_NTASKS')) {
    index = envInt(env, 'SLURM_PROCID', 0);
    count = envInt(env, 'SLURM_NTASKS', 1);
    source = `SLURM_PROCID=${index}, SLURM_NTASKS=${count}`;
  } else if (has(env, 'JOB_COMPLETION_INDEX')) {
    index = envInt(env, 'JOB_COMPLETION_INDEX', 0);
    if (parts === undefined) {
      throw new PmaError(
        'E_USAGE',
        `--part auto: JOB_COMPLETION_INDEX=${index} (a Kubernetes Indexed Job) needs --parts N, the Job's completions: Kubernetes does not export the count`,
        { option: 'parts' },
      );
    }
    count = parts;
    source = `JOB_COMPLETION_INDEX=${index}, --parts ${parts}`;
  } else if (has(env, 'RANK') && has(env, 'WORLD_SIZE')) {
    index = envInt(env, 'RANK', 0);
    count = envInt(env, 'WORLD_SIZE', 1);
    source = `RANK=${index}, WORLD_SIZE=${count}`;
  } else {
    throw new PmaError(
      'E_USAGE',
      '--part auto: no scheduler environment found (SLURM_ARRAY_TASK_ID, SLURM_PROCID, JOB_COMPLETION_INDEX or RANK); pass --part I/N',
      { option: 'part' },
    );
  }
  if (parts !== undefined && parts !== count) {
    throw new PmaError('E_USAGE', `--part auto: --parts ${parts} disagrees with ${source}`, { option: 'parts' });
  }
  if (index >= count) {
    throw new PmaError('E_USAGE', `--part auto: part ${index} of ${count} (${source}) does not exist`, {
      option: 'part',
    });
  }
  return { index, count, source };
}

/**
 * Which part this process is: `value` is "I/N" (I 0-based) or "auto" (the scheduler's
 * environment `env`); `parts` is --parts N, needed by a Kubernetes Indexed Job.
 */
export function resolvePart(value: unknown, env: Env, parts?: unknown): PartSpec {
  const n = parts === undefined ? undefined : v.integer('parts', parts, 1, 65_536);
  if (value === 'auto') return partFromEnv(env, n);
  const m = typeof value === 'string' ? /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(value) : null;
  const index = m ? Number(m[1]) : NaN;
  const count = m ? Number(m[2]) : NaN;
  if (!m || count < 1 || count > 65_536 || index >= count) {
    throw v.invalid('part', '"auto" or I/N with 0 <= I < N <= 65536 (e.g. 0/4)', value);
  }
  if (n !== undefined && n !== count) {
    throw new PmaError('E_USAGE', `--parts ${n} disagrees with --part ${index}/${count}`, { option: 'parts' });
  }
  return { index, count, source: `--part ${index}/${count}` };
}

/**
 * Output files shared among `count` parts by bytes: largest file first, each to the part with
 * the fewest bytes so far (the lowest index on a tie). Every part computes the same answer from
 * the same plan. Returns the part of each file, in the files' order.
 */
export function assignFiles(sizes: readonly number[], count: number): number[] {
  const load = new Array<number>(count).fill(0);
  const part = new Array<number>(sizes.length).fill(0);
  const order = sizes.map((_, i) => i).sort((a, b) => (sizes[b] as number) - (sizes[a] as number) || a - b);
  for (const f of order) {
    let best = 0;
    for (let p = 1; p < count; p++) if ((load[p] as number) < (load[best] as number)) best = p;
    part[f] = best;
    load[best] = (load[best] as number) + (sizes[f] as number);
  }
  return part;
}

/** The largest part's bytes over the mean part's: 1 is a perfect balance. */
export function imbalance(sizes: readonly number[], part: readonly number[], count: number): number {
  const load = new Array<number>(count).fill(0);
  part.forEach((p, f) => (load[p] = (load[p] as number) + (sizes[f] as number)));
  const total = load.reduce((a, b) => a + b, 0);
  return total === 0 ? 1 : Math.max(...load) / (total / count);
}

/** "part 1 of 4 (--part 1/4): 3 of 12 output files, 1.2e9 of 4.8e9 bytes; the largest part 1.02x the mean". */
export function describePart(plan: MergePlan, part: PartSpec): string {
  const files = plan.parts?.files ?? [];
  const sizes = plan.outputs.map((f) => f.size);
  const mine = plan.outputs.filter((_, i) => files[i] === part.index);
  const bytes = mine.reduce((s, f) => s + f.size, 0);
  const total = sizes.reduce((s, b) => s + b, 0);
  return `part ${part.index} of ${part.count} (${part.source}): ${mine.length} of ${plan.outputs.length} output file(s), ${bytes} of ${total} bytes; the largest part writes ${imbalance(sizes, files, part.count).toFixed(2)}x the mean`;
}
