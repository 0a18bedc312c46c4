import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { beforeAll, describe, expect, it } from 'vitest';

import { analyze, merge, native } from '../../src/index.js';
import { pma } from '../helpers/cli.js';
import { rejected } from '../helpers/errors.js';
import {
  FP8_MAX,
  average,
  decodeFp8,
  dequantise,
  dequantisedOutput,
  finiteCodes,
  requantisedOutput,
  scaleBytes,
  type Fp8,
  type Fp8Tensor,
} from '../helpers/fp8.js';
import { mergeTensor } from '../helpers/reference.js';
import { randomData, readSafetensors, rng, writeSafetensors, type RawTensor } from '../helpers/safetensors.js';
import { scratch } from '../helpers/scratch.js';

// A DeepSeek-V3-shaped checkpoint in miniature: block-scaled F8_E4M3 linear weights (edge blocks
// partial, a scale stored in the other shard than its weight, a block that is zero in every
// checkpoint) beside BF16 embeddings and norms, saved three times.
const { tmp, out } = scratch('pma-fp8-');

interface Fp8Spec {
  name: string;
  fmt: Fp8;
  rows: number;
  cols: number;
  block: [number, number];
  scaleSuffix: '_scale_inv' | '_scale';
  scaleDtype: 'F32' | 'BF16' | 'F16';
  /** Scale grid shape as stored (default: the block grid). */
  scaleShape?: number[];
  zero?: boolean;
}

const BF16 = [
  { name: 'model.embed_tokens.weight', shape: [64, 96] },
  { name: 'model.layers.0.input_layernorm.weight', shape: [96] },
  { name: 'model.norm.weight', shape: [96] },
  { name: 'lm_head.weight', shape: [64, 96] },
];
const q = (name: string, rows: number, cols: number, extra: Partial<Fp8Spec> = {}): Fp8Spec => ({
  name,
  fmt: 'F8_E4M3',
  rows,
  cols,
  block: [128, 128],
  scaleSuffix: '_scale_inv',
  scaleDtype: 'F32',
  ...extra,
});
const DEEPSEEK: Fp8Spec[] = [
  q('model.layers.0.self_attn.q_proj.weight', 300, 260),
  q('model.layers.0.mlp.experts.0.gate_proj.weight', 256, 96),
  q('model.layers.0.mlp.experts.1.gate_proj.weight', 130, 129),
  q('model.layers.0.mlp.experts.1.down_proj.weight', 96, 130),
  q('model.layers.1.self_attn.o_proj.weight', 128, 128, { zero: true }),
];
const QUANT_CONFIG = {
  quant_method: 'fp8',
  fmt: 'e4m3',
  activation_scheme: 'dynamic',
  weight_block_size: [128, 128],
};

const grid = (s: Fp8Spec) => [Math.ceil(s.rows / s.block[0]), Math.ceil(s.cols / s.block[1])];
const scaleName = (s: Fp8Spec) => s.name + s.scaleSuffix;

interface Written {
  dir: string;
  tensors: Map<string, RawTensor>;
}

/**
 * Writes one checkpoint: BF16 tensors random, FP8 codes random finite, scales random in
 * [1e-4, 1e-2) (zero blocks: codes 0). Two shards: the first FP8 weight's scale opens shard 2.
 */
function writeQuantized(
  dir: string,
  specs: Fp8Spec[],
  seed: number,
  config: object | null,
  bf16 = BF16,
  mutate: (t: Map<string, RawTensor>) => void = () => {},
): Written {
  const rand = rng(seed);
  const tensors: RawTensor[] = bf16.map((t) => ({
    name: t.name,
    dtype: 'BF16',
    shape: t.shape,
    data: randomData(
      'BF16',
      t.shape.reduce((a, b) => a * b, 1),
      rand,
    ),
  }));
  const scales: RawTensor[] = [];
  for (const s of specs) {
    const codes = s.zero ? new Uint8Array(s.rows * s.cols) : finiteCodes(s.fmt, s.rows * s.cols, rand);
    tensors.push({ name: s.name, dtype: s.fmt, shape: [s.rows, s.cols], data: codes });
    const shape = s.scaleShape ?? grid(s);
    const n = shape.reduce((a, b) => a * b, 1);
    scales.push({
      name: scaleName(s),
      dtype: s.scaleDtype,
      shape,
      data: scaleBytes(
        s.scaleDtype,
        Array.from({ length: n }, () => 1e-4 + rand() * 1e-2),
      ),
    });
  }
  const byName = new Map([...tensors, ...scales].map((t) => [t.name, t]));
  mutate(byName);
  const first = tensors.slice(0, Math.max(0, bf16.length - 2)).concat(tensors.slice(bf16.length, bf16.length + 1));
  const second = tensors.filter((t) => !first.includes(t)).concat(scales);
  mkdirSync(dir, { recursive: true });
  const weightMap: Record<string, string> = {};
  for (const [i, part] of [first, second].entries()) {
    const file = `model-0000${i + 1}-of-00002.safetensors`;
    writeSafetensors(join(dir, file), part);
    for (const t of part) weightMap[t.name] = file;
  }
  writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
  writeFileSync(
    join(dir, 'config.json'),
    JSON.stringify({
      model_type: 'deepseek_v3',
      torch_dtype: 'bfloat16',
      ...(config ? { quantization_config: config } : {}),
    }),
  );
  return { dir, tensors: byName };
}

/** The reference's view of one FP8 tensor across the written checkpoints. */
function fp8Of(s: Fp8Spec, cks: Written[]): Fp8Tensor {
  return {
    fmt: s.fmt,
    rows: s.rows,
    cols: s.cols,
    blockRows: s.block[0],
    blockCols: s.block[1],
    codes: cks.map((c) => (c.tensors.get(s.name) as RawTensor).data),
    scales: cks.map((c) => (c.tensors.get(scaleName(s)) as RawTensor).data),
    scaleDtype: s.scaleDtype,
  };
}

/** Every tensor of an output directory (sharded or not), by name. */
function outputTensors(dir: string): Map<string, RawTensor> {
  const files = existsSync(join(dir, 'model.safetensors.index.json'))
    ? [
        ...new Set(
          Object.values(
            (
              JSON.parse(readFileSync(join(dir, 'model.safetensors.index.json'), 'utf8')) as {
                weight_map: Record<string, string>;
              }
            ).weight_map,
          ),
        ),
      ]
    : ['model.safetensors'];
  const all = new Map<string, RawTensor>();
  for (const f of files) for (const t of readSafetensors(join(dir, f)).tensors.values()) all.set(t.name, t);
  return all;
}

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

const run = join(tmp, 'deepseek');
const STEPS = [1000, 2000, 3000];
let cks: Written[] = [];
beforeAll(() => {
  cks = STEPS.map((s, i) => writeQuantized(join(run, `checkpoint-${s}`), DEEPSEEK, 10 + i, QUANT_CONFIG));
});

const W3 = [1, 1, 1].map(() => Math.fround(1 / 3));

describe('block-scaled FP8 (DeepSeek-V3 layout)', () => {
  it('keep (default): requantised with new block scales, the bytes of the reference, within one FP8 step of the fp32 average', async () => {
    const o = out();
    const r = await merge({ inputs: run, out: o });
    expect(r.plan.weights.w32).toEqual(W3);
    expect(r.plan.notes.join('\n')).toMatch(
      /5 FP8 tensor\(s\) \(F8_E4M3, 128x128 blocks of F32 scales\) are dequantised, averaged and requantised/,
    );
    const got = outputTensors(o);
    for (const s of DEEPSEEK) {
      const t = fp8Of(s, cks);
      const acc = average(t, W3);
      const want = requantisedOutput(t, acc);
      const codes = got.get(s.name) as RawTensor;
      const scales = got.get(scaleName(s)) as RawTensor;
      expect([codes.dtype, codes.shape, scales.dtype, scales.shape]).toEqual([s.fmt, [s.rows, s.cols], 'F32', grid(s)]);
      expect(hex(codes.data), s.name).toBe(hex(want.codes));
      expect(hex(scales.data), scaleName(s)).toBe(hex(want.scales as Uint8Array));
      // The requantisation error bound, element by element.
      const back = dequantise({ ...t, codes: [codes.data], scales: [scales.data] }, 0);
      const bound = stepBound(s.fmt);
      back.forEach((v, j) => {
        const sc = new DataView(scales.data.buffer, scales.data.byteOffset).getFloat32(blockIndex(s, j) * 4, true);
        expect(Math.abs(v - (acc[j] as number)), `${s.name}[${j}]`).toBeLessThanOrEqual(bound(acc[j] as number, sc));
      });
      if (s.zero) expect(new Set(scales.data)).toEqual(new Set([0]));
    }
    for (const b of BF16) {
      const want = mergeTensor(
        'BF16',
        'BF16',
        cks.map((c) => (c.tensors.get(b.name) as RawTensor).data),
        W3,
      );
      expect(hex((got.get(b.name) as RawTensor).data), b.name).toBe(hex(want));
    }
    const config = JSON.parse(readFileSync(join(o, 'config.json'), 'utf8')) as Record<string, unknown>;
    expect(config.quantization_config).toEqual(QUANT_CONFIG);
    const record = JSON.parse(readFileSync(join(o, 'pma.json'), 'utf8')) as Record<string, unknown>;
    expect(record.quantization).toEqual({ method: 'fp8', fp8: { tensors: 5, output: 'requantised' }, copied: null });
  });

  it('every kernel, 2 threads and tiny chunks, pread and mmap, give the same bytes', async () => {
    const first = out();
    await merge({ inputs: run, out: first, threads: 1, kernel: 'scalar' });
    const base = outputTensors(first);
    const runs: Parameters<typeof merge>[0][] = [
      ...native()
        .cpuFeatures()
        .kernels.map((kernel) => ({ inputs: run, out: out(), threads: 1, kernel })),
      { inputs: run, out: out(), threads: 2, chunkSize: 1000, io: 'mmap' },
      { inputs: run, out: out(), threads: 2, chunkSize: 1000, dtype: 'keep', maxShardSize: 40_000 },
    ];
    for (const opts of runs) {
      const r = await merge(opts);
      if (opts.chunkSize) expect(r.plan.chunks.length).toBeGreaterThan(5);
      const got = outputTensors(opts.out);
      if (opts.maxShardSize) {
        // Sharded: each weight's new scales are written into the weight's own shard.
        const index = JSON.parse(readFileSync(join(opts.out, 'model.safetensors.index.json'), 'utf8')) as {
          weight_map: Record<string, string>;
        };
        expect(new Set(Object.values(index.weight_map)).size).toBeGreaterThan(3);
        for (const spec of DEEPSEEK) expect(index.weight_map[scaleName(spec)]).toBe(index.weight_map[spec.name]);
      }
      for (const [name, t] of base)
        expect(hex((got.get(name) as RawTensor).data), `${name} ${JSON.stringify(opts)}`).toBe(hex(t.data));
    }
  });

  it('--dtype bf16 and f32: dequantised, equal to the reference average; scales and quantization_config dropped', async () => {
    for (const dtype of ['bf16', 'f32'] as const) {
      const o = out();
      await merge({ inputs: run, out: o, dtype, threads: 2, chunkSize: 3000 });
      const got = outputTensors(o);
      for (const s of DEEPSEEK) {
        const want = dequantisedOutput(average(fp8Of(s, cks), W3), dtype.toUpperCase());
        const t = got.get(s.name) as RawTensor;
        expect([t.dtype, t.shape]).toEqual([dtype.toUpperCase(), [s.rows, s.cols]]);
        expect(hex(t.data), s.name).toBe(hex(want));
        expect(got.has(scaleName(s))).toBe(false);
      }
      const config = JSON.parse(readFileSync(join(o, 'config.json'), 'utf8')) as Record<string, unknown>;
      expect(config.quantization_config).toBeUndefined();
      expect(config.torch_dtype).toBe(dtype === 'bf16' ? 'bfloat16' : 'float32');
      expect(pma(['verify', o]).status).toBe(0);
    }
  });

  it('pma analyze compares the dequantised values', async () => {
    const r = await analyze({ inputs: run, threads: 2 });
    const s = DEEPSEEK[0] as Fp8Spec;
    const stat = r.tensors.find((t) => t.name === s.name);
    const newest = dequantise(fp8Of(s, cks), 2);
    const norm = Math.sqrt(newest.reduce((a, v) => a + v * v, 0));
    expect(stat?.newestNorm).toBeCloseTo(norm, 6);
    expect(r.tensors.some((t) => t.name === scaleName(s))).toBe(false);
  });

  it('pma merge --dry-run counts the scale tensors the FP8 ops write', () => {
    const r = pma(['merge', run, '--out', out(), '--dry-run']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain('work: 9 tensors averaged, 0 copied, 5 FP8 scale tensor(s) written anew, in ');
  });

  it('pma inspect shows each FP8 tensor with its scale and block', () => {
    const r = pma(['inspect', run, '--tensors']);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('quantization: fp8');
    expect(r.stdout).toContain('5 FP8 tensor(s) averaged: F8_E4M3, F32, 128x128 blocks');
    expect(r.stdout).toMatch(
      /model\.layers\.0\.self_attn\.q_proj\.weight {2}F8_E4M3 {2}\[300, 260\] .* {2}scale model\.layers\.0\.self_attn\.q_proj\.weight_scale_inv F32, 128x128 blocks/,
    );
  });
});

describe('other FP8 layouts', () => {
  const other = join(tmp, 'other');
  const SPECS: Fp8Spec[] = [
    // compressed-tensors / FBGEMM: a scalar or one scale per row, named _scale, BF16 or F32.
    q('a.weight', 70, 33, { scaleSuffix: '_scale', scaleShape: [], block: [70, 33] }),
    q('b.weight', 40, 50, { scaleSuffix: '_scale', scaleShape: [40, 1], block: [1, 50], scaleDtype: 'BF16' }),
    q('c.weight', 200, 300, { fmt: 'F8_E5M2', scaleDtype: 'F16' }),
  ];
  let ocks: Written[] = [];
  beforeAll(() => {
    ocks = [0, 1, 2, 3].map((i) => writeQuantized(join(other, `step-${i + 1}`), SPECS, 40 + i, null, BF16.slice(0, 1)));
  });

  it('per-tensor, per-row and E5M2 with F16 scales: the reference bytes, kept and dequantised, with EMA weights', async () => {
    for (const dtype of ['keep', 'f16'] as const) {
      const o = out();
      const r = await merge({ inputs: other, out: o, method: 'ema', alpha: 0.3, dtype, chunkSize: 2000, threads: 2 });
      const got = outputTensors(o);
      for (const s of SPECS) {
        const t = fp8Of(s, ocks);
        const acc = average(t, r.plan.weights.w32);
        if (dtype === 'keep') {
          const want = requantisedOutput(t, acc);
          expect(hex((got.get(s.name) as RawTensor).data), s.name).toBe(hex(want.codes));
          expect(hex((got.get(scaleName(s)) as RawTensor).data), scaleName(s)).toBe(hex(want.scales as Uint8Array));
          expect((got.get(scaleName(s)) as RawTensor).shape).toEqual(s.scaleShape ?? grid(s));
        } else {
          expect(hex((got.get(s.name) as RawTensor).data), s.name).toBe(hex(dequantisedOutput(acc, 'F16')));
        }
      }
    }
  });

  it('NaN and infinity: counted as non-finite inputs; with --on-nonfinite warn, NaN codes 0x7F, E5M2 infinity kept, blocks scaled by their finite values', async () => {
    const dir = join(tmp, 'nan');
    const poison = (t: Map<string, RawTensor>) => {
      const c = (t.get('c.weight') as RawTensor).data;
      c[5] = 0x7f; // NaN
      c[300 * 3 + 7] = 0xfc; // -inf
    };
    const wr = [0, 1].map((i) =>
      writeQuantized(join(dir, `step-${i + 1}`), SPECS.slice(2), 60 + i, null, [], i === 1 ? poison : undefined),
    );
    const err = await rejected(merge({ inputs: dir, out: out() }));
    expect(err.code).toBe('E_NONFINITE');
    const o = out();
    await merge({ inputs: dir, out: o, onNonfinite: 'warn' });
    const t = fp8Of(SPECS[2] as Fp8Spec, wr);
    const want = requantisedOutput(t, average(t, [0.5, 0.5]));
    const got = outputTensors(o);
    expect(got.get('c.weight')?.data[5]).toBe(0x7f);
    expect(got.get('c.weight')?.data[300 * 3 + 7]).toBe(0xfc);
    expect(hex((got.get('c.weight') as RawTensor).data)).toBe(hex(want.codes));
    expect(hex((got.get('c.weight_scale_inv') as RawTensor).data)).toBe(hex(want.scales as Uint8Array));
  });

  it('NaN/Inf are counted on the dequantised values: NaN codes, and a scale that is infinite or overflows a finite code', async () => {
    const dir = join(tmp, 'scales');
    const spec = SPECS[0] as Fp8Spec; // a.weight, one F32 scale for the tensor
    const cases: [string, number, (t: Map<string, RawTensor>) => void][] = [
      ['a NaN code', 1, (t) => void ((t.get('a.weight') as RawTensor).data[3] = 0x7f)],
      ['an infinite scale', 70 * 33, (t) => setScale(t, Infinity)],
      ['a scale that overflows the largest codes', -1, (t) => setScale(t, 1e37)],
    ];
    function setScale(t: Map<string, RawTensor>, value: number): void {
      (t.get('a.weight_scale') as RawTensor).data.set(scaleBytes('F32', [value]));
    }
    for (const [what, expected, poison] of cases) {
      const run = join(dir, what.replace(/ /g, '-'));
      const two = [0, 1].map((i) =>
        writeQuantized(join(run, `step-${i + 1}`), [spec], 90 + i, null, [], i === 1 ? poison : undefined),
      );
      const t = fp8Of(spec, two);
      const bad = dequantise(t, 1).filter((x) => !Number.isFinite(x)).length;
      if (expected >= 0) expect(bad, what).toBe(expected);
      else expect(bad, what).toBeGreaterThan(0);
      const r = await merge({ inputs: run, out: out(), onNonfinite: 'warn' });
      expect(
        r.nonfinite.map((f) => [f.tensor, f.checkpoint, f.count]),
        what,
      ).toEqual([['a.weight', join(run, 'step-2'), bad]]);
    }
  });

  it('six checkpoints (the engine takes them four at a time): the reference bytes; a NaN is charged to its own checkpoint', async () => {
    const dir = join(tmp, 'six');
    const nan = (t: Map<string, RawTensor>) => {
      (t.get('a.weight') as RawTensor).data[17] = 0xff;
    };
    const six = [0, 1, 2, 3, 4, 5].map((i) =>
      writeQuantized(join(dir, `step-${i + 1}`), SPECS, 70 + i, null, [], i === 4 ? nan : undefined),
    );
    const err = await rejected(merge({ inputs: dir, out: out() }));
    expect(err.code).toBe('E_NONFINITE');
    expect(err.file).toBe(join(dir, 'step-5'));
    for (const dtype of ['keep', 'f32'] as const) {
      const o = out();
      const r = await merge({ inputs: dir, out: o, method: 'wma', dtype, onNonfinite: 'warn', chunkSize: 5000 });
      const got = outputTensors(o);
      for (const s of SPECS) {
        const t = fp8Of(s, six);
        const acc = average(t, r.plan.weights.w32);
        const want = dtype === 'keep' ? requantisedOutput(t, acc).codes : dequantisedOutput(acc, 'F32');
        expect(hex((got.get(s.name) as RawTensor).data), `${s.name} ${dtype}`).toBe(hex(want));
      }
    }
  });

  it('FP8 without scales (no quantization_config) is averaged with scale 1: midpoints round to the even code', async () => {
    const dir = join(tmp, 'plain');
    const codes = [
      Uint8Array.from([0x38, 0x39, 0x01, 0x07, 0x7e, 0x80]),
      Uint8Array.from([0x39, 0x3a, 0x02, 0x08, 0x7d, 0x00]),
    ];
    for (const [i, data] of codes.entries()) {
      writeSafetensors(join(dir, `step-${i + 1}`, 'model.safetensors'), [
        { name: 'p', dtype: 'F8_E4M3', shape: [6], data },
      ]);
    }
    const o = out();
    await merge({ inputs: dir, out: o });
    const got = readSafetensors(join(o, 'model.safetensors')).tensors.get('p') as RawTensor;
    // 1.0|1.125 -> 1.0625 ties to 0x38 (even); 1.125|1.25 -> 0x3a; 2^-9|2*2^-9 -> 1.5*2^-9 ties to
    // 0x02; 7*2^-9|2^-6 -> 0x08; 448|416 -> 432: 0x7e (448) or 0x7d (416)? a tie, even 0x7e; -0|+0 -> +0.
    expect([...got.data]).toEqual([0x38, 0x3a, 0x02, 0x08, 0x7e, 0x00]);
    expect([...got.data].map((c) => decodeFp8('F8_E4M3', c))).toEqual([1, 1.25, 2 * 2 ** -9, 2 ** -6, 448, 0]);
  });
});

describe('quantization pma cannot average: refused, or copied on request', () => {
  const gptq = join(tmp, 'gptq');
  const badFp8 = join(tmp, 'bad-fp8');
  beforeAll(() => {
    for (const [i, step] of [100, 200].entries()) {
      const rand = rng(80 + i);
      const t = (name: string, dtype: string, shape: number[]): RawTensor => ({
        name,
        dtype,
        shape,
        data: randomData(
          dtype as never,
          shape.reduce((a, b) => a * b, 1),
          rand,
        ),
      });
      const dir = join(gptq, `checkpoint-${step}`);
      writeSafetensors(join(dir, 'model.safetensors'), [
        t('model.embed_tokens.weight', 'BF16', [32, 64]),
        t('model.layers.0.self_attn.q_proj.qweight', 'I32', [8, 64]),
        t('model.layers.0.self_attn.q_proj.qzeros', 'I32', [1, 8]),
        t('model.layers.0.self_attn.q_proj.scales', 'F16', [1, 64]),
        t('model.layers.0.self_attn.q_proj.g_idx', 'I32', [64]),
        t('model.norm.weight', 'BF16', [64]),
      ]);
      writeFileSync(
        join(dir, 'config.json'),
        JSON.stringify({ model_type: 'llama', quantization_config: { quant_method: 'gptq', bits: 4, group_size: 64 } }),
      );
      writeQuantized(
        join(badFp8, `checkpoint-${step}`),
        [q('x.weight', 256, 256, { scaleShape: [3, 5] })],
        90 + i,
        QUANT_CONFIG,
        [],
      );
    }
  });

  it('a GPTQ checkpoint is refused before writing (exit 2), naming the scheme and its tensors', async () => {
    const o = out();
    const err = await rejected(merge({ inputs: gptq, out: o }));
    expect(err.code).toBe('E_QUANTIZED');
    expect(err.message).toMatch(
      /^checkpoint-200 is quantized \(gptq; .*\) and pma cannot average its quantized tensors: model\.layers\.0\.self_attn\.q_proj\.qweight, .*--copy-quantized/,
    );
    expect(err.file).toBe(join(gptq, 'checkpoint-200', 'config.json'));
    expect(existsSync(o)).toBe(false);
    const cli = pma(['merge', gptq, '--out', o]);
    expect(cli.status).toBe(2);
    expect(cli.stderr).toContain('E_QUANTIZED');
    expect(existsSync(o)).toBe(false);
    const inspect = pma(['inspect', gptq]);
    expect(inspect.status).toBe(2);
    expect(inspect.stdout).toContain('QUANTIZED with gptq');
  });

  it('--copy-quantized copies them from the newest, averages the rest and records it in pma.json', async () => {
    const o = out();
    const cli = pma(['merge', gptq, '--out', o, '--copy-quantized']);
    expect(cli.status, cli.stderr).toBe(0);
    expect(cli.stderr + cli.stdout).toContain('--copy-quantized: 4 tensor(s) quantized with gptq are copied');
    expect(cli.stderr + cli.stdout).not.toContain('are not averaged'); // said once, by the warning
    const newest = [...readSafetensors(join(gptq, 'checkpoint-200', 'model.safetensors')).tensors.values()];
    const oldest = [...readSafetensors(join(gptq, 'checkpoint-100', 'model.safetensors')).tensors.values()];
    const got = readSafetensors(join(o, 'model.safetensors')).tensors;
    for (const t of newest) {
      if (t.dtype === 'BF16') {
        const old = oldest.find((x) => x.name === t.name) as RawTensor;
        expect(hex((got.get(t.name) as RawTensor).data)).toBe(
          hex(mergeTensor('BF16', 'BF16', [old.data, t.data], [0.5, 0.5])),
        );
      } else {
        expect(hex((got.get(t.name) as RawTensor).data), t.name).toBe(hex(t.data));
      }
    }
    const record = JSON.parse(readFileSync(join(o, 'pma.json'), 'utf8')) as {
      quantization: { copied: { tensors: string[] } };
    };
    record.quantization.copied.tensors.sort();
    expect(record.quantization).toEqual({
      method: 'gptq',
      fp8: null,
      copied: {
        scheme: 'gptq',
        tensors: [
          'model.layers.0.self_attn.q_proj.qweight',
          'model.layers.0.self_attn.q_proj.qzeros',
          'model.layers.0.self_attn.q_proj.g_idx',
          'model.layers.0.self_attn.q_proj.scales',
        ].sort(),
      },
    });
  });

  it('FP8 with a scale layout pma does not know is refused; --copy-quantized copies weight and scale', async () => {
    const err = await rejected(merge({ inputs: badFp8, out: out() }));
    expect(err.code).toBe('E_QUANTIZED');
    expect(err.message).toContain('scale x.weight_scale_inv [3, 5] fits neither 128 x 128 blocks');
    expect(err.tensor).toBe('x.weight');
    const o = out();
    const r = await merge({ inputs: badFp8, out: o, copyQuantized: true });
    expect(r.plan.quantization?.copied?.tensors.sort()).toEqual(['x.weight', 'x.weight_scale_inv']);
    const got = outputTensors(o);
    const newest = outputTensors(join(badFp8, 'checkpoint-200'));
    for (const n of ['x.weight', 'x.weight_scale_inv'])
      expect(hex((got.get(n) as RawTensor).data)).toBe(hex((newest.get(n) as RawTensor).data));
  });
});

/** Element j's block index in the scale grid. */
function blockIndex(s: Fp8Spec, j: number): number {
  return (
    Math.floor(Math.floor(j / s.cols) / s.block[0]) * Math.ceil(s.cols / s.block[1]) +
    Math.floor((j % s.cols) / s.block[1])
  );
}

/**
 * The requantisation bound: |dequantised output - average| is at most one step of the FP8 grid
 * at that magnitude, times the block scale (a value at the block's amax rounds to the largest).
 */
function stepBound(f: Fp8): (x: number, scale: number) => number {
  const mant = f === 'F8_E4M3' ? 3 : 2;
  const minNormal = f === 'F8_E4M3' ? 2 ** -6 : 2 ** -14;
  return (x, scale) => {
    if (scale === 0) return 0;
    const a = Math.min(Math.abs(x) / scale, FP8_MAX[f]);
    const e = Math.max(Math.floor(Math.log2(Math.max(a, minNormal))), Math.log2(minNormal));
    return 2 ** (e - mant) * scale * (1 + 2 ** -20);
  };
}
