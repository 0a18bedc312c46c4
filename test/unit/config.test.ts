import { describe, expect, it } from 'vitest';

import { configDifferences, describeDifference, withDtype } from '../../src/checkpoints/config.js';

describe('config.json comparison', () => {
  it('finds the top-level keys that differ, value by value, ignoring where it was loaded from and progress', () => {
    const diffs = configDifferences([
      {
        name: 'a',
        json: { model_type: 'llama', rope_theta: 1e4, _name_or_path: '/x', step: 1, nested: { b: 1, a: 2 } },
      },
      {
        name: 'b',
        json: { model_type: 'llama', rope_theta: 5e5, _name_or_path: '/y', step: 2, nested: { a: 2, b: 1 } },
      },
      { name: 'c', json: { rope_theta: 5e5, step: 3, nested: { a: 2, b: 1 } } },
    ]);
    expect(diffs.map(describeDifference)).toEqual([
      'model_type: "llama" in a, b; (absent) in c',
      'rope_theta: 10000 in a; 500000 in b, c',
    ]);
  });

  it('sets torch_dtype (and dtype, and those of sub-model configs) to the output dtype', () => {
    expect(
      withDtype({ torch_dtype: 'bfloat16', dtype: 'bfloat16', text_config: { torch_dtype: null } }, 'f32'),
    ).toEqual({
      torch_dtype: 'float32',
      dtype: 'float32',
      text_config: { torch_dtype: 'float32' },
    });
    expect(withDtype({ model_type: 'x' }, 'f16')).toEqual({ model_type: 'x', torch_dtype: 'float16' });
    // A dtype that is not a name (quantization settings) is left alone.
    expect(withDtype({ quantization_config: { dtype: { bits: 8 } } }, 'bf16')).toEqual({
      quantization_config: { dtype: { bits: 8 } },
      torch_dtype: 'bfloat16',
    });
  });
});
