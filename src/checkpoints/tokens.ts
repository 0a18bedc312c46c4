import { join } from 'node:path';

import { PmaError } from '../errors.js';
import { readHeader } from '../safetensors/header.js';
import { readShardIndex } from '../safetensors/shard-index.js';
import type { CheckpointRef } from './discover.js';
import { isJsonObject, readJsonFile } from './json-file.js';

/** Token-based selection: what the user asked for, in tokens. */
export interface TokenSelection {
  /** Tokens per optimizer step; null: read each checkpoint's own count. */
  perStep: number | null;
  /** Keep checkpoints at least this many tokens apart, walking back from the newest. */
  interval: number | null;
  /** Keep checkpoints within this many tokens of the newest (newest - window, newest]. */
  window: number | null;
}

export interface TokenCount {
  tokens: number;
  /** Where the count came from, for the plan's notes. */
  source: string;
}

/** 8e9 -> "8B", 5.25e9 -> "5.25B", 1.2e12 -> "1.2T": the suffixes --interval and --window take. */
export function formatTokens(n: number): string {
  for (const [unit, size] of [
    ['T', 1e12],
    ['B', 1e9],
    ['M', 1e6],
    ['K', 1e3],
  ] as const) {
    if (n >= size) return `${Number((n / size).toPrecision(4))}${unit}`;
  }
  return String(n);
}

async function jsonFile(path: string): Promise<Record<string, unknown> | null> {
  const r = await readJsonFile(path);
  return r && isJsonObject(r.value) ? r.value : null;
}

const positive = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v > 0;

/**
 * How many tokens a checkpoint had seen: step x tokens-per-step when given, else the Hugging Face
 * Trainer's trainer_state.json (num_input_tokens_seen), else config.json's consumed_tokens or
 * tokens (what Megatron-style converters write), else the same keys in the safetensors header's
 * __metadata__.
 */
export async function checkpointTokens(
  ref: CheckpointRef,
  perStep: number | null,
  sharedDir = false,
): Promise<TokenCount> {
  if (perStep !== null) {
    if (ref.step === null) {
      throw new PmaError('E_USAGE', `--tokens-per-step needs step numbers, but ${ref.path} carries none`, {
        file: ref.path,
      });
    }
    return { tokens: ref.step * perStep, source: 'step x --tokens-per-step' };
  }
  // Files that share a directory (step-100.safetensors, step-200.safetensors, ...) cannot each
  // own its trainer_state.json or config.json: only their own metadata counts.
  if (!sharedDir) {
    const state = await jsonFile(join(ref.dir, 'trainer_state.json'));
    if (positive(state?.num_input_tokens_seen))
      return { tokens: state.num_input_tokens_seen, source: 'trainer_state.json num_input_tokens_seen' };
    const config = await jsonFile(join(ref.dir, 'config.json'));
    for (const key of ['consumed_tokens', 'tokens'] as const) {
      if (positive(config?.[key])) return { tokens: config[key], source: `config.json ${key}` };
    }
  }
  // The safetensors header's __metadata__ (string values), of the first weights file.
  const first =
    ref.layout.kind === 'single'
      ? ref.layout.file
      : ref.layout.kind === 'sharded'
        ? join(ref.dir, (await readShardIndex(ref.layout.index)).shards[0] ?? '')
        : null;
  const metadata = first === null ? null : ((await readHeader(first).catch(() => null))?.metadata ?? null);
  for (const key of ['consumed_tokens', 'tokens'] as const) {
    const n = Number(metadata?.[key]);
    if (positive(n)) return { tokens: n, source: `safetensors metadata ${key}` };
  }
  throw new PmaError(
    'E_INPUT',
    `cannot tell how many tokens ${ref.path} had seen: give --tokens-per-step, or record num_input_tokens_seen in its trainer_state.json (or consumed_tokens in config.json or in the safetensors metadata)`,
    { file: ref.path },
  );
}

/**
 * Keeps, walking back from the newest, the checkpoints inside the window and at least `interval`
 * tokens apart. Gaps that are not the interval, and a window the run does not fill, are reported
 * in the notes rather than rounded away.
 */
export async function selectByTokens<T extends CheckpointRef>(
  refs: T[],
  sel: TokenSelection,
): Promise<{ selected: (T & { tokens: number })[]; notes: string[] }> {
  const perDir = new Map<string, number>();
  for (const r of refs) perDir.set(r.dir, (perDir.get(r.dir) ?? 0) + 1);
  const counted = await Promise.all(
    refs.map(async (r) => ({ ref: r, count: await checkpointTokens(r, sel.perStep, (perDir.get(r.dir) ?? 0) > 1) })),
  );
  const notes = [`tokens per checkpoint from ${[...new Set(counted.map((c) => c.count.source))].join(', ')}`];
  counted.sort((a, b) => a.count.tokens - b.count.tokens);
  for (let i = 1; i < counted.length; i++) {
    const [a, b] = [counted[i - 1], counted[i]] as [(typeof counted)[number], (typeof counted)[number]];
    if (a.count.tokens === b.count.tokens) {
      throw new PmaError(
        'E_INPUT',
        `${a.ref.path} and ${b.ref.path} both report ${formatTokens(a.count.tokens)} tokens (${b.count.source}): a window in tokens cannot tell them apart`,
        { file: b.ref.path },
      );
    }
  }
  const newest = counted[counted.length - 1];
  if (!newest) return { selected: [], notes };
  const kept = [newest];
  const misaligned: string[] = [];
  for (let i = counted.length - 2; i >= 0; i--) {
    const c = counted[i] as (typeof counted)[number];
    if (sel.window !== null && newest.count.tokens - c.count.tokens >= sel.window) break;
    const last = kept[kept.length - 1] as (typeof counted)[number];
    const gap = last.count.tokens - c.count.tokens;
    if (sel.interval !== null && gap < sel.interval) continue;
    if (sel.interval !== null && gap !== sel.interval)
      misaligned.push(`${c.ref.name} -> ${last.ref.name}: ${formatTokens(gap)}`);
    kept.push(c);
  }
  if (misaligned.length > 0) {
    const shown =
      misaligned.slice(0, 5).join('; ') + (misaligned.length > 5 ? `; and ${misaligned.length - 5} more` : '');
    notes.push(
      `checkpoints do not line up with the ${formatTokens(sel.interval as number)} interval; gaps kept: ${shown}`,
    );
  }
  if (sel.window !== null) {
    const oldest = counted[0] as (typeof counted)[number];
    if (newest.count.tokens - oldest.count.tokens < sel.window && kept.length === counted.length) {
      notes.push(
        `the run spans ${formatTokens(newest.count.tokens - oldest.count.tokens)} of tokens, less than the ${formatTokens(sel.window)} window`,
      );
    }
    if (sel.interval !== null && sel.window % sel.interval !== 0) {
      notes.push(
        `the ${formatTokens(sel.window)} window is not a whole number of ${formatTokens(sel.interval)} intervals`,
      );
    }
  }
  return { selected: kept.reverse().map((c) => ({ ...c.ref, tokens: c.count.tokens })), notes };
}
