import type { DType, FloatDType } from '../dtypes.js';
import { isAveraged } from '../dtypes.js';
import { readConfig } from './config.js';
import type { LayoutTensor } from './contents.js';
import type { LoadedCheckpoint } from './load.js';

/**
 * What a checkpoint's quantization is, from its config.json `quantization_config` and its tensor
 * names and dtypes. pma averages block-scaled FP8 (the DeepSeek-V3 layout, per-channel and
 * per-tensor scales: docs/contract.md, "FP8"); any other scheme is refused before anything is
 * written, because averaging the float half of a quantized model and copying the rest makes a
 * model that is neither input (unless --copy-quantized asks for exactly that).
 */

export const FP8_DTYPES = ['F8_E4M3', 'F8_E5M2'] as const;
export type Fp8DType = (typeof FP8_DTYPES)[number];

export function isFp8(d: DType): d is Fp8DType {
  return (FP8_DTYPES as readonly string[]).includes(d);
}

/** How an FP8 tensor's scale covers it: the tensor is viewed as [rows, cols] (its last dim is cols). */
export type Fp8Scaling = 'block' | 'channel' | 'tensor' | 'none';

export interface Fp8Tensor {
  name: string;
  dtype: Fp8DType;
  /** The scale tensor (`<name>_scale_inv` or `<name>_scale`); null: none, the scale is 1. */
  scale: string | null;
  scaleDtype: FloatDType | null;
  scaling: Fp8Scaling;
  rows: number;
  cols: number;
  blockRows: number;
  blockCols: number;
}

/** Tensors of a scheme pma cannot average, and why they are taken for one. */
export interface UnknownQuantization {
  scheme: string;
  why: string;
  tensors: string[];
}

export interface Quantization {
  /** quantization_config.quant_method of the newest checkpoint's config.json, or null. */
  method: string | null;
  /** FP8 tensors pma averages, by name. */
  fp8: Map<string, Fp8Tensor>;
  /** The scale tensors of `fp8`, by name, with their tensor. */
  scales: Map<string, Fp8Tensor>;
  unknown: UnknownQuantization | null;
}

/** quant_method values whose tensors pma checks and averages when they are FP8 with float scales. */
const FP8_METHODS = new Set(['fp8', 'fbgemm_fp8', 'compressed-tensors']);
/** DeepSeek-V3's block, the default of `weight_block_size`. */
const DEFAULT_BLOCK = [128, 128] as const;

/** Name components of other schemes' tensors: GPTQ/AWQ packed weights, bitsandbytes' states. */
const GPTQ = 'GPTQ/AWQ (packed integer weights)';
const SCHEME_COMPONENTS: [RegExp, string][] = [
  [/(^|\.)(qweight|qzeros|g_idx)$/, GPTQ],
  [/(^|\.)(absmax|quant_map|nested_absmax|nested_quant_map|SCB|weight_format)$/, 'bitsandbytes'],
  [/(^|\.)quant_state\./, 'bitsandbytes'],
];
/** Sub-byte and shared-exponent formats (MX, NVFP4): payloads pma has no arithmetic for. */
const MICROSCALING: ReadonlySet<DType> = new Set<DType>(['F4', 'F6_E2M3', 'F6_E3M2', 'F8_E8M0']);

const SCALE_SUFFIXES = ['_scale_inv', '_scale'] as const;
const numel = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

/** A tensor viewed as [rows, cols], its last dimension the columns (a 0-D one as [1, 1]). */
function asMatrix(shape: number[]): { rows: number; cols: number } {
  const cols = shape.length === 0 ? 1 : (shape[shape.length - 1] as number);
  return { rows: cols === 0 ? 0 : numel(shape) / cols, cols };
}

/** `weight_block_size` of a quantization_config: [rows, cols] of positive integers, else null. */
function blockSizeOf(cfg: Record<string, unknown> | null): [number, number] | null {
  const b = cfg?.['weight_block_size'];
  if (!Array.isArray(b) || b.length !== 2 || !b.every((x) => Number.isInteger(x) && (x as number) > 0)) return null;
  return [b[0] as number, b[1] as number];
}

/**
 * How `scale` covers `weight` [rows, cols], or why it cannot: one scalar (per tensor), one per
 * row (per channel: [rows, 1] or [rows]), or a grid of blocks of the config's
 * `weight_block_size` (128 x 128 when it says none).
 */
function scalingOf(
  weight: LayoutTensor,
  scale: LayoutTensor,
  block: [number, number] | null,
): Pick<Fp8Tensor, 'scaling' | 'rows' | 'cols' | 'blockRows' | 'blockCols'> | string {
  const { rows, cols } = asMatrix(weight.shape);
  if (!isAveraged(scale.dtype)) return `its scale ${scale.name} is ${scale.dtype}, not a float`;
  // A 2-D grid that fits the blocks is one (a [1, 1] grid of a small tensor too), before a scalar.
  const [br, bc] = block ?? DEFAULT_BLOCK;
  const [sr, sc] = scale.shape.length === 1 ? [scale.shape[0] as number, 1] : (scale.shape as [number, number]);
  if (
    weight.shape.length === 2 &&
    scale.shape.length === 2 &&
    sr === Math.ceil(rows / br) &&
    sc === Math.ceil(cols / bc)
  ) {
    return { scaling: 'block', rows, cols, blockRows: br, blockCols: bc };
  }
  if (numel(scale.shape) === 1 && scale.shape.length <= 2) {
    return { scaling: 'tensor', rows, cols, blockRows: Math.max(rows, 1), blockCols: Math.max(cols, 1) };
  }
  if (weight.shape.length !== 2) {
    return `scale ${scale.name} [${scale.shape.join(', ')}] of a ${weight.shape.length}-D tensor: only per-tensor scales are understood there`;
  }
  if (scale.shape.length <= 2 && sr === rows && sc === 1) {
    return { scaling: 'channel', rows, cols, blockRows: 1, blockCols: Math.max(cols, 1) };
  }
  return `scale ${scale.name} [${scale.shape.join(', ')}] fits neither ${br} x ${bc} blocks, rows nor the whole of ${weight.name} [${weight.shape.join(', ')}]`;
}

/**
 * Classifies a checkpoint's tensors (`tensors`, by name) given its config's quantization_config
 * (null when it has none). Checkpoints of one merge share names, dtypes and shapes, so the newest
 * one's answer holds for all.
 */
export function detectQuantization(
  tensors: ReadonlyMap<string, LayoutTensor>,
  config: Record<string, unknown> | null,
  format: 'safetensors' | 'dcp',
): Quantization {
  const method = typeof config?.['quant_method'] === 'string' ? config['quant_method'] : config ? 'unnamed' : null;
  const block = blockSizeOf(config);
  const fp8 = new Map<string, Fp8Tensor>();
  const scales = new Map<string, Fp8Tensor>();
  const flagged: { name: string; scheme: string; why: string }[] = [];
  const flag = (name: string, scheme: string, why: string) => flagged.push({ name, scheme, why });
  const unpairedScales: string[] = [];

  for (const t of tensors.values()) {
    const component = SCHEME_COMPONENTS.find(([re]) => re.test(t.name));
    if (component) flag(t.name, component[1], `${t.name} is a ${component[1]} tensor`);
    else if (t.name.endsWith('.scales') && tensors.has(`${t.name.slice(0, -'.scales'.length)}.qweight`))
      flag(t.name, GPTQ, `${t.name} scales a packed qweight`);
    else if (MICROSCALING.has(t.dtype)) flag(t.name, `microscaling (${t.dtype})`, `${t.name} is ${t.dtype}`);
    const suffix = SCALE_SUFFIXES.find((s) => t.name.endsWith(s));
    if (!suffix) continue;
    const base = tensors.get(t.name.slice(0, -suffix.length));
    if (!base) unpairedScales.push(t.name);
    else if (!isAveraged(base.dtype) && !isFp8(base.dtype) && !MICROSCALING.has(base.dtype)) {
      flag(base.name, `${base.dtype} weights with scales`, `${base.name} is ${base.dtype} with scale ${t.name}`);
      flag(t.name, `${base.dtype} weights with scales`, `${t.name} scales ${base.name}`);
    }
  }

  const fp8Known = method === null || FP8_METHODS.has(method);
  for (const t of tensors.values()) {
    if (!isFp8(t.dtype)) continue;
    const scaleName = SCALE_SUFFIXES.map((s) => t.name + s).find((n) => tensors.has(n)) ?? null;
    const scheme = method ?? 'FP8';
    if (!fp8Known) {
      flag(t.name, scheme, `${t.name} is ${t.dtype}`);
      if (scaleName) flag(scaleName, scheme, `${scaleName} scales ${t.name}`);
      continue;
    }
    if (format === 'dcp' && scaleName) {
      flag(
        t.name,
        'FP8 in a DCP checkpoint',
        `${t.name} is ${t.dtype} with scale ${scaleName}; FP8 is averaged in safetensors checkpoints only`,
      );
      flag(scaleName, 'FP8 in a DCP checkpoint', `${scaleName} scales ${t.name}`);
      continue;
    }
    if (!scaleName) {
      if (method !== null) {
        flag(
          t.name,
          scheme,
          `${t.name} is ${t.dtype} without a ${t.name}_scale_inv or ${t.name}_scale tensor, in a checkpoint quantized with ${method}`,
        );
        continue;
      }
      const { rows, cols } = asMatrix(t.shape);
      const plain: Fp8Tensor = {
        name: t.name,
        dtype: t.dtype,
        scale: null,
        scaleDtype: null,
        scaling: 'none',
        rows,
        cols,
        blockRows: Math.max(rows, 1),
        blockCols: Math.max(cols, 1),
      };
      fp8.set(t.name, plain);
      continue;
    }
    const scale = tensors.get(scaleName) as LayoutTensor;
    const how = scalingOf(t, scale, block);
    if (typeof how === 'string') {
      flag(t.name, `${scheme} with an unknown scale layout`, `${t.name} [${t.shape.join(', ')}]: ${how}`);
      flag(scaleName, `${scheme} with an unknown scale layout`, `${scaleName} scales ${t.name}`);
      continue;
    }
    const entry: Fp8Tensor = {
      name: t.name,
      dtype: t.dtype,
      scale: scaleName,
      scaleDtype: scale.dtype as FloatDType,
      ...how,
    };
    fp8.set(t.name, entry);
    scales.set(scaleName, entry);
  }

  // A scale with no tensor of its name is an activation or KV-cache scale (static quantization)
  // when the checkpoint is quantized; in a plain model (CLIP's logit_scale) it is a parameter.
  const quantized = method !== null || fp8.size > 0 || flagged.length > 0;
  if (quantized) {
    for (const n of unpairedScales) {
      flag(
        n,
        method ?? 'static activation scales',
        `${n} scales no tensor of the checkpoint (an activation or KV-cache scale)`,
      );
    }
  }
  if (method !== null && !fp8Known && flagged.length === 0) {
    flag('', method, `config.json declares quantization_config.quant_method ${JSON.stringify(method)}`);
  }
  const unknown: UnknownQuantization | null =
    flagged.length === 0
      ? null
      : {
          scheme: method !== null && !fp8Known ? method : (flagged[0]?.scheme as string),
          why: (flagged[0] as { why: string }).why,
          tensors: [...new Set(flagged.map((f) => f.name).filter((n) => n !== ''))],
        };
  // Tensors flagged for another reason are not averaged as FP8 either, nor is their partner.
  if (unknown) {
    for (const n of [...unknown.tensors]) {
      const e = fp8.get(n) ?? scales.get(n);
      if (!e) continue;
      fp8.delete(e.name);
      if (e.scale) scales.delete(e.scale);
      for (const partner of [e.name, e.scale]) {
        if (partner !== null && !unknown.tensors.includes(partner)) unknown.tensors.push(partner);
      }
    }
  }
  return { method, fp8, scales, unknown };
}

/** The key of config.json that declares a quantization. */
export const QUANTIZATION_KEY = 'quantization_config';

/**
 * A loaded checkpoint's quantization, from its tensors and its config.json's quantization_config;
 * `configPath` is that config.json when it declares one (for an error to name).
 */
export async function readQuantization(ck: LoadedCheckpoint): Promise<Quantization & { configPath: string | null }> {
  const cfg = await readConfig(ck.dir);
  const q = cfg?.json?.[QUANTIZATION_KEY];
  const config = typeof q === 'object' && q !== null && !Array.isArray(q) ? (q as Record<string, unknown>) : null;
  const quant = detectQuantization(ck.contents.byName, config, ck.layout.kind === 'dcp' ? 'dcp' : 'safetensors');
  return { ...quant, configPath: config && cfg ? cfg.path : null };
}
