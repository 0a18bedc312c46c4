import { describe, expect, it } from 'vitest';

import { native, type KernelName } from '../../src/native.js';
import { bitsFromF32, decode, encode, mergeElement } from '../helpers/reference.js';
import { rng } from '../helpers/safetensors.js';

const FLOATS = ['BF16', 'F16', 'F32'] as const;
type F = (typeof FLOATS)[number];
const SIZE: Record<F, number> = { BF16: 2, F16: 2, F32: 4 };

// Values that break careless conversions: zeros, subnormals, the largest finite, infinities,
// NaNs with payloads, and neighbours of rounding ties.
const SPECIAL16 = [0x0000, 0x8000, 0x0001, 0x8001, 0x03ff, 0x0400, 0x7bff, 0xfbff, 0x7c00, 0xfc00, 0x7e00, 0x7c01, 0xffff, 0x3c00, 0x3c01, 0x7f7f, 0x7f80, 0x007f, 0x0080, 0xff80, 0x7fc1];
const SPECIAL32 = [0, 0x80000000, 1, 0x80000001, 0x007fffff, 0x00800000, 0x7f7fffff, 0xff7fffff, 0x7f800000, 0xff800000, 0x7fc00000, 0x7f800001, 0xffffffff, 0x3f800000, 0x3f808000, 0x3f818000, 0x477ff000, 0x477fefff, 0x33800000, 0x33000000, 0x33000001, 0x387fc000, 0x38800000];

function randomBuffer(dtype: F, n: number, rand: () => number): Uint8Array {
  const buf = new Uint8Array(n * SIZE[dtype]);
  const dv = new DataView(buf.buffer);
  for (let i = 0; i < n; i++) {
    const pick = rand();
    if (dtype === 'F32') {
      const v = pick < 0.1 ? (SPECIAL32[Math.floor(rand() * SPECIAL32.length)] as number)
        : pick < 0.5 ? Math.floor(rand() * 2 ** 32)
        : bitsFromF32((rand() - 0.5) * 2 ** Math.floor(rand() * 40 - 20));
      dv.setUint32(i * 4, v >>> 0, true);
    } else {
      const v = pick < 0.1 ? (SPECIAL16[Math.floor(rand() * SPECIAL16.length)] as number)
        : pick < 0.6 ? Math.floor(rand() * 2 ** 16)
        : (0x3c00 + Math.floor(rand() * 0x800)) ^ (rand() < 0.5 ? 0x8000 : 0);
      dv.setUint16(i * 2, v, true);
    }
  }
  return buf;
}

const WEIGHT_SETS = [[1], [0.5, 0.5], [1 / 3, 1 / 3, 1 / 3], [0.1, 0.2, 0.3, 0.4], [0.512, 0.128, 0.16, 0.2, 1e-3]];

function args(inputs: Uint8Array[], inDtype: F, outDtype: F, w: number[], kernel: KernelName) {
  const sum = w.reduce((a, b) => a + b, 0);
  const w64 = w.map((x) => x / sum);
  return { inputs, inDtype, outDtype, weights64: w64, weights32: w64.map(Math.fround), accumulate: 'f32' as const, kernel };
}

const cpu = native().cpuFeatures();

describe('kernels', () => {
  it('reports the CPU features and always has the scalar kernel', () => {
    expect(cpu.kernels).toContain('scalar');
    expect(cpu.kernels).toContain(cpu.best);
  });

  for (const kernel of ['avx2', 'avx512'] as const) {
    it.skipIf(!cpu.kernels.includes(kernel))(`${kernel} gives the scalar kernel's bytes on random bit patterns`, () => {
      const rand = rng(42);
      for (const inDtype of FLOATS) {
        for (const outDtype of FLOATS) {
          for (const w of WEIGHT_SETS) {
            for (const n of [1, 15, 16, 17, 63, 64, 65, 1031]) {
              const inputs = w.map(() => randomBuffer(inDtype, n, rand));
              const ref = native().mergeBuffers(args(inputs, inDtype, outDtype, w, 'scalar'));
              const got = native().mergeBuffers(args(inputs, inDtype, outDtype, w, kernel));
              if (Buffer.compare(Buffer.from(ref), Buffer.from(got)) !== 0) {
                expect.fail(`${kernel} differs from scalar: ${inDtype}->${outDtype}, ${w.length} inputs, ${n} elements`);
              }
            }
          }
        }
      }
    });
  }

  it('the scalar kernel matches an independent model of the contract', () => {
    const rand = rng(7);
    for (const inDtype of FLOATS) {
      for (const outDtype of FLOATS) {
        for (const w of WEIGHT_SETS) {
          const n = 3000;
          const inputs = w.map(() => randomBuffer(inDtype, n, rand));
          const a = args(inputs, inDtype, outDtype, w, 'scalar');
          const got = native().mergeBuffers(a);
          for (let j = 0; j < n; j++) {
            const v = mergeElement(inputs.map((b) => decode(inDtype, b, j)), a.weights32);
            const want = encode(outDtype, v);
            const have = got.subarray(j * SIZE[outDtype], (j + 1) * SIZE[outDtype]);
            if (Buffer.compare(Buffer.from(want), Buffer.from(have)) !== 0) {
              expect.fail(`${inDtype}->${outDtype} w=${w} element ${j}: inputs ${inputs.map((b) => decode(inDtype, b, j)).join(', ')} want ${Buffer.from(want).toString('hex')} got ${Buffer.from(have).toString('hex')}`);
            }
          }
        }
      }
    }
  });

  it('writes the canonical NaN and keeps subnormals and signed zeros', () => {
    const f32 = (bits: number[]) => new Uint8Array(new Uint32Array(bits).buffer);
    const out = (o: Uint8Array, d: F) => Array.from({ length: o.length / SIZE[d] }, (_, i) => (d === 'F32' ? new DataView(o.buffer, o.byteOffset).getUint32(i * 4, true) : new DataView(o.buffer, o.byteOffset).getUint16(i * 2, true)));
    for (const kernel of cpu.kernels) {
      const x = f32([0x7fa00001, 0xffc12345, 0x00000001, 0x80000000, 0x38000000, 0x33800000]);
      const r32 = native().mergeBuffers(args([x], 'F32', 'F32', [1], kernel));
      expect(out(r32, 'F32'), kernel).toEqual([0x7fc00000, 0x7fc00000, 0x00000001, 0x00000000, 0x38000000, 0x33800000]);
      const r16 = native().mergeBuffers(args([x], 'F32', 'F16', [1], kernel));
      // 2^-15 is an f16 subnormal (0x0200); 2^-24 is the smallest one (0x0001).
      expect(out(r16, 'F16'), kernel).toEqual([0x7e00, 0x7e00, 0x0000, 0x0000, 0x0200, 0x0001]);
      const rb = native().mergeBuffers(args([x], 'F32', 'BF16', [1], kernel));
      expect(out(rb, 'BF16'), kernel).toEqual([0x7fc0, 0x7fc0, 0x0000, 0x0000, 0x3800, 0x3380]);
    }
  });

  it('accumulates in f64 when asked, rounding once to the output dtype', () => {
    const rand = rng(3);
    const n = 500;
    const xs = [0, 1, 2, 3].map(() => {
      const a = new Float32Array(n);
      for (let i = 0; i < n; i++) a[i] = 1 + rand();
      return new Uint8Array(a.buffer);
    });
    const w = [0.25, 0.25, 0.25, 0.25];
    const got = native().mergeBuffers({ ...args(xs, 'F32', 'F32', w, 'scalar'), accumulate: 'f64' });
    for (let j = 0; j < n; j++) {
      // The sum of four floats near 1 is exact in a double, and the quarter too.
      const exact = xs.reduce((s, b) => s + decode('F32', b, j), 0) / 4;
      expect(decode('F32', got, j)).toBe(Math.fround(exact));
    }
  });

  // On a CPU with every kernel there is nothing to refuse: the test reports itself skipped.
  const missing = (['avx2', 'avx512'] as const).find((k) => !cpu.kernels.includes(k));
  it.skipIf(!missing)('refuses a kernel the CPU lacks with E_UNSUPPORTED', () => {
    if (!missing) return;
    expect(() => native().mergeBuffers(args([new Uint8Array(4)], 'F32', 'F32', [1], missing))).toThrow(/not supported/);
  });
});
