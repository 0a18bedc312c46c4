import { describe, expect, it } from 'vitest';

import { DTYPE_BITS, type DType } from '../../src/dtypes.js';
import { parseHeader } from '../../src/safetensors/header.js';
import {
  layoutFile,
  shardIndexJson,
  shardName,
  splitShards,
  type OutputTensorSpec,
} from '../../src/safetensors/writer.js';
import { parseSafetensors, randomData, rng } from '../helpers/safetensors.js';

function spec(name: string, dtype: DType, shape: number[]): OutputTensorSpec {
  const elements = shape.reduce((a, b) => a * b, 1);
  return { name, dtype, shape, bytes: (elements * DTYPE_BITS[dtype]) / 8 };
}

function jsonOf(header: Buffer): Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }> & {
  __metadata__?: Record<string, string>;
} {
  return JSON.parse(header.subarray(8).toString('utf8'));
}

const mixed: OutputTensorSpec[] = [
  spec('tok.i8', 'I8', [3]),
  spec('w.f32', 'F32', [3, 5]),
  spec('w.bf16', 'BF16', [7]),
  spec('w.f64', 'F64', [3]),
  spec('mask.u8', 'U8', [5]),
  spec('w.f16', 'F16', [1, 3]),
  spec('pos.i64', 'I64', [2]),
  spec('flag.bool', 'BOOL', [1]),
  spec('s.f32', 'F32', []),
];

describe('layoutFile', () => {
  it('pads the JSON header with spaces (never NUL) to a multiple of 8, with a correct 8-byte LE length', () => {
    // Names of every length mod 8, so every amount of padding (0..7) occurs.
    for (let k = 0; k < 16; k++) {
      const { header } = layoutFile([spec('x'.repeat(k + 1), 'F32', [2])]);
      expect(header.length % 8).toBe(0);
      expect(header.readBigUInt64LE(0)).toBe(BigInt(header.length - 8));
      const body = header.subarray(8).toString('utf8');
      const json = JSON.stringify(JSON.parse(body));
      expect(body.startsWith(json)).toBe(true);
      const pad = body.slice(json.length);
      expect(pad).toMatch(/^ {0,7}$/);
      expect(header.includes(0, 8)).toBe(false);
    }
  });

  it('pads by UTF-8 byte length, not by string length', () => {
    const { header } = layoutFile([spec('gewichte.über.ä', 'F32', [1]), spec('名前', 'F16', [2])]);
    expect(header.length % 8).toBe(0);
    expect(header.readBigUInt64LE(0)).toBe(BigInt(header.length - 8));
    const j = jsonOf(header);
    expect(Object.keys(j)).toEqual(['__metadata__', 'gewichte.über.ä', '名前']);
  });

  it('writes __metadata__ {"format": "pt"} by default, and the given metadata otherwise', () => {
    expect(jsonOf(layoutFile([spec('a', 'F32', [1])]).header).__metadata__).toEqual({ format: 'pt' });
    expect(jsonOf(layoutFile([spec('a', 'F32', [1])], { format: 'pt', merged_by: 'pma' }).header).__metadata__).toEqual(
      {
        format: 'pt',
        merged_by: 'pma',
      },
    );
  });

  it('lays out contiguous offsets from 0 and a size equal to header + data', () => {
    const layout = layoutFile(mixed);
    const j = jsonOf(layout.header);
    const spans = Object.entries(j)
      .filter(([k]) => k !== '__metadata__')
      .map(([, v]) => (v as { data_offsets: [number, number] }).data_offsets)
      .sort((a, b) => a[0] - b[0]);
    let pos = 0;
    for (const [b, e] of spans) {
      expect(b).toBe(pos);
      pos = e;
    }
    const total = mixed.reduce((s, t) => s + t.bytes, 0);
    expect(pos).toBe(total);
    expect(layout.size).toBe(layout.header.length + total);
    for (const t of mixed) {
      const [b, e] = j[t.name]?.data_offsets ?? [NaN, NaN];
      expect(e - b).toBe(t.bytes);
      expect(layout.offsets.get(t.name)).toBe(layout.header.length + b);
      expect(j[t.name]?.dtype).toBe(t.dtype);
      expect(j[t.name]?.shape).toEqual(t.shape);
    }
  });

  it('puts the widest dtypes first (stable), so every absolute offset is aligned to its element size', () => {
    const layout = layoutFile(mixed);
    expect(layout.order).toEqual([
      'w.f64',
      'pos.i64',
      'w.f32',
      's.f32',
      'w.bf16',
      'w.f16',
      'tok.i8',
      'mask.u8',
      'flag.bool',
    ]);
    const widths = layout.order.map((n) => DTYPE_BITS[mixed.find((t) => t.name === n)?.dtype as DType]);
    expect([...widths].sort((a, b) => b - a)).toEqual(widths);
    for (const t of mixed) {
      const off = layout.offsets.get(t.name) as number;
      expect(off % Math.max(1, DTYPE_BITS[t.dtype] / 8), t.name).toBe(0);
    }
  });

  it('keeps alignment with odd-sized narrow tensors and sub-byte dtypes', () => {
    const list = [
      spec('a.u8', 'U8', [7]),
      spec('b.f4', 'F4', [6]),
      spec('c.f64', 'F64', [1]),
      spec('d.i16', 'I16', [3]),
      spec('e.c64', 'C64', [2]),
    ];
    const layout = layoutFile(list);
    expect(layout.order).toEqual(['c.f64', 'e.c64', 'd.i16', 'a.u8', 'b.f4']);
    for (const t of list) {
      const off = layout.offsets.get(t.name) as number;
      expect(off % Math.max(1, DTYPE_BITS[t.dtype] / 8)).toBe(0);
    }
    expect(layout.size).toBe(layout.header.length + 8 + 16 + 6 + 7 + 3);
  });

  it('lays out an empty list as a "{"__metadata__"...}" header and no data', () => {
    const layout = layoutFile([]);
    expect(layout.order).toEqual([]);
    expect(layout.size).toBe(layout.header.length);
    expect(Object.keys(jsonOf(layout.header))).toEqual(['__metadata__']);
  });

  it('writes any tensor name, "__proto__" and array-index names included, as an object of those keys would', () => {
    const names = ['__proto__', '17', '0', 'constructor', '01', '4294967295', 'a"b\\c', 'é'];
    const layout = layoutFile(names.map((n) => spec(n, 'F32', [1])));
    const text = layout.header.subarray(8).toString('utf8').trimEnd();
    // JSON.parse defines "__proto__" as a key of its own; the order is an object's order of keys.
    const keys = Object.keys(JSON.parse(text) as object);
    expect(keys).toEqual(['0', '17', '__metadata__', '__proto__', 'constructor', '01', '4294967295', 'a"b\\c', 'é']);
    const h = parseHeader('x.safetensors', layout.header.subarray(8), layout.size);
    expect(h.tensors.map((t) => t.name).sort()).toEqual([...names].sort());
    for (const n of names) expect(layout.offsets.get(n)).toBe(h.dataStart + h.tensors.find((t) => t.name === n)!.begin);
  });

  it('round-trips through the project parser and the independent test parser', () => {
    const rand = rng(1234);
    const list = [
      spec('model.embed.weight', 'BF16', [11, 3]),
      spec('model.norm.weight', 'F32', [5]),
      spec('model.ids', 'I64', [3]),
      spec('model.mask', 'BOOL', [9]),
      spec('model.h', 'F16', [2, 2, 3]),
      spec('model.d', 'F64', [1]),
      spec('model.scalar', 'F32', []),
      spec('model.empty', 'F32', [0, 16]),
      spec('model.u8', 'U8', [13]),
    ];
    const data = new Map(list.map((t) => [t.name, randomData(t.dtype, t.bytes / (DTYPE_BITS[t.dtype] / 8), rand)]));
    const layout = layoutFile(list);
    const file = Buffer.alloc(layout.size, 0xee);
    layout.header.copy(file, 0);
    for (const t of list) file.set(data.get(t.name) as Uint8Array, layout.offsets.get(t.name));

    const ours = parseHeader('/mem/model.safetensors', file.subarray(8, layout.header.length), file.length);
    const theirs = parseSafetensors(file);

    expect(ours.metadata).toEqual({ format: 'pt' });
    expect(theirs.metadata).toEqual({ format: 'pt' });
    expect(ours.dataStart).toBe(layout.header.length);
    expect(theirs.headerLength).toBe(layout.header.length - 8);
    expect(ours.tensors.map((t) => t.name).sort()).toEqual(list.map((t) => t.name).sort());
    expect([...theirs.tensors.keys()].sort()).toEqual(list.map((t) => t.name).sort());

    for (const t of list) {
      const a = ours.tensors.find((x) => x.name === t.name);
      const b = theirs.tensors.get(t.name);
      expect(a && b, t.name).toBeTruthy();
      if (!a || !b) continue;
      expect(a.dtype).toBe(t.dtype);
      expect(b.dtype).toBe(t.dtype);
      expect(a.shape).toEqual(t.shape);
      expect(b.shape).toEqual(t.shape);
      expect([a.begin, a.end]).toEqual([b.begin, b.end]);
      const bytesOurs = file.subarray(ours.dataStart + a.begin, ours.dataStart + a.end);
      expect(Buffer.compare(bytesOurs, Buffer.from(b.data))).toBe(0);
      expect(Buffer.compare(bytesOurs, Buffer.from(data.get(t.name) as Uint8Array))).toBe(0);
    }
  });
});

describe('splitShards', () => {
  const t = (bytes: number, name = `t${bytes}`) => ({ name, bytes });
  const sizes = (shards: { bytes: number }[][]) => shards.map((s) => s.map((x) => x.bytes));

  it('fills shards up to the maximum, inclusive', () => {
    expect(sizes(splitShards([t(3), t(3), t(3), t(3)], 6))).toEqual([
      [3, 3],
      [3, 3],
    ]);
    expect(sizes(splitShards([t(3), t(3), t(3)], 7))).toEqual([[3, 3], [3]]);
    expect(sizes(splitShards([t(1), t(2), t(3)], 100))).toEqual([[1, 2, 3]]);
  });

  it('gives a tensor larger than the maximum a shard of its own', () => {
    expect(sizes(splitShards([t(2), t(10), t(2)], 5))).toEqual([[2], [10], [2]]);
    expect(sizes(splitShards([t(10), t(1), t(1)], 5))).toEqual([[10], [1, 1]]);
    expect(sizes(splitShards([t(1), t(1), t(10)], 5))).toEqual([[1, 1], [10]]);
    expect(sizes(splitShards([t(10), t(10)], 5))).toEqual([[10], [10]]);
  });

  it('returns one empty shard for no tensors', () => {
    expect(splitShards([], 5)).toEqual([[]]);
  });

  it('preserves order and never exceeds the maximum except for a lone tensor (random lists)', () => {
    const rand = rng(7);
    for (let round = 0; round < 200; round++) {
      const max = 1 + Math.floor(rand() * 50);
      const list = Array.from({ length: Math.floor(rand() * 30) }, (_, i) => t(Math.floor(rand() * 80), `n${i}`));
      const shards = splitShards(list, max);
      expect(shards.flat()).toEqual(list);
      for (const [i, s] of shards.entries()) {
        const total = s.reduce((a, x) => a + x.bytes, 0);
        if (s.length > 1) expect(total).toBeLessThanOrEqual(max);
        if (list.length > 0) expect(s.length).toBeGreaterThan(0);
        // Greedy: the next shard's first tensor would not have fit.
        const next = shards[i + 1];
        if (next && next[0]) expect(total + next[0].bytes).toBeGreaterThan(max);
      }
    }
  });
});

describe('shardName', () => {
  it('names shards the Hugging Face way', () => {
    expect(shardName(0, 3)).toBe('model-00001-of-00003.safetensors');
    expect(shardName(2, 3)).toBe('model-00003-of-00003.safetensors');
    expect(shardName(10, 120)).toBe('model-00011-of-00120.safetensors');
  });
});

describe('shardIndexJson', () => {
  it('writes metadata.total_size and a weight_map sorted by tensor name', () => {
    const wm = new Map([
      ['model.layers.2.w', 'model-00002-of-00002.safetensors'],
      ['lm_head.weight', 'model-00002-of-00002.safetensors'],
      ['model.layers.10.w', 'model-00001-of-00002.safetensors'],
      ['model.embed_tokens.weight', 'model-00001-of-00002.safetensors'],
    ]);
    const text = shardIndexJson(123456789, wm);
    expect(text.endsWith('\n')).toBe(true);
    const j = JSON.parse(text) as { metadata: { total_size: number }; weight_map: Record<string, string> };
    expect(j.metadata).toEqual({ total_size: 123456789 });
    expect(Object.keys(j.weight_map)).toEqual([
      'lm_head.weight',
      'model.embed_tokens.weight',
      'model.layers.10.w',
      'model.layers.2.w',
    ]);
    expect(j.weight_map).toEqual(Object.fromEntries(wm));
    expect(Object.keys(j)).toEqual(['metadata', 'weight_map']);
  });

  it('sorts by code unit (upper case before lower case)', () => {
    const j = JSON.parse(
      shardIndexJson(
        0,
        new Map([
          ['b', 'x'],
          ['a', 'x'],
          ['B', 'x'],
          ['_', 'x'],
        ]),
      ),
    );
    expect(Object.keys(j.weight_map)).toEqual(['B', '_', 'a', 'b']);
  });
});
