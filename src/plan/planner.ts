import { basename } from 'node:path';

import { companionFiles } from '../checkpoints/companions.js';
import {
  ABSENT,
  CONFIG_NAME,
  IDENTITY_KEYS,
  configDifferences,
  describeDifference,
  readConfig,
  withDtype,
} from '../checkpoints/config.js';
import { discover, type CheckpointRef } from '../checkpoints/discover.js';
import {
  LoadCache,
  checkConsistent,
  loadCheckpoint,
  locate,
  type LayoutTensor,
  type LoadedCheckpoint,
} from '../checkpoints/load.js';
import { globMatcher } from '../checkpoints/globs.js';
import { QUANTIZATION_KEY, isFp8, readQuantization, type Quantization } from '../checkpoints/quantization.js';
import { selectCheckpoints } from '../checkpoints/select.js';
import { isTrainingState } from '../dcp/items.js';
import { selectByTokens } from '../checkpoints/tokens.js';
import { DTYPE_BITS, isAveraged, outputDtypeFor, type DType } from '../dtypes.js';
import { PmaError } from '../errors.js';
import { layoutTensors, shardIndexJson, shardName, splitShards } from '../safetensors/writer.js';
import { cutChunks, type CutOptions, type TensorSources } from './chunks.js';
import { assignFiles, describePart } from './parts.js';
import { layoutDcpOutput } from './dcp-output.js';
import { chunkSizeFor, resolvePlanOptions, type PlanOptions, type ResolvedPlanOptions } from './options.js';
import type { MergePlan, PlanOutputFile, PlanQuantization, PlanTensor } from './types.js';
import { runsAcross } from './runs.js';
import { computeWeights } from './weights.js';

export interface PlanResult {
  plan: MergePlan;
  /** Step-named entries of the run directory that were passed over, with why. */
  skipped: { path: string; reason: string }[];
}

const elementCount = (shape: number[]): number => shape.reduce((a, b) => a * b, 1);

/** "a, b, c and 12 more": the first few of a list, for a note. */
const someNames = (names: string[], n = 3): string =>
  names.slice(0, n).join(', ') + (names.length > n ? ` and ${names.length - n} more` : '');

interface Selected {
  checkpoints: CheckpointRef[];
  skipped: PlanResult['skipped'];
  /** Tokens seen per checkpoint path, when the selection was made in tokens. */
  tokens: Map<string, number>;
  notes: string[];
  warnings: string[];
}

/** Discovery, then steps bound the run, then the token window and interval, then --every and --last. */
async function selectInputs(o: ResolvedPlanOptions): Promise<Selected> {
  const found = await discover(o.inputs);
  const { fromStep, toStep, ...rest } = o.selection;
  let pool =
    fromStep === undefined && toStep === undefined
      ? found.checkpoints
      : selectCheckpoints(found.checkpoints, { fromStep, toStep });
  const tokens = new Map<string, number>();
  const notes: string[] = [];
  if (o.tokens) {
    const r = await selectByTokens(pool, o.tokens);
    pool = r.selected;
    notes.push(...r.notes);
    for (const c of r.selected) tokens.set(c.path, c.tokens);
  }
  const checkpoints = selectCheckpoints(pool, rest);
  const warnings: string[] = [];
  if (rest.last !== undefined && checkpoints.length < rest.last) {
    warnings.push(`asked for the last ${rest.last} checkpoints, ${checkpoints.length} found`);
  }
  return { checkpoints, skipped: found.skipped, tokens, notes, warnings };
}

/**
 * Compares the checkpoints' config.json: refuses different models (model_type, architectures)
 * unless allowed, and warns about any other key that differs. Returns the warnings.
 */
async function checkConfigs(cks: LoadedCheckpoint[], allowMismatch: boolean): Promise<string[]> {
  const warnings: string[] = [];
  const parsed: { name: string; path: string; json: Record<string, unknown> }[] = [];
  for (const c of cks) {
    const cfg = await readConfig(c.dir);
    if (cfg === null) continue;
    if (cfg.json === null) warnings.push(`${cfg.problem}: not compared with the other checkpoints'`);
    else parsed.push({ name: c.name, path: cfg.path, json: cfg.json });
  }
  const distinct = new Set(parsed.map((p) => p.path));
  if (distinct.size < 2) return warnings;
  const diffs = configDifferences(parsed);
  // A config that does not say (a key absent) is no evidence of another model; two that say
  // different things are. Checkpoints quantized differently are different models too: the same
  // names hold differently encoded numbers.
  const identity = diffs.filter(
    (d) =>
      ([...IDENTITY_KEYS, QUANTIZATION_KEY] as string[]).includes(d.key) &&
      d.values.filter((v) => v.value !== ABSENT).length > 1,
  );
  const first = identity[0];
  if (first && !allowMismatch) {
    const name = first.values[0]?.names[0];
    throw new PmaError(
      'E_MISMATCH',
      `the checkpoints are of different models: config.json ${identity.map(describeDifference).join('; ')}; pass --allow-config-mismatch to merge them anyway`,
      { file: parsed.find((p) => p.name === name)?.path ?? '' },
    );
  }
  if (diffs.length > 0) {
    const newest = parsed[parsed.length - 1]?.name;
    warnings.push(
      `config.json differs between the merged checkpoints (${newest}'s is copied): ${diffs.map(describeDifference).join('; ')}`,
    );
  }
  return warnings;
}

/**
 * config.json of the output when --dtype changes the weights' dtype: its torch_dtype set to match,
 * and, when FP8 weights are written dequantised, without its quantization_config (so that the
 * output loads as the plain model it now is).
 */
async function rewrittenConfig(
  newest: LoadedCheckpoint,
  o: ResolvedPlanOptions,
  dequantised: boolean,
  warnings: string[],
) {
  const files: Record<string, string> = {};
  if (o.dtype === 'keep') return files;
  const cfg = await readConfig(newest.dir);
  if (cfg === null) return files;
  if (cfg.json === null) {
    warnings.push(`${cfg.problem}: copied unchanged, its torch_dtype not set to ${o.dtype}`);
    return files;
  }
  const json = withDtype(cfg.json, o.dtype);
  if (dequantised) delete json[QUANTIZATION_KEY];
  files[CONFIG_NAME] = `${JSON.stringify(json, null, 2)}\n`;
  return files;
}

/**
 * The newest checkpoint's quantization. A scheme pma cannot average is refused (E_QUANTIZED)
 * before anything is written, unless --copy-quantized copies its tensors from the newest.
 */
async function quantizationOf(newest: LoadedCheckpoint, o: ResolvedPlanOptions): Promise<Quantization> {
  const quant = await readQuantization(newest);
  if (quant.unknown && !o.copyQuantized) {
    const u = quant.unknown;
    const names = u.tensors.length > 0 ? `: ${someNames(u.tensors, 4)}` : '';
    throw new PmaError(
      'E_QUANTIZED',
      `${newest.name} is quantized (${u.scheme}; ${u.why}) and pma cannot average its quantized tensors${names}. Averaging the rest and copying these would make a model that is neither input; pass --copy-quantized to do exactly that, copying them from the newest checkpoint`,
      {
        file: quant.configPath ?? newest.path,
        ...(u.tensors[0] === undefined ? {} : { tensor: u.tensors[0] }),
      },
    );
  }
  if (quant.fp8.size > 0 && o.accumulate === 'f64') {
    throw new PmaError(
      'E_USAGE',
      `--accumulate f64 is not available for FP8 tensors (${someNames([...quant.fp8.keys()])}): they accumulate in f32`,
      { option: 'accumulate' },
    );
  }
  return quant;
}

/** What pma.json records of the quantization; null when the inputs are not quantized. */
function planQuantization(quant: Quantization, o: ResolvedPlanOptions): PlanQuantization | null {
  if (quant.method === null && quant.fp8.size === 0 && !quant.unknown) return null;
  return {
    method: quant.method,
    fp8:
      quant.fp8.size === 0
        ? null
        : { tensors: quant.fp8.size, output: o.dtype === 'keep' ? 'requantised' : 'dequantised' },
    copied: quant.unknown ? { scheme: quant.unknown.scheme, tensors: quant.unknown.tensors } : null,
  };
}

/**
 * Checkpoints left out after the selection (--on-nonfinite skip-checkpoint): the rest keep their
 * own explicit weights, or get the method's weights recomputed over them.
 */
function leaveOut(
  selected: CheckpointRef[],
  explicit: number[] | undefined,
  exclude: ReadonlyMap<string, string>,
): { chosen: CheckpointRef[]; weights: number[] | undefined } {
  const keep = selected.map((c) => !exclude.has(c.path));
  const chosen = selected.filter((_, i) => keep[i]);
  if (chosen.length === 0) {
    throw new PmaError(
      'E_NONFINITE',
      `every selected checkpoint was left out: ${[...exclude].map(([p, why]) => `${p} (${why})`).join(', ')}`,
    );
  }
  const weights = explicit && explicit.length === selected.length ? explicit.filter((_, i) => keep[i]) : explicit;
  return { chosen, weights };
}

/**
 * Which tensors are averaged: floating point ones and understood FP8 ones, as --average and
 * --exclude choose; never a tensor of a quantization scheme pma cannot average.
 */
function averagedBy(o: ResolvedPlanOptions, quant?: Quantization): (t: LayoutTensor) => boolean {
  const averaged = o.average === null ? () => true : globMatcher(o.average);
  const excluded = globMatcher(o.exclude);
  const unknown = new Set(quant?.unknown?.tensors ?? []);
  return (t) =>
    (isAveraged(t.dtype) || quant?.fp8.has(t.name) === true) &&
    !unknown.has(t.name) &&
    !quant?.scales.has(t.name) &&
    averaged(t.name) &&
    !excluded(t.name);
}

/**
 * The output files: the newest checkpoint's tensors (averaged ones in the output dtype), sharded
 * and laid out. Each tensor is one object, made here as the plan keeps it and placed (`file`,
 * `offset`) once its shard is laid out.
 */
function layoutOutput(
  newest: LoadedCheckpoint,
  o: ResolvedPlanOptions,
  quant: Quantization,
  notes: string[],
): Pick<MergePlan, 'outputs' | 'tensors' | 'index'> {
  const averaged = averagedBy(o, quant);
  const specs: PlanTensor[] = [];
  const tensor = (
    name: string,
    action: PlanTensor['action'],
    inDtype: DType,
    outDtype: DType,
    shape: number[],
    bytes: number,
  ): PlanTensor => ({ name, action, inDtype, outDtype, shape, file: '', offset: 0, bytes });
  for (const t of newest.contents.tensors) {
    const merge = averaged(t);
    // An FP8 tensor's scales are written by its ops when it is requantised (placed after it,
    // below), dropped when it is written dequantised, and copied with it when it is copied.
    const scaled = quant.scales.get(t.name);
    const weight = scaled && newest.contents.byName.get(scaled.name);
    if (weight && averaged(weight)) continue;
    const outDtype = merge
      ? isFp8(t.dtype) && o.dtype === 'keep'
        ? t.dtype
        : outputDtypeFor(t.dtype as never, o.dtype)
      : t.dtype;
    const bytes = merge ? (elementCount(t.shape) * DTYPE_BITS[outDtype]) / 8 : t.bytes;
    specs.push(tensor(t.name, merge ? 'merge' : 'copy', t.dtype, outDtype, t.shape, bytes));
    // A requantised FP8 weight's new scales go into the weight's shard: its ops then write one file.
    const f = merge ? quant.fp8.get(t.name) : undefined;
    const scale = f?.scale && o.dtype === 'keep' ? newest.contents.byName.get(f.scale) : undefined;
    if (scale) specs.push(tensor(scale.name, 'scale', scale.dtype, scale.dtype, scale.shape, scale.bytes));
  }
  const groups = shardsFor(specs, o, notes);
  const sharded = groups.length > 1;
  const outputs: PlanOutputFile[] = [];
  const tensors: PlanTensor[] = [];
  const weightMap = new Map<string, string>();
  for (const [i, group] of groups.entries()) {
    const name = sharded ? shardName(i, groups.length) : 'model.safetensors';
    const layout = (sharded ? null : sameLayout(group, newest)) ?? layoutTensors(group, (t) => t.outDtype);
    outputs.push({ name, size: layout.size, header: layout.json, tensors: group.length, crcs: [] });
    for (const k of layout.sequence) {
      const t = group[k] as PlanTensor;
      t.file = name;
      t.offset = layout.at[k] as number;
      tensors.push(t);
      if (sharded) weightMap.set(t.name, name);
    }
  }
  const outputBytes = tensors.reduce((s, t) => s + t.bytes, 0);
  return { outputs, tensors, index: sharded ? shardIndexJson(outputBytes, weightMap) : null };
}

/**
 * The newest checkpoint's own layout when the output is that file again: its header is pma's
 * layout of its entries (pmaText) and the output keeps every tensor, in order, with its dtype,
 * shape and size. The header's text is then the output's as it stands (a million entries not
 * written again); null otherwise.
 */
function sameLayout(
  group: PlanTensor[],
  newest: LoadedCheckpoint,
): Pick<ReturnType<typeof layoutTensors>, 'json' | 'size' | 'sequence' | 'at'> | null {
  const c = newest.contents;
  const file = newest.files[0];
  if (c.pmaText === undefined || newest.files.length !== 1 || !file || group.length !== c.tensors.length) return null;
  for (let k = 0; k < group.length; k++) {
    const t = group[k] as PlanTensor;
    const was = c.tensors[k] as LayoutTensor;
    // A plan tensor made from this layout tensor holds its very shape array.
    if (t.name !== was.name || t.outDtype !== was.dtype || t.bytes !== was.bytes || t.shape !== was.shape) return null;
  }
  return {
    json: c.pmaText,
    size: file.dataStart + c.totalBytes,
    sequence: group.map((_, k) => k),
    at: c.tensors.map((t) => file.dataStart + t.begin),
  };
}

/** An FP8 weight's new scales stay in the weight's shard. */
const isScale = (t: PlanTensor): boolean => t.action === 'scale';

/**
 * The output's shards: at most --max-shard-size each. A merge in N parts with fewer shards than
 * parts, and no --max-shard-size asked for, is cut into shards of about 1/N of the output, so that
 * no part is left without files (a single-machine merge with that size writes the same bytes).
 */
function shardsFor(specs: PlanTensor[], o: ResolvedPlanOptions, notes: string[]): PlanTensor[][] {
  const groups = splitShards(specs, o.maxShardSize, isScale);
  const n = o.part?.count ?? 1;
  if (n <= groups.length) return groups;
  if (o.maxShardSizeSet) {
    notes.push(
      `the output has ${groups.length} file(s) for ${n} parts (--max-shard-size ${o.maxShardSize}): ${n - groups.length} part(s) have nothing to write`,
    );
    return groups;
  }
  const size = Math.ceil(specs.reduce((s, t) => s + t.bytes, 0) / n);
  const finer = splitShards(specs, size, isScale);
  notes.push(
    `the output is cut into ${finer.length} shards of at most ${size} bytes (--max-shard-size ${size}) so that each of the ${n} parts writes some${finer.length < n ? ` (tensors too large to share leave ${n - finer.length} part(s) without files)` : ''}`,
  );
  return finer;
}

/** Plans a merge from options as the library takes them (validated here). */
export async function planMerge(
  options: PlanOptions,
  exclude: ReadonlyMap<string, string> = new Map(),
  cut: CutOptions = {},
): Promise<PlanResult> {
  return planResolved(resolvePlanOptions(options), exclude, cut);
}

/**
 * Reads and validates headers only (no tensor data), selects checkpoints, computes weights, lays
 * out the output and cuts the work into chunks. Linear in the number of tensors and checkpoints.
 */
export async function planResolved(
  o: ResolvedPlanOptions,
  exclude: ReadonlyMap<string, string> = new Map(),
  cut: CutOptions = {},
): Promise<PlanResult> {
  const selected = await selectInputs(o);
  const { chosen, weights: explicit } = leaveOut(selected.checkpoints, o.weights, exclude);
  const cache = new LoadCache();
  // All at once: a checkpoint's headers (or a DCP checkpoint's archives) are small reads that
  // would otherwise wait on one another.
  const averaged = globMatcher(o.average ?? []);
  const include = o.average === null ? undefined : (fqn: string) => !isTrainingState(fqn) || averaged(fqn);
  const cks: LoadedCheckpoint[] = await Promise.all(chosen.map((ref) => loadCheckpoint(ref, cache, include)));
  checkConsistent(cks);
  const warnings = [...selected.warnings, ...(await checkConfigs(cks, o.allowConfigMismatch))];
  const weights = computeWeights(o.method, cks.length, {
    alpha: o.alpha,
    ...(explicit ? { weights: explicit } : {}),
    ...(o.schedule ? { schedule: o.schedule } : {}),
  });
  const newest = cks[cks.length - 1] as LoadedCheckpoint;
  const quant = await quantizationOf(newest, o);
  const format = o.format ?? (cks.some((c) => c.layout.kind === 'dcp') ? 'dcp' : 'safetensors');
  if (cks.length === 1) {
    warnings.push(
      `only one checkpoint is selected (${newest.name}): the output is a copy of it${o.dtype === 'keep' ? '' : ` in ${o.dtype}`}, not an average`,
    );
  }
  const notes: string[] = [...selected.notes];
  warnings.unshift(...[...exclude].map(([path, why]) => `left out ${path}: ${why}`));
  if (quant.unknown) {
    warnings.push(
      `--copy-quantized: ${quant.unknown.tensors.length} tensor(s) quantized with ${quant.unknown.scheme} are copied from the newest checkpoint (${newest.name}) unchanged, not averaged: ${someNames(quant.unknown.tensors)}`,
    );
  }
  const layout =
    format === 'dcp' ? await dcpParts(cks, o, quant, notes) : await safetensorsParts(cks, o, quant, notes, warnings);
  const chunkSize = o.chunkSize ?? chunkSizeFor(layout.totals.inputBytes + layout.totals.outputBytes);
  const chunks = cutChunks(layout.items, chunkSize, cut);

  const plan: MergePlan = {
    version: 2,
    format,
    method: o.method,
    alpha: o.method === 'ema' ? o.alpha : null,
    schedule: o.schedule,
    accumulate: o.accumulate,
    dtype: o.dtype,
    checksum: o.checksum,
    checkpoints: cks.map((c) => ({
      path: c.path,
      name: c.name,
      step: c.step,
      tokens: selected.tokens.get(c.path) ?? null,
    })),
    weights,
    outputs: layout.outputs,
    index: layout.index,
    tensors: layout.tensors,
    chunkSize,
    chunks,
    copyFiles: layout.copyFiles,
    writtenFiles: layout.writtenFiles,
    totals: layout.totals,
    quantization: planQuantization(quant, o),
    parts: o.part
      ? {
          count: o.part.count,
          files: assignFiles(
            layout.outputs.map((f) => f.size),
            o.part.count,
          ),
        }
      : null,
    notes,
    warnings,
  };
  if (o.part) notes.push(describePart(plan, o.part));
  return { plan, skipped: selected.skipped };
}

/** What a format's layout contributes to the plan; `items` are cut into its chunks. */
type Parts = Pick<MergePlan, 'outputs' | 'index' | 'tensors' | 'copyFiles' | 'writtenFiles' | 'totals'> & {
  items: Iterable<TensorSources>;
};

/**
 * What cutChunks cuts, made one tensor at a time as it asks: each tensor's sources are looked up
 * then, not kept for every tensor at once (a million short-lived objects, not a million kept).
 * Only FP8 weights look up their scales' output tensors: no map of every tensor otherwise.
 */
function* itemsOf(tensors: PlanTensor[], cks: LoadedCheckpoint[], quant: Quantization): Generator<TensorSources> {
  const newest = cks[cks.length - 1] as LoadedCheckpoint;
  let byName: Map<string, PlanTensor> | undefined;
  const found = new Array<LayoutTensor | undefined>(cks.length);
  for (const t of tensors) {
    if (t.action === 'scale') continue; // written by its FP8 tensor's ops
    const fp8 = t.action === 'merge' ? quant.fp8.get(t.name) : undefined;
    if (fp8) {
      byName ??= new Map(tensors.map((x) => [x.name, x]));
      const out = fp8.scale === null ? undefined : byName.get(fp8.scale);
      yield {
        tensor: t,
        sources: sourcesIn(cks, t.name),
        fp8: {
          info: fp8,
          scaleSources: fp8.scale === null ? [] : sourcesIn(cks, fp8.scale),
          scaleOut: out ? { file: out.file, offset: out.offset } : null,
        },
      };
      continue;
    }
    // Looked up once per layout: checkpoints with identical headers share one (src/checkpoints/load.ts).
    for (let k = 0; k < cks.length; k++) {
      const contents = (cks[k] as LoadedCheckpoint).contents;
      found[k] =
        k > 0 && contents === (cks[k - 1] as LoadedCheckpoint).contents ? found[k - 1] : contents.byName.get(t.name);
    }
    // A tensor in DCP chunks (in any checkpoint it is read from): mapped onto runs across every layout.
    const merge = t.action === 'merge';
    if (merge ? found.some((l) => l?.chunks) : found[cks.length - 1]?.chunks) {
      yield { tensor: t, sources: [], runs: runsAcross(t.name, t.shape, t.inDtype, merge ? cks : [newest]) };
    } else {
      yield { tensor: t, sources: cks.map((c, k) => locate(c, found[k] as LayoutTensor)) };
    }
  }
}

/** Where tensor `name` is in each checkpoint, oldest first. */
function sourcesIn(cks: LoadedCheckpoint[], name: string): { file: string; offset: number }[] {
  return cks.map((c) => locate(c, c.contents.byName.get(name) as LayoutTensor));
}

/** A safetensors output: the newest checkpoint's tensors, averaged or copied, laid out afresh. */
async function safetensorsParts(
  cks: LoadedCheckpoint[],
  o: ResolvedPlanOptions,
  quant: Quantization,
  notes: string[],
  warnings: string[],
): Promise<Parts> {
  const newest = cks[cks.length - 1] as LoadedCheckpoint;
  const { outputs, tensors, index } = layoutOutput(newest, o, quant, notes);
  const fp8Merged = tensors.filter((t) => t.action === 'merge' && quant.fp8.has(t.name));
  const writtenFiles = await rewrittenConfig(newest, o, fp8Merged.length > 0 && !quant.unknown, warnings);
  if (fp8Merged.length > 0) {
    const how =
      o.dtype === 'keep'
        ? "requantised with new scales (amax / the format's largest, per block)"
        : `written dequantised as ${o.dtype.toUpperCase()}, their scales and config.json's quantization_config dropped`;
    const kinds = [...new Set(fp8Merged.map((t) => describeFp8(quant, t.name)))].join(', ');
    notes.push(`${fp8Merged.length} FP8 tensor(s) (${kinds}) are dequantised, averaged and ${how}`);
  }
  const merged = tensors.filter((t) => t.action === 'merge');
  const copied = tensors.filter((t) => t.action === 'copy');
  // --copy-quantized's copies have a warning of their own.
  const quantized = new Set(quant.unknown?.tensors ?? []);
  const plainCopies = copied.filter((t) => !quantized.has(t.name));
  if (plainCopies.length > 0) {
    const kinds = [...new Set(plainCopies.map((t) => t.inDtype))].join(', ');
    notes.push(
      `${plainCopies.length} tensor(s) (${kinds}; ${someNames(plainCopies.map((t) => t.name))}) are not averaged: copied from the newest checkpoint (${newest.name})`,
    );
  }
  if (newest.others.length > 0) {
    notes.push(
      `${newest.others.length} item(s) of the DCP checkpoints are left out of the output (${someNames(newest.others.map((x) => `${x.fqn}: ${x.why}`))}); --average GLOB takes tensors among them`,
    );
  }
  const outputBytes = tensors.reduce((s, t) => s + t.bytes, 0);
  const scaleBytes = (name: string) => {
    const scale = quant.fp8.get(name)?.scale;
    return scale ? (newest.contents.byName.get(scale) as LayoutTensor).bytes : 0;
  };
  const inputBytes =
    merged.reduce(
      (s, t) => s + ((elementCount(t.shape) * DTYPE_BITS[t.inDtype]) / 8 + scaleBytes(t.name)) * cks.length,
      0,
    ) + copied.reduce((s, t) => s + t.bytes, 0);

  const items = itemsOf(tensors, cks, quant);
  return {
    outputs,
    index,
    tensors,
    items,
    copyFiles: (await companionFiles(newest.dir)).map((from) => ({ from, to: basename(from) })),
    writtenFiles,
    totals: { inputBytes, outputBytes, tensors: tensors.length, merged: merged.length, copied: copied.length },
  };
}

/** A DCP output: the newest checkpoint's files with the averages written in (src/plan/dcp-output.ts). */
async function dcpParts(
  cks: LoadedCheckpoint[],
  o: ResolvedPlanOptions,
  quant: Quantization,
  notes: string[],
): Promise<Parts> {
  const newest = cks[cks.length - 1] as LoadedCheckpoint;
  const d = await layoutDcpOutput(cks, o, averagedBy(o, quant));
  const averaged = new Set(d.tensors.map((t) => t.name));
  const copied = [
    ...newest.contents.tensors.filter((t) => !averaged.has(t.name)).map((t) => t.name),
    ...newest.others.map((x) => x.fqn),
  ];
  if (copied.length > 0)
    notes.push(
      `${d.copiedItems} item(s) are not averaged: copied unchanged from the newest checkpoint (${newest.name}): ${someNames(copied)}`,
    );
  notes.push(...d.notes);
  const mergedBytes = d.tensors.reduce((s, t) => s + t.bytes, 0);
  return {
    outputs: d.outputs,
    index: null,
    tensors: d.tensors,
    items: d.items,
    copyFiles: d.copyFiles,
    writtenFiles: d.writtenFiles,
    totals: {
      inputBytes: mergedBytes * cks.length + d.copiedBytes,
      outputBytes: d.outputBytes,
      tensors: d.tensors.length + d.copiedItems,
      merged: d.tensors.length,
      copied: d.copiedItems,
    },
  };
}

/** "block 128x128, F8_E4M3 with F32 scales": how an FP8 tensor is scaled, for the plan's notes. */
function describeFp8(quant: Quantization, name: string): string {
  const f = quant.fp8.get(name);
  if (!f) return name;
  const how =
    f.scaling === 'block'
      ? `${f.blockRows}x${f.blockCols} blocks`
      : f.scaling === 'none'
        ? 'no scale'
        : `per ${f.scaling}`;
  return f.scaleDtype ? `${f.dtype}, ${how} of ${f.scaleDtype} scales` : `${f.dtype}, ${how}`;
}
