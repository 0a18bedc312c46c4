import { DTYPE_BITS, isAveraged, type DType, type FloatDType } from '../dtypes.js';

/**
 * Values for synthetic checkpoints: deterministic (a seed gives the same bytes on every machine),
 * so a test's expected output, a benchmark's cached series and the demo can be made again.
 */

/** A deterministic pseudo-random generator in [0, 1) (mulberry32), so failures reproduce. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** The bf16 nearest a float32 (round to nearest, ties to even; the input is finite). */
function bf16Bits(x: number): number {
  f32[0] = x;
  const b = u32[0] as number;
  return (b + 0x7fff + ((b >>> 16) & 1)) >>> 16;
}

/** The f16 nearest a float32 (round to nearest, ties to even; overflow to infinity). */
function f16Bits(x: number): number {
  f32[0] = x;
  const f = u32[0] as number;
  const sign = (f >>> 16) & 0x8000;
  const e = ((f >>> 23) & 0xff) - 127 + 15;
  let m = f & 0x7fffff;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    m |= 0x800000;
    const shift = 14 - e;
    let h = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && h & 1)) h++;
    return sign | h;
  }
  let h = (e << 10) | (m >>> 13);
  const rem = m & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++;
  return sign | h;
}

/** Bytes of `n` elements of a float dtype holding value(0), value(1), ... (rounded to nearest even). */
export function encode(dtype: FloatDType, n: number, value: (i: number) => number): Buffer {
  if (dtype === 'F64') return Buffer.from(Float64Array.from({ length: n }, (_, i) => value(i)).buffer);
  if (dtype === 'F32') return Buffer.from(Float32Array.from({ length: n }, (_, i) => value(i)).buffer);
  const bits = dtype === 'BF16' ? bf16Bits : f16Bits;
  return Buffer.from(Uint16Array.from({ length: n }, (_, i) => bits(value(i))).buffer);
}

/** Random data of a dtype: floats uniform in (-2, 2), any other dtype random bytes. */
export function randomData(dtype: DType, elements: number, rand: () => number): Buffer {
  if (isAveraged(dtype)) return encode(dtype, elements, () => (rand() - 0.5) * 4);
  const buf = Buffer.alloc(Math.ceil((elements * DTYPE_BITS[dtype]) / 8));
  for (let i = 0; i < buf.length; i++) buf[i] = Math.floor(rand() * 256);
  return buf;
}

/**
 * Weight-like values (about N(0, 0.02), no NaN or Inf) in a float dtype: `bytes` of
 * them, from one seed. Large series reuse windows of one such buffer (see writer.ts, `repeat`).
 */
export function weightLike(dtype: 'BF16' | 'F16' | 'F32', bytes: number, seed = 20250101): Buffer {
  const r = rng(seed);
  return encode(dtype, Math.floor(bytes / (DTYPE_BITS[dtype] / 8)), () => (r() + r() + r() - 1.5) * 0.04);
}
