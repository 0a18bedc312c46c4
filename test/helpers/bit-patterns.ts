import type { KernelName, MergeBuffersArgs } from '../../src/native.js';
import { bitsFromF32 } from './reference.js';

// Random bit patterns for comparing kernels and backends, shared by the CPU and GPU tests.
export const FLOATS = ['BF16', 'F16', 'F32', 'F64'] as const;
export type F = (typeof FLOATS)[number];
export const SIZE: Record<F, number> = { BF16: 2, F16: 2, F32: 4, F64: 8 };

// Values that break careless conversions: zeros, subnormals, the largest finite, infinities,
// NaNs with payloads, and neighbours of rounding ties.
const SPECIAL16 = [
  0x0000, 0x8000, 0x0001, 0x8001, 0x03ff, 0x0400, 0x7bff, 0xfbff, 0x7c00, 0xfc00, 0x7e00, 0x7c01, 0xffff, 0x3c00,
  0x3c01, 0x7f7f, 0x7f80, 0x007f, 0x0080, 0xff80, 0x7fc1,
];
const SPECIAL32 = [
  0, 0x80000000, 1, 0x80000001, 0x007fffff, 0x00800000, 0x7f7fffff, 0xff7fffff, 0x7f800000, 0xff800000, 0x7fc00000,
  0x7f800001, 0xffffffff, 0x3f800000, 0x3f808000, 0x3f818000, 0x477ff000, 0x477fefff, 0x33800000, 0x33000000,
  0x33000001, 0x387fc000, 0x38800000,
];

// f64: NaNs with payloads in either half, infinities, subnormals, the largest finite, values that
// overflow f32 and f16 or round to their subnormals, and neighbours of f32 rounding ties.
const SPECIAL64 = [
  0n,
  0x8000000000000000n,
  1n,
  0x800fffffffffffffn,
  0x0010000000000000n,
  0x7fefffffffffffffn,
  0xffefffffffffffffn,
  0x7ff0000000000000n,
  0xfff0000000000000n,
  0x7ff8000000000000n,
  0x7ff0000000000001n,
  0xfff8000100000000n,
  0x3ff0000000000000n,
  0x3ff0000010000000n, // 1 + 2^-24: a tie when rounded to f32
  0x3ff0000010000001n,
  0x47efffffe0000000n, // the largest f32 and a half ulp: overflows to infinity
  0x47efffffdfffffffn,
  0x36a0000000000000n, // 2^-149: the smallest f32 subnormal
  0x3690000000000000n,
  0x40effe0000000000n, // 65520: rounds to infinity in f16
];

export function randomBuffer(dtype: F, n: number, rand: () => number): Uint8Array {
  const buf = new Uint8Array(n * SIZE[dtype]);
  const dv = new DataView(buf.buffer);
  for (let i = 0; i < n; i++) {
    const pick = rand();
    if (dtype === 'F64') {
      const v =
        pick < 0.1
          ? (SPECIAL64[Math.floor(rand() * SPECIAL64.length)] as bigint)
          : pick < 0.4
            ? (BigInt(Math.floor(rand() * 2 ** 32)) << 32n) | BigInt(Math.floor(rand() * 2 ** 32))
            : null;
      if (v === null) dv.setFloat64(i * 8, (rand() - 0.5) * 2 ** Math.floor(rand() * 80 - 40), true);
      else dv.setBigUint64(i * 8, v, true);
    } else if (dtype === 'F32') {
      const v =
        pick < 0.1
          ? (SPECIAL32[Math.floor(rand() * SPECIAL32.length)] as number)
          : pick < 0.5
            ? Math.floor(rand() * 2 ** 32)
            : bitsFromF32((rand() - 0.5) * 2 ** Math.floor(rand() * 40 - 20));
      dv.setUint32(i * 4, v >>> 0, true);
    } else {
      const v =
        pick < 0.1
          ? (SPECIAL16[Math.floor(rand() * SPECIAL16.length)] as number)
          : pick < 0.6
            ? Math.floor(rand() * 2 ** 16)
            : (0x3c00 + Math.floor(rand() * 0x800)) ^ (rand() < 0.5 ? 0x8000 : 0);
      dv.setUint16(i * 2, v, true);
    }
  }
  return buf;
}

export const WEIGHT_SETS = [
  [1],
  [0.5, 0.5],
  [1 / 3, 1 / 3, 1 / 3],
  [0.1, 0.2, 0.3, 0.4],
  [0.512, 0.128, 0.16, 0.2, 1e-3],
  // 10 inputs, the paper's default N: past the 8 a kernel may take in its first batch.
  [0.01, 0.02, 0.03, 0.05, 0.07, 0.09, 0.11, 0.13, 0.17, 0.32],
];

/** mergeBuffers arguments for weights `w` (normalised), on a CPU kernel or, with `device`, a GPU. */
export function args(
  inputs: Uint8Array[],
  inDtype: F,
  outDtype: F,
  w: number[],
  kernel: KernelName,
  device = -1,
): MergeBuffersArgs {
  const sum = w.reduce((a, b) => a + b, 0);
  const w64 = w.map((x) => x / sum);
  return {
    inputs,
    inDtype,
    outDtype,
    weights64: w64,
    weights32: w64.map(Math.fround),
    accumulate: 'f32',
    kernel,
    device,
  };
}
