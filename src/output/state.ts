import { createHash } from 'node:crypto';
import { open, readFile } from 'node:fs/promises';

import { PmaError } from '../errors.js';
import type { MergePlan } from '../plan/types.js';
import { utf8Pieces } from '../util/utf8-pieces.js';
import { stampChange, type InputStamp } from './stamps.js';

/**
 * A partial merge's identity (`.pma-resume/state.json`): which plan it executes and what its
 * inputs were, so that a resume continues only the same merge over the same bytes.
 */
export interface PartialState {
  version: number;
  /** SHA-256 of the plan: same arguments and same input headers give the same plan. */
  fingerprint: string;
  chunks: number;
  /** The plan's work unit: a resume cuts its plan the same way, whatever --chunk-size says now. */
  chunkSize?: number;
  /** What the merge was asked for, to name the argument that differs when a resume is refused. */
  args?: MergeArgs;
  inputs: InputStamp[];
  startedAt: string;
}

/** The parts of a plan that the user's arguments decide, each under the flags that set it. */
type MergeArgs = Record<string, string>;

const OUTPUT_FILES = '--max-shard-size (the output files)';

function mergeArgs(plan: MergePlan): MergeArgs {
  return {
    'the checkpoints (the run, --last, --every, steps, tokens)': plan.checkpoints.map((c) => c.path).join(', '),
    '--method': plan.method,
    '--alpha': String(plan.alpha),
    '--schedule': String(plan.schedule),
    '--weights': plan.weights.w64.join(','),
    '--dtype': plan.dtype,
    '--accumulate': plan.accumulate,
    '--checksum': plan.checksum,
    [OUTPUT_FILES]: plan.outputs.map((f) => `${f.name} ${f.size}`).join(', '),
    ...(plan.parts ? { '--part (the number of parts)': String(plan.parts.count) } : {}),
  };
}

/** "--dtype (bf16 then, f32 now)", for each argument that differs; empty when none does. */
function changedArgs(then: MergeArgs, now: MergeArgs): string[] {
  const short = (s: string | undefined) => (s === undefined ? '?' : s.length > 40 ? `${s.slice(0, 37)}...` : s);
  const changed = Object.keys(now).filter((k) => then[k] !== now[k]);
  // Output files that differ because of another argument (--dtype) are not a cause of their own.
  const causes = changed.length > 1 ? changed.filter((k) => k !== OUTPUT_FILES) : changed;
  return causes.map((k) => `${k} (${short(then[k])} then, ${short(now[k])} now)`);
}

/**
 * 2: chunks cut inside a tensor end on 4 KiB boundaries of the output (src/plan/chunks.ts), so a
 * partial of version 1 numbers its chunks differently.
 */
const STATE_VERSION = 2;

/**
 * The SHA-256 of the plan's JSON (JSON.stringify, UTF-8) less what it says to the user (notes,
 * warnings), which is not what it writes, and less its list of tensors, which the output files'
 * headers and the ops already say; each output header enters as its own SHA-256. A plan of a
 * million tensors is then hashed from its headers' bytes (tens of MB), not from hundreds of MB of
 * JSON escaped and built piece by piece.
 */
export function planFingerprint(plan: MergePlan): string {
  const { notes: _notes, warnings: _warnings, tensors: _tensors, outputs, ...work } = plan;
  const h = new JsonHash();
  h.object({
    ...work,
    outputs: outputs.map((f) => ({
      ...f,
      header: f.header === null ? null : sha256Hex(f.header),
    })),
  });
  return h.digest();
}

/** The SHA-256 of a string's UTF-8 bytes, encoded a piece at a time. */
function sha256Hex(text: string): string {
  const h = createHash('sha256');
  for (const piece of utf8Pieces(text)) h.update(piece);
  return h.digest('hex');
}

/**
 * Feeds a hash the bytes of JSON.stringify(value) without making that text: the JSON of a plan
 * of a million tensors is hundreds of MB, and a buffer that large is slow to allocate and touch.
 * The top-level object and its arrays are written here, element by element, their elements by
 * JSON.stringify, in pieces of about a MiB.
 */
class JsonHash {
  private readonly h = createHash('sha256');
  private pending: string[] = [];
  private length = 0;

  private put(s: string): void {
    this.pending.push(s);
    this.length += s.length;
    if (this.length >= 2 ** 20) this.flush();
  }

  private flush(): void {
    this.h.update(this.pending.join(''), 'utf8');
    this.pending = [];
    this.length = 0;
  }

  /** As JSON.stringify: members whose value has no JSON (undefined, functions) are left out. */
  object(o: Record<string, unknown>): void {
    this.put('{');
    let first = true;
    for (const [k, v] of Object.entries(o)) {
      const text = Array.isArray(v) ? null : JSON.stringify(v);
      if (text === undefined) continue;
      this.put(`${first ? '' : ','}${JSON.stringify(k)}:`);
      first = false;
      if (text === null) this.array(v as unknown[]);
      else this.put(text);
    }
    this.put('}');
  }

  /** As JSON.stringify: an element without JSON is null. */
  private array(a: unknown[]): void {
    this.put('[');
    a.forEach((x, i) => this.put(`${i === 0 ? '' : ','}${JSON.stringify(x) ?? 'null'}`));
    this.put(']');
  }

  digest(): string {
    this.flush();
    return this.h.digest('hex');
  }
}

export function newState(plan: MergePlan, stamps: InputStamp[]): PartialState {
  return {
    version: STATE_VERSION,
    fingerprint: planFingerprint(plan),
    chunks: plan.chunks.length,
    chunkSize: plan.chunkSize,
    args: mergeArgs(plan),
    inputs: stamps,
    startedAt: new Date().toISOString(),
  };
}

/** Writes the state file (O_EXCL) and flushes it. */
export async function writeState(path: string, state: PartialState): Promise<void> {
  const fh = await open(path, 'wx');
  try {
    await fh.writeFile(`${JSON.stringify(state, null, 2)}\n`);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * Refuses to resume the partial `dir` unless its state names this plan and unchanged inputs;
 * `startOver` is the advice that ends a refusal.
 */
export async function checkResumable(
  dir: string,
  statePath: string,
  plan: MergePlan,
  stamps: InputStamp[],
  startOver = 'pass --force to start over',
): Promise<void> {
  const state = await readState(statePath);
  if (!state) {
    throw new PmaError(
      'E_OUTPUT',
      `${dir} has no readable resume state (it was not made by this version of pma, or its creation was cut short); ${startOver === 'pass --force to start over' ? 'remove it or pass --force to start over' : startOver}`,
      { file: dir },
    );
  }
  if (state.version !== STATE_VERSION) {
    throw new PmaError(
      'E_OUTPUT',
      `the partial merge in ${dir} was started by another version of pma, which cuts the work into other chunks; ${startOver}`,
      { file: dir },
    );
  }
  if (state.fingerprint !== planFingerprint(plan) || state.chunks !== plan.chunks.length) {
    const changed = state.args ? changedArgs(state.args, mergeArgs(plan)) : [];
    const what = changed.length > 0 ? `different arguments: ${changed.join('; ')}` : 'different input headers';
    throw new PmaError(
      'E_OUTPUT',
      `the partial merge in ${dir} was started with ${what}; resume it with the original arguments, or ${startOver}`,
      { file: dir },
    );
  }
  const now = new Map(stamps.map((s) => [s.path, s]));
  for (const s of state.inputs) {
    const what = stampChange(s, now.get(s.path), 'is no longer an input');
    if (what)
      throw new PmaError(
        'E_INPUT',
        `cannot resume ${dir}: input ${s.path} ${what} since the merge began; ${startOver}`,
        { file: s.path },
      );
  }
}

/** The state file of a partial, or null when it is missing or unreadable. */
export async function readState(path: string): Promise<PartialState | null> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as PartialState;
  } catch {
    return null;
  }
}
