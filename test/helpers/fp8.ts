// An independent model of pma's FP8 contract (docs/contract.md, "FP8"), written apart from the
// engine: the 256 values of each format are tabulated from the format's definition (sign,
// exponent, mantissa, bias) in plain doubles, and the encoder searches that table for the nearest
// value (ties to the even code) instead of manipulating bits. Slow; for tests only.
import { decode, encode, fmaf } from './reference.js';

export type Fp8 = 'F8_E4M3' | 'F8_E5M2';

interface Format {
  exp: number;
  mant: number;
  bias: number;
  /** Codes of the finite non-negative values, ascending in value. */
  finite: number[];
  values: number[];
  max: number;
  maxCode: number;
}

function tabulate(exp: number, mant: number, special: (e: number, m: number) => number | null): Format {
  const bias = 2 ** (exp - 1) - 1;
  const values: number[] = [];
  for (let code = 0; code < 256; code++) {
    const sign = code & 0x80 ? -1 : 1;
    const e = (code >> mant) & (2 ** exp - 1);
    const m = code & (2 ** mant - 1);
    const s = special(e, m);
    if (s !== null) values.push(sign * s);
    else if (e === 0) values.push(sign * (m / 2 ** mant) * 2 ** (1 - bias));
    else values.push(sign * (1 + m / 2 ** mant) * 2 ** (e - bias));
  }
  const finite = [...Array(128).keys()].filter((c) => Number.isFinite(values[c]));
  finite.sort((a, b) => (values[a] as number) - (values[b] as number));
  const maxCode = finite[finite.length - 1] as number;
  return { exp, mant, bias, finite, values, max: values[maxCode] as number, maxCode };
}

const FORMATS: Record<Fp8, Format> = {
  // e4m3fn: the all-ones code is NaN, and there is no infinity.
  F8_E4M3: tabulate(4, 3, (e, m) => (e === 15 && m === 7 ? NaN : null)),
  // IEEE-style: exponent all ones is infinity (mantissa 0) or NaN.
  F8_E5M2: tabulate(5, 2, (e, m) => (e === 31 ? (m === 0 ? Infinity : NaN) : null)),
};

export const FP8_MAX: Record<Fp8, number> = { F8_E4M3: FORMATS.F8_E4M3.max, F8_E5M2: FORMATS.F8_E5M2.max };

export function decodeFp8(f: Fp8, code: number): number {
  return FORMATS[f].values[code & 0xff] as number;
}

/** Round to nearest, ties to the even code; saturating; NaN -> 0x7F; E5M2 keeps infinity. */
export function encodeFp8(f: Fp8, x: number): number {
  const t = FORMATS[f];
  if (Number.isNaN(x)) return 0x7f;
  const sign = x < 0 || Object.is(x, -0) ? 0x80 : 0;
  const a = Math.abs(x);
  if (a === Infinity && f === 'F8_E5M2') return sign | 0x7c;
  if (a >= t.max) return sign | t.maxCode;
  let lo = 0;
  while ((t.values[t.finite[lo + 1] as number] as number) <= a) lo++;
  const below = t.finite[lo] as number;
  const above = t.finite[lo + 1] as number;
  const vb = t.values[below] as number;
  const va = t.values[above] as number;
  if (a === vb) return sign | below;
  const mid = (vb + va) / 2;
  const code = a < mid ? below : a > mid ? above : below % 2 === 0 ? below : above;
  return sign | code;
}

export interface Fp8Tensor {
  fmt: Fp8;
  rows: number;
  cols: number;
  blockRows: number;
  blockCols: number;
  /** One code array per checkpoint, oldest first. */
  codes: Uint8Array[];
  /** One scale grid per checkpoint (row-major, ceil(rows/br) x ceil(cols/bc)); null: no scale tensor. */
  scales: Uint8Array[] | null;
  scaleDtype: 'F32' | 'BF16' | 'F16';
}

const blockOf = (t: Fp8Tensor, j: number) =>
  Math.floor(Math.floor(j / t.cols) / t.blockRows) * Math.ceil(t.cols / t.blockCols) +
  Math.floor((j % t.cols) / t.blockCols);

/** Each element's dequantised value: fp8 value x scale, rounded once to f32. */
export function dequantise(t: Fp8Tensor, k: number): number[] {
  const codes = t.codes[k] as Uint8Array;
  return [...codes].map((q, j) => {
    const s = t.scales ? decode(t.scaleDtype, t.scales[k] as Uint8Array, blockOf(t, j)) : 1;
    return Math.fround(decodeFp8(t.fmt, q) * s);
  });
}

/** The fp32 accumulators of the contract: fma oldest to newest over the dequantised values. */
export function average(t: Fp8Tensor, w32: number[]): number[] {
  const xs = t.codes.map((_, k) => dequantise(t, k));
  return (xs[0] as number[]).map((_, j) => {
    let acc = 0;
    for (let k = 0; k < xs.length; k++) acc = fmaf(w32[k] as number, (xs[k] as number[])[j] as number, acc);
    return acc;
  });
}

/** A dequantised output in a float dtype. */
export function dequantisedOutput(acc: number[], dtype: string): Uint8Array {
  const size = dtype === 'F32' ? 4 : 2;
  const out = new Uint8Array(acc.length * size);
  acc.forEach((v, j) => out.set(encode(dtype, v), j * size));
  return out;
}

/** A requantised output: per block, scale = amax(finite |x|) / max in f32, stored in the scale dtype; q = enc(x / scale). */
export function requantisedOutput(t: Fp8Tensor, acc: number[]): { codes: Uint8Array; scales: Uint8Array | null } {
  if (!t.scales) return { codes: Uint8Array.from(acc.map((v) => encodeFp8(t.fmt, v))), scales: null };
  const nBlocks = Math.ceil(t.rows / t.blockRows) * Math.ceil(t.cols / t.blockCols);
  const amax = new Array<number>(nBlocks).fill(0);
  acc.forEach((v, j) => {
    if (Number.isFinite(v)) amax[blockOf(t, j)] = Math.max(amax[blockOf(t, j)] as number, Math.abs(v));
  });
  const size = t.scaleDtype === 'F32' ? 4 : 2;
  const scales = new Uint8Array(nBlocks * size);
  const stored = amax.map((m, b) => {
    const bytes = encode(t.scaleDtype, Math.fround(m / FP8_MAX[t.fmt]));
    scales.set(bytes, b * size);
    return decode(t.scaleDtype, bytes, 0);
  });
  const codes = Uint8Array.from(
    acc.map((v, j) => {
      const s = stored[blockOf(t, j)] as number;
      return encodeFp8(t.fmt, s > 0 ? Math.fround(v / s) : v);
    }),
  );
  return { codes, scales };
}

/** Random codes of a format with no NaN or infinity (those are placed by the tests themselves). */
export function finiteCodes(f: Fp8, n: number, rand: () => number): Uint8Array {
  const t = FORMATS[f];
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const c = t.finite[Math.floor(rand() * t.finite.length)] as number;
    out[i] = c | (rand() < 0.5 ? 0x80 : 0);
  }
  return out;
}

/** Scales as raw bytes of `dtype`, from numbers. */
export function scaleBytes(dtype: 'F32' | 'BF16' | 'F16', values: number[]): Uint8Array {
  const size = dtype === 'F32' ? 4 : 2;
  const out = new Uint8Array(values.length * size);
  values.forEach((v, i) => out.set(encode(dtype, v), i * size));
  return out;
}
