import { describe, expect, it } from 'vitest';

import type { LayoutTensor } from '../../src/checkpoints/contents.js';
import { detectQuantization } from '../../src/checkpoints/quantization.js';
import type { DType } from '../../src/dtypes.js';

const tensors = (...list: [string, DType, number[]][]): Map<string, LayoutTensor> =>
  new Map(list.map(([name, dtype, shape]) => [name, { name, dtype, shape, shard: 0, begin: 0, bytes: 0 }]));

const FP8_CONFIG = { quant_method: 'fp8', fmt: 'e4m3', weight_block_size: [128, 128] };

describe('detectQuantization', () => {
  it('a plain model is not quantized, even with parameters named *_scale (CLIP logit_scale)', () => {
    const q = detectQuantization(
      tensors(['logit_scale', 'F32', []], ['layer.weight', 'BF16', [4, 4]], ['layer.weight_scale', 'F32', []]),
      null,
      'safetensors',
    );
    expect([q.method, q.fp8.size, q.unknown]).toEqual([null, 0, null]);
  });

  it('DeepSeek-V3: F8_E4M3 weights with 128x128 _scale_inv grids, edge blocks partial', () => {
    const q = detectQuantization(
      tensors(
        ['a.weight', 'F8_E4M3', [300, 260]],
        ['a.weight_scale_inv', 'F32', [3, 3]],
        ['b.weight', 'F8_E4M3', [64, 64]],
        ['b.weight_scale_inv', 'F32', [1, 1]],
        ['norm.weight', 'BF16', [260]],
      ),
      FP8_CONFIG,
      'safetensors',
    );
    expect(q.unknown).toBeNull();
    expect(q.fp8.get('a.weight')).toMatchObject({
      scaling: 'block',
      rows: 300,
      cols: 260,
      blockRows: 128,
      blockCols: 128,
    });
    expect(q.fp8.get('b.weight')).toMatchObject({ scaling: 'block', blockRows: 128 });
    expect([...q.scales.keys()]).toEqual(['a.weight_scale_inv', 'b.weight_scale_inv']);
  });

  it('the block size comes from weight_block_size; scalar and per-row _scale tensors (compressed-tensors, FBGEMM)', () => {
    const q = detectQuantization(
      tensors(
        ['a.weight', 'F8_E4M3', [64, 96]],
        ['a.weight_scale_inv', 'F32', [2, 3]],
        ['b.weight', 'F8_E4M3', [64, 96]],
        ['b.weight_scale', 'BF16', []],
        ['c.weight', 'F8_E5M2', [64, 96]],
        ['c.weight_scale', 'F32', [64, 1]],
        ['d.weight', 'F8_E4M3', [2, 8, 16]],
        ['d.weight_scale', 'F32', [1]],
      ),
      { quant_method: 'fp8', weight_block_size: [32, 32] },
      'safetensors',
    );
    expect(q.unknown).toBeNull();
    expect(q.fp8.get('a.weight')).toMatchObject({ scaling: 'block', blockRows: 32, blockCols: 32 });
    expect(q.fp8.get('b.weight')).toMatchObject({
      scaling: 'tensor',
      scaleDtype: 'BF16',
      blockRows: 64,
      blockCols: 96,
    });
    expect(q.fp8.get('c.weight')).toMatchObject({ scaling: 'channel', dtype: 'F8_E5M2', blockRows: 1, blockCols: 96 });
    expect(q.fp8.get('d.weight')).toMatchObject({ scaling: 'tensor', rows: 16, cols: 16 });
  });

  it('FP8 without a scale: averaged with scale 1 in a plain checkpoint, refused in one that declares a quantization', () => {
    const t = tensors(['a.weight', 'F8_E4M3', [4, 4]]);
    expect(detectQuantization(t, null, 'safetensors').fp8.get('a.weight')).toMatchObject({
      scaling: 'none',
      scale: null,
    });
    const q = detectQuantization(t, FP8_CONFIG, 'safetensors');
    expect(q.unknown?.tensors).toEqual(['a.weight']);
    expect(q.unknown?.why).toMatch(/without a a\.weight_scale_inv or a\.weight_scale tensor/);
  });

  it('refuses what it cannot interpret, naming the scheme and every tensor involved', () => {
    const cases: [Map<string, LayoutTensor>, Record<string, unknown> | null, string, string[]][] = [
      [
        tensors(
          ['l.qweight', 'I32', [8, 64]],
          ['l.qzeros', 'I32', [1, 8]],
          ['l.scales', 'F16', [1, 64]],
          ['e', 'BF16', [4]],
        ),
        { quant_method: 'awq' },
        'awq',
        ['l.qweight', 'l.qzeros', 'l.scales'],
      ],
      [
        tensors(['l.qweight', 'I32', [8, 64]], ['l.scales', 'F16', [1, 64]], ['l.g_idx', 'I32', [64]]),
        null,
        'GPTQ/AWQ (packed integer weights)',
        ['l.qweight', 'l.scales', 'l.g_idx'],
      ],
      [
        tensors(
          ['l.weight', 'U8', [128, 1]],
          ['l.weight.absmax', 'F32', [4]],
          ['l.weight.quant_state.bitsandbytes__nf4', 'U8', [90]],
        ),
        null,
        'bitsandbytes',
        ['l.weight.absmax', 'l.weight.quant_state.bitsandbytes__nf4'],
      ],
      [
        tensors(['l.weight', 'I8', [4, 4]], ['l.weight_scale', 'F32', [4, 1]]),
        null,
        'I8 weights with scales',
        ['l.weight', 'l.weight_scale'],
      ],
      [
        tensors(['l.weight', 'F4', [4, 4]], ['l.weight_scale', 'F8_E8M0', [4, 1]]),
        null,
        'microscaling (F4)',
        ['l.weight', 'l.weight_scale'],
      ],
      [
        tensors(['l.weight', 'F8_E4M3', [256, 256]], ['l.weight_scale_inv', 'F32', [3, 5]]),
        FP8_CONFIG,
        'fp8 with an unknown scale layout',
        ['l.weight', 'l.weight_scale_inv'],
      ],
      [
        tensors(['l.weight', 'F8_E4M3', [16, 16]], ['l.weight_scale', 'F32', []], ['l.input_scale', 'F32', []]),
        { quant_method: 'compressed-tensors' },
        'compressed-tensors',
        ['l.input_scale'],
      ],
      [
        tensors(['l.weight', 'F8_E4M3', [16, 16]], ['l.weight_scale_inv', 'F32', [1, 1]]),
        null,
        'FP8 in a DCP checkpoint',
        ['l.weight', 'l.weight_scale_inv'],
      ],
      [tensors(['l.weight', 'BF16', [4, 4]]), { quant_method: 'bitsandbytes' }, 'bitsandbytes', []],
    ];
    for (const [i, [t, config, scheme, names]] of cases.entries()) {
      const q = detectQuantization(t, config, i === 7 ? 'dcp' : 'safetensors');
      expect(q.unknown?.scheme, String(i)).toBe(scheme);
      expect(q.unknown?.tensors.sort(), String(i)).toEqual([...names].sort());
      for (const n of names) expect(q.fp8.has(n) || q.scales.has(n), n).toBe(false);
    }
  });
});
