import { describe, expect, it } from 'vitest';

import { native } from '../../src/native.js';
import { args, FLOATS, randomBuffer, SIZE, WEIGHT_SETS, type F } from '../helpers/bit-patterns.js';
import { decode, encode, mergeElement } from '../helpers/reference.js';
import { itNeeds } from '../helpers/requires.js';
import { rng } from '../helpers/safetensors.js';

const cpu = native().cpuFeatures();

describe('kernels', () => {
  it('reports the CPU features and always has the scalar kernel', () => {
    expect(cpu.kernels).toContain('scalar');
    expect(cpu.kernels).toContain(cpu.best);
  });

  for (const kernel of ['avx2', 'avx512'] as const) {
    itNeeds(cpu.kernels.includes(kernel) ? null : `this CPU has no ${kernel}`)(
      `${kernel} gives the scalar kernel's bytes on random bit patterns`,
      () => {
        const rand = rng(42);
        for (const inDtype of FLOATS) {
          for (const outDtype of FLOATS) {
            for (const w of WEIGHT_SETS) {
              for (const n of [1, 15, 16, 17, 63, 64, 65, 1031]) {
                const inputs = w.map(() => randomBuffer(inDtype, n, rand));
                const ref = native().mergeBuffers(args(inputs, inDtype, outDtype, w, 'scalar'));
                const got = native().mergeBuffers(args(inputs, inDtype, outDtype, w, kernel));
                if (Buffer.compare(Buffer.from(ref), Buffer.from(got)) !== 0) {
                  expect.fail(
                    `${kernel} differs from scalar: ${inDtype}->${outDtype}, ${w.length} inputs, ${n} elements`,
                  );
                }
              }
            }
          }
        }
      },
    );
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
            const v = mergeElement(
              inputs.map((b) => decode(inDtype, b, j)),
              a.weights32,
            );
            const want = encode(outDtype, v);
            const have = got.subarray(j * SIZE[outDtype], (j + 1) * SIZE[outDtype]);
            if (Buffer.compare(Buffer.from(want), Buffer.from(have)) !== 0) {
              expect.fail(
                `${inDtype}->${outDtype} w=${w} element ${j}: inputs ${inputs.map((b) => decode(inDtype, b, j)).join(', ')} want ${Buffer.from(want).toString('hex')} got ${Buffer.from(have).toString('hex')}`,
              );
            }
          }
        }
      }
    }
  });

  it('writes the canonical NaN and keeps subnormals and signed zeros', () => {
    const f32 = (bits: number[]) => new Uint8Array(new Uint32Array(bits).buffer);
    const out = (o: Uint8Array, d: F) =>
      Array.from({ length: o.length / SIZE[d] }, (_, i) =>
        d === 'F32'
          ? new DataView(o.buffer, o.byteOffset).getUint32(i * 4, true)
          : new DataView(o.buffer, o.byteOffset).getUint16(i * 2, true),
      );
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
  itNeeds(missing ? null : 'needs a CPU without AVX2 or AVX-512')(
    'refuses a kernel the CPU lacks with E_UNSUPPORTED',
    () => {
      if (!missing) return;
      expect(() => native().mergeBuffers(args([new Uint8Array(4)], 'F32', 'F32', [1], missing))).toThrow(
        /not supported/,
      );
    },
  );
});
