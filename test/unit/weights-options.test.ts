import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { GOLDEN } from '../helpers/cli.js';
import { thrownSync } from '../helpers/errors.js';
import { resolveMergeOptions, type MergeOptions } from '../../src/merge/options.js';
import { chunkSizeFor, DEFAULT_MAX_SHARD_SIZE, resolvePlanOptions, type PlanOptions } from '../../src/plan/options.js';
import {
  computeWeights,
  decayCurve,
  decayWeights,
  SCHEDULES,
  type Method,
  type Schedule,
} from '../../src/plan/weights.js';
import {
  defaultGpuMemory,
  defaultThreads,
  gpuStaging,
  parseDevice,
  type DeviceRequest,
} from '../../src/run/devices.js';
import { byteSize } from '../../src/validate.js';

interface GoldenCase {
  case: string;
  method: Method;
  inputs_steps: number[];
  weights: number[];
  output_dtype: string;
  alpha?: number;
}

const golden = JSON.parse(readFileSync(join(GOLDEN, 'expected', 'cases.json'), 'utf8')) as { cases: GoldenCase[] };

describe('computeWeights against the golden cases', () => {
  it('has cases for every method', () => {
    expect(new Set(golden.cases.map((c) => c.method))).toEqual(new Set(['sma', 'wma', 'ema', 'weights']));
  });

  it.each(golden.cases.map((c) => [c.case, c] as const))('%s', (_name, c) => {
    const n = c.inputs_steps.length;
    const opts =
      c.method === 'weights' ? { weights: c.weights } : c.method === 'ema' ? { alpha: c.alpha as number } : {};
    const w = computeWeights(c.method, n, opts);
    expect(w.w64).toHaveLength(n);
    expect(w.w32).toEqual(c.weights.map((x) => Math.fround(x)));
    for (const [i, x] of c.weights.entries()) expect(w.w64[i]).toBeCloseTo(x, 15);
    for (const [i, x] of w.w64.entries()) expect(w.w32[i]).toBe(Math.fround(x));
    expect(w.w64.reduce((s, x) => s + x, 0)).toBeCloseTo(1, 14);
  });
});

describe('computeWeights', () => {
  it('sma: 1/N each', () => {
    expect(computeWeights('sma', 1).w64).toEqual([1]);
    expect(computeWeights('sma', 5).w64).toEqual([0.2, 0.2, 0.2, 0.2, 0.2]);
    expect(computeWeights('sma', 3).w32).toEqual([Math.fround(1 / 3), Math.fround(1 / 3), Math.fround(1 / 3)]);
  });

  it('wma: i / sum(i), oldest lightest', () => {
    expect(computeWeights('wma', 3).w64).toEqual([1 / 6, 2 / 6, 3 / 6]);
  });

  it('ema: default alpha 0.2; the oldest gets (1-alpha)^(N-1)', () => {
    expect(computeWeights('ema', 1).w64).toEqual([1]);
    const w = computeWeights('ema', 3, { alpha: 0.5 }).w64;
    expect(w).toEqual([0.25, 0.25, 0.5]);
    const d = computeWeights('ema', 2).w64;
    expect(d[0]).toBeCloseTo(0.8, 15);
    expect(d[1]).toBeCloseTo(0.2, 15);
  });

  it('normalises explicit weights to sum 1', () => {
    expect(computeWeights('weights', 3, { weights: [1, 1, 2] }).w64).toEqual([0.25, 0.25, 0.5]);
    expect(computeWeights('weights', 2, { weights: [2, 6] }).w64).toEqual([0.25, 0.75]);
    expect(computeWeights('weights', 3, { weights: [0, 0, 5] }).w64).toEqual([0, 0, 1]);
    const w = computeWeights('weights', 3, { weights: [3, 3, 3] });
    expect(w.w32).toEqual(w.w64.map((x) => Math.fround(x)));
  });

  it('refuses a wrong count of explicit weights: E_USAGE', () => {
    const err = thrownSync(() => computeWeights('weights', 3, { weights: [1, 2] }));
    expect(err.code).toBe('E_USAGE');
    expect(err.message).toMatch(/--weights lists 2 weights for 3 selected checkpoints/);
    expect(thrownSync(() => computeWeights('weights', 2, { weights: [1, 2, 3] })).code).toBe('E_USAGE');
    expect(thrownSync(() => computeWeights('weights', 2)).message).toMatch(/lists 0 weights for 2/);
  });

  it('refuses weights summing to zero: E_USAGE', () => {
    const err = thrownSync(() => computeWeights('weights', 2, { weights: [0, 0] }));
    expect(err.code).toBe('E_USAGE');
    expect(err.message).toMatch(/sum to a positive finite number/);
  });
});

describe('decay weights (WSM: c_j = d_j - d_(j+1), c_K = d_K)', () => {
  // Hand-computed from the curves in decayCurve's comment, for a window of K = 4 checkpoints.
  const s2 = Math.SQRT1_2;
  const cases: [Schedule, number[], number[]][] = [
    ['linear', [1, 0.75, 0.5, 0.25], [0.25, 0.25, 0.25, 0.25]],
    ['cosine', [1, (1 + s2) / 2, 0.5, (1 - s2) / 2], [(1 - s2) / 2, s2 / 2, s2 / 2, (1 - s2) / 2]],
    ['1-sqrt', [1, 0.5, 1 - s2, 1 - Math.sqrt(3) / 2], [0.5, s2 - 0.5, Math.sqrt(3) / 2 - s2, 1 - Math.sqrt(3) / 2]],
    ['inverse-sqrt', [1, s2, 1 / Math.sqrt(3), 0.5], [1 - s2, s2 - 1 / Math.sqrt(3), 1 / Math.sqrt(3) - 0.5, 0.5]],
  ];
  it.each(cases)('%s', (schedule, curve, weights) => {
    decayCurve(schedule, 4).forEach((x, i) => expect(x).toBeCloseTo(curve[i] as number, 15));
    decayWeights(schedule, 4).forEach((x, i) => expect(x).toBeCloseTo(weights[i] as number, 15));
    // d_1 = 1, so the weights already sum to 1 and nothing falls on the checkpoint before the window.
    const w = computeWeights('decay', 4, { schedule });
    w.w64.forEach((x, i) => expect(x).toBeCloseTo(weights[i] as number, 15));
    expect(w.w64.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 15);
  });

  it('linear decay is the simple average; every curve gives non-negative weights, newest the last step', () => {
    expect(computeWeights('decay', 7, { schedule: 'linear' }).w64.map((x) => x * 7)).toEqual(
      Array.from({ length: 7 }, () => expect.closeTo(1, 14)),
    );
    for (const schedule of SCHEDULES) {
      for (const k of [1, 2, 3, 10, 40]) {
        const w = decayWeights(schedule, k);
        expect(w.every((x) => x >= 0)).toBe(true);
        expect(w[k - 1]).toBeCloseTo(decayCurve(schedule, k)[k - 1] as number, 15);
      }
    }
  });
});

const GENERIC = /^invalid [A-Za-z]+(\[\d+\])?: expected .+, got .+$/;

function usage(f: () => unknown, message: string): void {
  const err = thrownSync(f);
  expect(err.code).toBe('E_USAGE');
  expect(err.message).toBe(message);
  expect(err.message).toMatch(GENERIC);
}

const plan = (o: Partial<PlanOptions>) => () => resolvePlanOptions({ inputs: '/run', ...o });
const run = (o: Partial<MergeOptions>) => () => resolveMergeOptions({ inputs: '/run', out: '/out', ...o });

describe('resolvePlanOptions', () => {
  it('fills in the defaults', () => {
    expect(resolvePlanOptions({ inputs: '/run' })).toEqual({
      inputs: ['/run'],
      selection: {},
      tokens: null,
      method: 'sma',
      alpha: 0.2,
      schedule: null,
      weights: undefined,
      dtype: 'keep',
      accumulate: 'f32',
      checksum: 'blake3',
      maxShardSize: DEFAULT_MAX_SHARD_SIZE,
      maxShardSizeSet: false,
      chunkSize: null,
      allowConfigMismatch: false,
      format: null,
      average: null,
      exclude: [],
      copyQuantized: false,
      part: null,
    });
    expect(DEFAULT_MAX_SHARD_SIZE).toBe(5e9);
  });

  it('sizes default chunks to about 1/64 of the merge, between 16 MiB and 256 MiB', () => {
    expect(chunkSizeFor(1e3)).toBe(16 * 2 ** 20);
    expect(chunkSizeFor(6e9)).toBe(Math.ceil(6e9 / 64));
    expect(chunkSizeFor(4.6e12)).toBe(256 * 2 ** 20);
  });

  it('accepts valid values, including numbers written as strings', () => {
    const r = resolvePlanOptions({
      inputs: ['/a', '/b'],
      last: 3,
      every: '2' as never,
      fromStep: 0,
      toStep: 100,
      method: 'ema',
      alpha: 0.5,
      dtype: 'bf16',
      accumulate: 'f64',
      maxShardSize: '2GiB',
      chunkSize: 4096,
    });
    expect(r).toMatchObject({
      inputs: ['/a', '/b'],
      selection: { last: 3, every: 2, fromStep: 0, toStep: 100 },
      method: 'ema',
      alpha: 0.5,
      dtype: 'bf16',
      accumulate: 'f64',
      maxShardSize: 2 * 2 ** 30,
      chunkSize: 4096,
    });
  });

  it('method defaults to "weights" when weights are given', () => {
    expect(resolvePlanOptions({ inputs: '/run', weights: [1, 2] })).toMatchObject({
      method: 'weights',
      weights: [1, 2],
    });
    expect(resolvePlanOptions({ inputs: '/run', method: 'weights', weights: [0, 2] })).toMatchObject({
      method: 'weights',
      weights: [0, 2],
    });
  });

  it.each([
    ['last: 0', { last: 0 }, 'invalid last: expected an integer >= 1, got 0'],
    ['last: 1.5', { last: 1.5 }, 'invalid last: expected an integer >= 1, got 1.5'],
    ['every: "x"', { every: 'x' }, 'invalid every: expected an integer >= 1, got "x"'],
    ['every: 0', { every: 0 }, 'invalid every: expected an integer >= 1, got 0'],
    ['fromStep: -1', { fromStep: -1 }, 'invalid fromStep: expected an integer >= 0, got -1'],
    ['toStep: null', { toStep: null }, 'invalid toStep: expected an integer >= 0, got null'],
    [
      'fromStep > toStep',
      { fromStep: 5, toStep: 3 },
      'invalid toStep: expected a step no earlier than the first step kept (5), got 3',
    ],
    [
      'alpha: 1.5',
      { method: 'ema', alpha: 1.5 },
      'invalid alpha: expected a number between 0 and 1 (exclusive), got 1.5',
    ],
    ['alpha: 0', { method: 'ema', alpha: 0 }, 'invalid alpha: expected a number between 0 and 1 (exclusive), got 0'],
    [
      'alpha: NaN',
      { method: 'ema', alpha: NaN },
      'invalid alpha: expected a number between 0 and 1 (exclusive), got NaN',
    ],
    ['dtype: "int8"', { dtype: 'int8' }, 'invalid dtype: expected one of keep, bf16, f16, f32, got "int8"'],
    [
      'method: "median"',
      { method: 'median' },
      'invalid method: expected one of sma, ema, wma, decay, weights, got "median"',
    ],
    ['accumulate: "f16"', { accumulate: 'f16' }, 'invalid accumulate: expected one of f32, f64, got "f16"'],
    ['copyQuantized: "yes"', { copyQuantized: 'yes' }, 'invalid copyQuantized: expected true or false, got "yes"'],
    ['weights: [-1]', { weights: [-1] }, 'invalid weights[0]: expected a finite number >= 0, got -1'],
    [
      'weights: [1, Infinity]',
      { weights: [1, Infinity] },
      'invalid weights[1]: expected a finite number >= 0, got Infinity',
    ],
    ['weights: []', { weights: [] }, 'invalid weights: expected a non-empty list of numbers, got an array of 0'],
    ['weights: "1,2"', { weights: '1,2' }, 'invalid weights: expected a non-empty list of numbers, got "1,2"'],
    [
      'method "weights" without weights',
      { method: 'weights' },
      'invalid weights: expected a list of weights with method "weights", got nothing',
    ],
    [
      'chunkSize: "5XB"',
      { chunkSize: '5XB' },
      'invalid chunkSize: expected a size such as 5GB, 500MB or 2GiB, got "5XB"',
    ],
    ['chunkSize: "0"', { chunkSize: '0' }, 'invalid chunkSize: expected a size such as 5GB, 500MB or 2GiB, got "0"'],
    ['maxShardSize: 0', { maxShardSize: 0 }, 'invalid maxShardSize: expected an integer >= 1, got 0'],
    ['checksum: "md5"', { checksum: 'md5' }, 'invalid checksum: expected one of blake3, sha256, got "md5"'],
    [
      'maxShardSize: true',
      { maxShardSize: true },
      'invalid maxShardSize: expected a size such as 5GB, 500MB or 2GiB, got true',
    ],
    ['inputs: ""', { inputs: '' }, 'invalid inputs: expected a non-empty string, got ""'],
    ['inputs: []', { inputs: [] }, 'invalid inputs: expected a non-empty list of paths, got an array of 0'],
    ['inputs: [""]', { inputs: [''] }, 'invalid inputs: expected a non-empty list of paths, got an array of 1'],
  ] as [string, Record<string, unknown>, string][])('refuses %s', (_what, o, message) => {
    usage(plan(o), message);
  });

  it('refuses alpha with a method other than ema', () => {
    usage(plan({ method: 'sma', alpha: 0.3 }), 'invalid method: expected "ema" when alpha is given, got "sma"');
    usage(plan({ alpha: 0.3 }), 'invalid method: expected "ema" when alpha is given, got "sma"');
    usage(plan({ method: 'wma', alpha: 0.3 }), 'invalid method: expected "ema" when alpha is given, got "wma"');
  });

  it('takes token counts with suffixes, and refuses a window smaller than the interval or tokens per step alone', () => {
    expect(resolvePlanOptions({ inputs: '/run', interval: '8B', window: '80B', tokensPerStep: '4M' }).tokens).toEqual({
      perStep: 4e6,
      interval: 8e9,
      window: 80e9,
    });
    expect(resolvePlanOptions({ inputs: '/run', window: 1.5e12 }).tokens).toEqual({
      perStep: null,
      interval: null,
      window: 1.5e12,
    });
    usage(
      plan({ interval: '8B', window: '4B' }),
      'invalid window: expected a window >= the interval (8000000000), got "4B"',
    );
    usage(
      plan({ tokensPerStep: '4M' }),
      'invalid interval: expected an interval or a window in tokens, for the tokens per step to select by, got nothing',
    );
    usage(plan({ window: '80X' }), 'invalid window: expected a count such as 8B, 500M or 1.3T, got "80X"');
  });

  it('takes a schedule with method decay only; linear by default', () => {
    expect(resolvePlanOptions({ inputs: '/run', method: 'decay' }).schedule).toBe('linear');
    expect(resolvePlanOptions({ inputs: '/run', method: 'decay', schedule: 'cosine' }).schedule).toBe('cosine');
    usage(plan({ schedule: 'cosine' }), 'invalid method: expected "decay" when a schedule is given, got "sma"');
    usage(
      plan({ method: 'decay', schedule: 'step' as never }),
      'invalid schedule: expected one of linear, cosine, inverse-sqrt, 1-sqrt, got "step"',
    );
  });

  it('refuses weights with a method other than "weights"', () => {
    usage(
      plan({ method: 'ema', weights: [1, 2] }),
      'invalid method: expected "weights" (or no method) when weights are given, got "ema"',
    );
    usage(
      plan({ method: 'sma', weights: [1, 2] }),
      'invalid method: expected "weights" (or no method) when weights are given, got "sma"',
    );
  });

  it('refuses options that are not an object', () => {
    usage(() => resolvePlanOptions(null as never), 'invalid options: expected an object, got null');
  });
});

describe('resolveMergeOptions', () => {
  it('fills in the defaults; threads are chosen later, once the device is known', () => {
    expect(resolveMergeOptions({ inputs: '/run', out: '/out' })).toEqual({
      out: '/out',
      force: false,
      resume: false,
      onNonfinite: 'error',
      engine: {
        threads: null,
        kernel: 'auto',
        device: { kind: 'cpu' },
        deviceLabel: 'cpu',
        gpuMemory: undefined,
        io: 'pread',
        pageCache: 'auto',
        write: 'auto',
      },
    });
    expect(
      resolveMergeOptions({
        inputs: '/run',
        out: '/o',
        force: true,
        threads: 1024,
        kernel: 'avx2',
        device: 'cuda:all',
        gpuMemory: '2GiB',
        io: 'mmap',
        pageCache: 'drop',
        write: 'direct',
      }),
    ).toEqual({
      out: '/o',
      force: true,
      resume: false,
      onNonfinite: 'error',
      engine: {
        threads: 1024,
        kernel: 'avx2',
        device: { kind: 'cuda', indices: 'all' },
        deviceLabel: 'cuda:all',
        gpuMemory: 2 ** 31,
        io: 'mmap',
        pageCache: 'drop',
        write: 'direct',
      },
    });
  });

  it.each([
    ['cpu', { kind: 'cpu' }],
    ['auto', { kind: 'auto' }],
    ['cuda', { kind: 'cuda', indices: [0] }],
    ['cuda:3', { kind: 'cuda', indices: [3] }],
    ['cuda:0,1,7', { kind: 'cuda', indices: [0, 1, 7] }],
    ['cuda:all', { kind: 'cuda', indices: 'all' }],
  ] as [string, DeviceRequest][])('reads --device %s', (device, want) => {
    expect(parseDevice(device)).toEqual(want);
  });

  it('sizes the default GPU budget from free memory (total memory without NVML), between 64 MiB and 1 GiB', () => {
    expect(defaultGpuMemory({ freeMemory: 80e9, totalMemory: 80e9 })).toBe(2 ** 30);
    expect(defaultGpuMemory({ freeMemory: 4e9, totalMemory: 80e9 })).toBe(4e8);
    expect(defaultGpuMemory({ freeMemory: 1e8, totalMemory: 80e9 })).toBe(64 * 2 ** 20);
    expect(defaultGpuMemory({ totalMemory: 5e9 })).toBe(5e8);
  });

  it('stages each worker on one GPU, with slots capped so that pinned memory stays bounded', () => {
    const MiB = 2 ** 20;
    // 8 workers on 1 GPU with 1 GiB: 128 MiB each, slots of a third of it (256-byte aligned).
    expect(gpuStaging(2 ** 30, 1, 8, 3, 256 * MiB)).toEqual({
      workersPerGpu: 8,
      slots: 3,
      perWorker: 128 * MiB,
      slotBytes: Math.floor((128 * MiB) / 3 / 256) * 256,
      pinnedBytes: 8 * 3 * Math.floor((128 * MiB) / 3 / 256) * 256,
      deviceBytes: 8 * 3 * Math.floor((128 * MiB) / 3 / 256) * 256,
    });
    // --gpu-memory 40GB on 4 GPUs with 16 workers: 4 per GPU, each capped at 3 x 256 MiB, so 12 GiB
    // pinned in all (not 160 GB), 3 GiB of each GPU.
    const big = gpuStaging(40e9, 4, 16, 3, 256 * MiB);
    expect(big.workersPerGpu).toBe(4);
    expect(big.slotBytes).toBe(256 * MiB);
    expect(big.pinnedBytes).toBe(16 * 3 * 256 * MiB);
    expect(big.deviceBytes).toBe(4 * 3 * 256 * MiB);
    // Workers that do not divide evenly: the busier GPUs bound the budget per worker.
    expect(gpuStaging(3 * 2 ** 30, 2, 3, 3, 256 * MiB).workersPerGpu).toBe(2);
  });

  it('gives GPUs fewer threads than cores: a reader and a writer each, enough to keep the copies busy', () => {
    const gpus = (n: number) => ({
      kind: 'cuda' as const,
      devices: Array.from({ length: n }, () => ({}) as never),
      memory: 2 ** 30,
      slots: 3,
      maxSlotBytes: 2 ** 28,
    });
    expect(defaultThreads({ kind: 'cpu' }, 96)).toBe(96);
    expect(defaultThreads(gpus(1), 96)).toBe(8);
    expect(defaultThreads(gpus(8), 96)).toBe(32);
    expect(defaultThreads(gpus(1), 2)).toBe(2);
  });

  it.each([
    ['threads: 0', { threads: 0 }, 'invalid threads: expected an integer from 1 to 1024, got 0'],
    ['threads: 1025', { threads: 1025 }, 'invalid threads: expected an integer from 1 to 1024, got 1025'],
    ['threads: "many"', { threads: 'many' }, 'invalid threads: expected an integer from 1 to 1024, got "many"'],
    ['kernel: "neon"', { kernel: 'neon' }, 'invalid kernel: expected one of auto, scalar, avx2, avx512, got "neon"'],
    ['io: "aio"', { io: 'aio' }, 'invalid io: expected one of pread, mmap, got "aio"'],
    ['pageCache: "purge"', { pageCache: 'purge' }, 'invalid pageCache: expected one of auto, keep, drop, got "purge"'],
    ['write: "async"', { write: 'async' }, 'invalid write: expected one of auto, buffered, direct, got "async"'],
    ['out: ""', { out: '' }, 'invalid out: expected a non-empty string, got ""'],
    ['out missing', { out: undefined }, 'invalid out: expected a non-empty string, got nothing'],
    ['force: "yes"', { force: 'yes' }, 'invalid force: expected true or false, got "yes"'],
    ['resume: 1', { resume: 1 }, 'invalid resume: expected true or false, got 1'],
    [
      'onNonfinite: "ignore"',
      { onNonfinite: 'ignore' },
      'invalid onNonfinite: expected one of error, warn, skip-checkpoint, got "ignore"',
    ],
    [
      'device: "gpu"',
      { device: 'gpu' },
      'invalid device: expected cpu, auto, cuda, cuda:all or cuda:<i>[,<j>...], got "gpu"',
    ],
    [
      'device: "cuda:"',
      { device: 'cuda:' },
      'invalid device: expected cpu, auto, cuda, cuda:all or cuda:<i>[,<j>...], got "cuda:"',
    ],
    [
      'device: "cuda:0,0"',
      { device: 'cuda:0,0' },
      'invalid device: expected each CUDA device at most once, got "cuda:0,0"',
    ],
    ['device: 0', { device: 0 }, 'invalid device: expected cpu, auto, cuda, cuda:all or cuda:<i>[,<j>...], got 0'],
    [
      'gpuMemory: "lots"',
      { gpuMemory: 'lots' },
      'invalid gpuMemory: expected a size such as 5GB, 500MB or 2GiB, got "lots"',
    ],
  ] as [string, Record<string, unknown>, string][])('refuses %s', (_what, o, message) => {
    usage(run(o), message);
  });
});

describe('byteSize', () => {
  it.each([
    ['5GB', 5e9],
    ['5GiB', 5 * 2 ** 30],
    ['64MiB', 64 * 2 ** 20],
    ['500MB', 5e8],
    ['2KB', 2000],
    ['2KiB', 2048],
    ['1TB', 1e12],
    ['1TiB', 2 ** 40],
    ['5gb', 5e9],
    ['5 GB', 5e9],
    ['  7mib ', 7 * 2 ** 20],
    ['1.5GB', 1.5e9],
    ['100B', 100],
    ['1234', 1234],
    [1234, 1234],
  ] as [string | number, number][])('%j -> %d', (input, bytes) => {
    expect(byteSize('chunkSize', input)).toBe(bytes);
  });

  it.each([['5XB'], ['GB'], [''], ['-5MB'], ['0'], ['0.1B'], ['5 G B'], ['1e3']])('refuses %j', (input) => {
    usage(
      () => byteSize('chunkSize', input),
      `invalid chunkSize: expected a size such as 5GB, 500MB or 2GiB, got ${JSON.stringify(input)}`,
    );
  });

  it.each([[0], [-1], [1.5], [NaN]])('refuses the number %d', (input) => {
    usage(
      () => byteSize('maxShardSize', input),
      `invalid maxShardSize: expected an integer >= 1, got ${String(input)}`,
    );
  });
});

describe('command-line numbers', () => {
  it('takes only plain decimal strings as numbers', async () => {
    const { integer, finiteNumber } = await import('../../src/validate.js');
    expect(integer('last', '12', 1)).toBe(12);
    expect(() => integer('last', '0x10', 1)).toThrow('invalid last: expected an integer >= 1, got "0x10"');
    expect(() => integer('last', '1e3', 1)).toThrow('invalid last: expected an integer >= 1, got "1e3"');
    expect(finiteNumber('alpha', '1e-3', () => true, 'a number')).toBe(0.001);
    expect(() => finiteNumber('alpha', '0x1', () => true, 'a number')).toThrow(
      'invalid alpha: expected a number, got "0x1"',
    );
  });
});
