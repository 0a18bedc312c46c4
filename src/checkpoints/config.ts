import { join } from 'node:path';

import { torchName } from '../dcp/torch-dtypes.js';
import { outputDtypeFor, type OutputDTypeOption } from '../dtypes.js';
import { PmaError } from '../errors.js';
import { isJsonObject, readJsonFile } from './json-file.js';

/**
 * A checkpoint's config.json (the Hugging Face model description): parsed when it is a JSON
 * object, else why it could not be read as one (a sentence naming the file). Checkpoints without
 * one have none.
 */
export type ModelConfig =
  { path: string; json: Record<string, unknown> } | { path: string; json: null; problem: string } | null;

export const CONFIG_NAME = 'config.json';

export async function readConfig(dir: string): Promise<ModelConfig> {
  const path = join(dir, CONFIG_NAME);
  let r;
  try {
    r = await readJsonFile(path);
  } catch (e) {
    if (!(e instanceof PmaError) || e.code !== 'E_INPUT') throw e;
    return { path, json: null, problem: e.message };
  }
  if (r === null) return null;
  return isJsonObject(r.value)
    ? { path, json: r.value }
    : { path, json: null, problem: `${path} is not a JSON object` };
}

/** Keys that say which model a config describes: checkpoints that disagree on them are not one model. */
export const IDENTITY_KEYS = ['model_type', 'architectures'] as const;
// Keys that differ between saves of one model without changing it: where it was loaded from, the
// library version, and the training progress some trainers record (tokens.ts reads the last two).
const IGNORED_KEYS = new Set([
  '_name_or_path',
  'transformers_version',
  'step',
  'global_step',
  'iteration',
  'consumed_samples',
  'consumed_tokens',
  'tokens',
]);

/** One key's values across checkpoints: each distinct value with the checkpoints that hold it. */
export interface ConfigDifference {
  key: string;
  values: { value: string; names: string[] }[];
}

/** How a key missing from a config reads in a difference. */
export const ABSENT = '(absent)';

/** JSON with sorted object keys, so that two equal values give the same text. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (typeof v === 'object' && v !== null) {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical(o[k])}`)
      .join(',')}}`;
  }
  return v === undefined ? ABSENT : JSON.stringify(v);
}

/** The top-level keys whose values differ between the configs (oldest first, as given). */
export function configDifferences(configs: { name: string; json: Record<string, unknown> }[]): ConfigDifference[] {
  const keys = new Set(configs.flatMap((c) => Object.keys(c.json)));
  const out: ConfigDifference[] = [];
  for (const key of [...keys].sort()) {
    if (IGNORED_KEYS.has(key)) continue;
    const byValue = new Map<string, string[]>();
    for (const c of configs) {
      const v = canonical(c.json[key]);
      byValue.set(v, [...(byValue.get(v) ?? []), c.name]);
    }
    if (byValue.size > 1) out.push({ key, values: [...byValue].map(([value, names]) => ({ value, names })) });
  }
  return out;
}

/** "rope_theta: 10000 in checkpoint-1000; 500000 in checkpoint-2000, checkpoint-3000". */
export function describeDifference(d: ConfigDifference): string {
  const short = (s: string) => (s.length > 60 ? `${s.slice(0, 57)}...` : s);
  return `${d.key}: ${d.values.map((v) => `${short(v.value)} in ${v.names.join(', ')}`).join('; ')}`;
}

/**
 * config.json with its dtype keys (`torch_dtype`, and `dtype`, the newer name, when present; at
 * the top level and in nested sub-model configs such as text_config) set to the output's dtype.
 */
export function withDtype(
  json: Record<string, unknown>,
  dtype: Exclude<OutputDTypeOption, 'keep'>,
): Record<string, unknown> {
  // The torch names Hugging Face writes there ("bfloat16") are DCP's.
  const name = torchName(outputDtypeFor('F32', dtype)) as string;
  const set = (o: Record<string, unknown>, top: boolean): Record<string, unknown> => {
    const r: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(o)) {
      if ((k === 'torch_dtype' || k === 'dtype') && (typeof v === 'string' || v === null)) r[k] = name;
      else if (top && k.endsWith('_config') && typeof v === 'object' && v !== null && !Array.isArray(v))
        r[k] = set(v as Record<string, unknown>, false);
      else r[k] = v;
    }
    if (top && !('torch_dtype' in r) && !('dtype' in r)) r.torch_dtype = name;
    return r;
  };
  return set(json, true);
}
