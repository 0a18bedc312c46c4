import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { merge, native, type MergeOptions } from '../../src/index.js';
import { ROOT } from '../helpers/cli.js';
import { gpuSkipReason } from '../helpers/gpu.js';
import { itNeeds } from '../helpers/requires.js';
import {
  average,
  dequantisedOutput,
  finiteCodes,
  requantisedOutput,
  scaleBytes,
  type Fp8,
  type Fp8Tensor,
} from '../helpers/fp8.js';
import { readSafetensors, rng, writeSafetensors } from '../helpers/safetensors.js';
import { scratch } from '../helpers/scratch.js';

// The FP8 golden cases (test/fixtures/fp8/README.md): one tensor and its scales per case, with the
// exact bytes of the merge in each output mode. The expected bytes were computed once by the
// independent reference (test/helpers/fp8.ts) and are checked here against it and the engine.
const FIXTURE = join(ROOT, 'test', 'fixtures', 'fp8', 'cases.json');

interface GoldenFp8 {
  case: string;
  about: string;
  fmt: Fp8;
  shape: [number, number];
  block: [number, number];
  /** Scale tensor shape as stored, dtype; null: no scale tensor. */
  scale: { shape: number[]; dtype: 'F32' | 'BF16' | 'F16' } | null;
  weights: number[];
  /** float32 weights the arithmetic uses, as hex bits. */
  w32: string[];
  /** Per checkpoint, oldest first: codes and scale bytes, hex. */
  codes: string[];
  scales: string[] | null;
  expected: { keep: { codes: string; scales: string | null }; BF16: string; F32: string };
}

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const bytes = (h: string) => Uint8Array.from(Buffer.from(h, 'hex'));
const f32hex = (x: number) => {
  const b = Buffer.alloc(4);
  b.writeFloatLE(x);
  return hex(b);
};
const fromF32hex = (h: string) => Buffer.from(h, 'hex').readFloatLE(0);

function tensorOf(c: Pick<GoldenFp8, 'fmt' | 'shape' | 'block' | 'scale' | 'codes' | 'scales'>): Fp8Tensor {
  return {
    fmt: c.fmt,
    rows: c.shape[0],
    cols: c.shape[1],
    blockRows: c.block[0],
    blockCols: c.block[1],
    codes: c.codes.map(bytes),
    scales: c.scales ? c.scales.map(bytes) : null,
    scaleDtype: c.scale?.dtype ?? 'F32',
  };
}

function expectedOf(c: Omit<GoldenFp8, 'expected'>): GoldenFp8['expected'] {
  const t = tensorOf(c);
  const acc = average(t, c.w32.map(fromF32hex));
  const keep = requantisedOutput(t, acc);
  return {
    keep: { codes: hex(keep.codes), scales: keep.scales ? hex(keep.scales) : null },
    BF16: hex(dequantisedOutput(acc, 'BF16')),
    F32: hex(dequantisedOutput(acc, 'F32')),
  };
}

/** The case definitions: seeded random codes and scales, with the hard values placed by hand. */
function defineCases(): Omit<GoldenFp8, 'expected'>[] {
  const rand = rng(2026);
  const sma = (n: number) => Array<number>(n).fill(1);
  const norm = (w: number[]) => w.map((x) => f32hex(Math.fround(x / w.reduce((a, b) => a + b, 0))));
  const scales = (dtype: 'F32' | 'BF16' | 'F16', n: number, make = () => 1e-3 * (0.5 + rand())) =>
    hex(scaleBytes(dtype, Array.from({ length: n }, make)));
  const def = (
    name: string,
    about: string,
    fmt: Fp8,
    shape: [number, number],
    block: [number, number],
    scale: GoldenFp8['scale'],
    weights: number[],
    codes: (k: number) => Uint8Array,
    scaleHex?: (k: number) => string,
  ): Omit<GoldenFp8, 'expected'> => {
    const n = weights.length;
    const count = scale ? scale.shape.reduce((a, b) => a * b, 1) : 0;
    return {
      case: name,
      about,
      fmt,
      shape,
      block,
      scale,
      weights,
      w32: norm(weights),
      codes: Array.from({ length: n }, (_, k) => hex(codes(k))),
      scales: scale ? Array.from({ length: n }, (_, k) => (scaleHex ? scaleHex(k) : scales(scale.dtype, count))) : null,
    };
  };
  const random = (fmt: Fp8, n: number) => () => finiteCodes(fmt, n, rand);
  return [
    def(
      'e4m3-block-edges',
      '3x5 with 2x2 blocks: partial blocks at the right and bottom edges',
      'F8_E4M3',
      [3, 5],
      [2, 2],
      { shape: [2, 3], dtype: 'F32' },
      sma(3),
      random('F8_E4M3', 15),
    ),
    def(
      'e4m3-zero-block',
      'a block of zeros in every checkpoint: scale 0, codes 0, no NaN',
      'F8_E4M3',
      [2, 4],
      [2, 2],
      { shape: [1, 2], dtype: 'F32' },
      sma(2),
      () => {
        const c = finiteCodes('F8_E4M3', 8, rand);
        for (const j of [0, 1, 4, 5]) c[j] = j === 4 ? 0x80 : 0;
        return c;
      },
    ),
    def(
      'e4m3-nan',
      'a NaN code (0x7F) in one checkpoint: the output code is 0x7F, the block scaled by its finite values',
      'F8_E4M3',
      [2, 2],
      [2, 2],
      { shape: [1, 1], dtype: 'F32' },
      sma(2),
      (k) => {
        const c = finiteCodes('F8_E4M3', 4, rand);
        if (k === 1) c[2] = 0xff;
        return c;
      },
    ),
    def(
      'e5m2-inf',
      '+inf and -inf (E5M2 0x7C, 0xFC): inf stays inf, inf - inf is NaN; infinities take no part in amax',
      'F8_E5M2',
      [2, 4],
      [2, 4],
      { shape: [1, 1], dtype: 'F32' },
      sma(2),
      (k) => {
        const c = finiteCodes('F8_E5M2', 8, rand);
        c[1] = 0x7c;
        if (k === 1) c[5] = 0x7c;
        if (k === 0) c[5] = 0xfc;
        return c;
      },
    ),
    def(
      'e4m3-f16-scale-saturation',
      'an F16 scale: amax/448 = 2.5 x 2^-24 stores as 2^-23 (ties to even), so amax / scale = 560 saturates to 448 (0x7E)',
      'F8_E4M3',
      [1, 2],
      [1, 2],
      { shape: [1, 1], dtype: 'F16' },
      sma(2),
      () => Uint8Array.from([0x38, 0xb0]),
      () => hex(scaleBytes('F16', [1120 * 2 ** -24])),
    ),
    def(
      'e4m3-subnormals',
      'one large value per block: the small ones requantise to E4M3 subnormals (and to zero)',
      'F8_E4M3',
      [2, 8],
      [2, 8],
      { shape: [1, 1], dtype: 'F32' },
      sma(2),
      (k) => {
        const c = Uint8Array.from([
          0x7e, 0x01, 0x02, 0x05, 0x09, 0x10, 0x81, 0x20, 0x03, 0x04, 0x06, 0x07, 0x08, 0x0a, 0x11, 0x18,
        ]);
        if (k === 1) c[3] = 0x06;
        return c;
      },
    ),
    def(
      'e4m3-no-scale-ties',
      'no scale tensor (scale 1): midpoints of neighbouring codes round to the even code',
      'F8_E4M3',
      [1, 6],
      [1, 6],
      null,
      sma(2),
      (k) =>
        k === 0
          ? Uint8Array.from([0x38, 0x39, 0x01, 0x07, 0x7e, 0x80])
          : Uint8Array.from([0x39, 0x3a, 0x02, 0x08, 0x7d, 0x00]),
    ),
    def(
      'e5m2-per-tensor-bf16-wma',
      'one BF16 scale for the tensor, WMA weights',
      'F8_E5M2',
      [3, 7],
      [3, 7],
      { shape: [], dtype: 'BF16' },
      [1, 2, 3],
      random('F8_E5M2', 21),
    ),
    def(
      'e4m3-per-row-ema',
      'one F32 scale per row ([rows, 1]), EMA-like explicit weights',
      'F8_E4M3',
      [4, 6],
      [1, 6],
      { shape: [4, 1], dtype: 'F32' },
      [0.64, 0.16, 0.2],
      random('F8_E4M3', 24),
    ),
  ];
}

const load = (): GoldenFp8[] => JSON.parse(readFileSync(FIXTURE, 'utf8')) as GoldenFp8[];

describe('FP8 golden cases (test/fixtures/fp8)', () => {
  // Writes the fixture from the definitions: once, on purpose (PMA_WRITE_FP8_GOLDEN=1), never in CI.
  it.runIf(process.env.PMA_WRITE_FP8_GOLDEN === '1')('writes cases.json', () => {
    const cases = defineCases().map((c) => ({ ...c, expected: expectedOf(c) }));
    writeFileSync(FIXTURE, `${JSON.stringify(cases, null, 2)}\n`);
  });

  it('the fixture is there, and the independent reference computes every expected byte', () => {
    expect(existsSync(FIXTURE)).toBe(true);
    const cases = load();
    expect(cases.map((c) => c.case)).toEqual(defineCases().map((c) => c.case));
    for (const c of cases) expect(expectedOf(c), c.case).toEqual(c.expected);
  });

  const { tmp, out } = scratch('pma-fp8-golden-');
  const kernels = native().cpuFeatures().kernels;
  const name = 'model.layers.0.mlp.down_proj.weight';
  const scaleName = `${name}_scale_inv`;

  /** The case's checkpoints, written once. */
  function writeCase(c: GoldenFp8): string {
    const dir = join(tmp, c.case);
    if (existsSync(dir)) return dir;
    c.codes.forEach((h, k) => {
      writeSafetensors(join(dir, `step-${k + 1}`, 'model.safetensors'), [
        { name, dtype: c.fmt, shape: c.shape, data: bytes(h) },
        ...(c.scale && c.scales
          ? [{ name: scaleName, dtype: c.scale.dtype, shape: c.scale.shape, data: bytes(c.scales[k] as string) }]
          : []),
      ]);
      // The block size is the config's (DeepSeek's quantization_config), 128 x 128 without one.
      const config = { quant_method: 'fp8', weight_block_size: c.block };
      if (c.scale)
        writeFileSync(join(dir, `step-${k + 1}`, 'config.json'), JSON.stringify({ quantization_config: config }));
    });
    return dir;
  }

  /** Merges the case in every output mode with each engine setting, bit for bit against the fixture. */
  async function expectCase(c: GoldenFp8, runs: Partial<MergeOptions>[]): Promise<void> {
    const dir = writeCase(c);
    for (const dtype of ['keep', 'bf16', 'f32'] as const) {
      for (const how of runs) {
        const o = out();
        const r = await merge({ inputs: dir, out: o, weights: c.weights, dtype, onNonfinite: 'warn', ...how });
        expect(r.plan.weights.w32.map(f32hex), c.case).toEqual(c.w32);
        const got = readSafetensors(join(o, 'model.safetensors')).tensors;
        const what = `${c.case} ${dtype} ${JSON.stringify(how)}`;
        if (dtype === 'keep') {
          expect(hex(got.get(name)?.data as Uint8Array), what).toBe(c.expected.keep.codes);
          expect(got.has(scaleName) ? hex(got.get(scaleName)?.data as Uint8Array) : null, what).toBe(
            c.expected.keep.scales,
          );
        } else {
          expect(hex(got.get(name)?.data as Uint8Array), what).toBe(c.expected[dtype === 'bf16' ? 'BF16' : 'F32']);
          expect(got.has(scaleName), what).toBe(false);
        }
      }
    }
  }

  const cases = existsSync(FIXTURE) ? load() : [];
  for (const c of cases) {
    it(`${c.case}: every output mode, every kernel, 1 and 2 threads, bit for bit`, async () => {
      await expectCase(c, [
        ...kernels.map((kernel) => ({ threads: 1, kernel })),
        { threads: 2, chunkSize: 8, io: 'mmap' },
      ]);
    });
  }

  itNeeds(gpuSkipReason)('every case with --device cuda (its FP8 bands run on the host), bit for bit', async () => {
    for (const c of cases) await expectCase(c, [{ device: 'cuda', threads: 2, chunkSize: 8 }]);
  });
});
