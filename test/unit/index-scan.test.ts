import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import type { PmaError } from '../../src/errors.js';
import { scanWeightMap } from '../../src/safetensors/index-scan.js';
import { readShardIndex, type ShardIndexCache } from '../../src/safetensors/shard-index.js';

const root = mkdtempSync(join(tmpdir(), 'pma-unit-index-scan-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const SHARDS = [
  'model-00001-of-00003.safetensors',
  'model-00002-of-00003.safetensors',
  'model-00003-of-00003.safetensors',
];
const weightMap: Record<string, string> = Object.fromEntries(
  Array.from({ length: 40 }, (_, i) => [`model.layers.${i >> 2}.w${i % 4}.weight`, SHARDS[i % 3] as string]),
);
weightMap['lm_head.weight'] = SHARDS[2] as string;
weightMap['名前.über'] = SHARDS[0] as string;
const index = {
  metadata: { total_size: 123456789012, format: 'pt', nested: { a: [1, 2.5, null, true] } },
  weight_map: weightMap,
};

/** What JSON.parse reads from the text. */
const viaJson = (text: string) =>
  new Map(Object.entries((JSON.parse(text) as { weight_map: Record<string, string> }).weight_map));

describe('scanWeightMap', () => {
  it.each([
    ['indented as Hugging Face writes it', JSON.stringify(index, null, 2)],
    ['compact', JSON.stringify(index)],
    [
      'with tabs, CRLF and the weight_map first',
      JSON.stringify({ weight_map: weightMap, metadata: index.metadata }, null, '\t').replaceAll('\n', '\r\n'),
    ],
    ['an empty weight_map', JSON.stringify({ metadata: {}, weight_map: {} })],
  ])('reads %s as JSON.parse does, in the same order', (_, text) => {
    const got = scanWeightMap(text);
    expect(got).not.toBeNull();
    expect([...(got as Map<string, string>)]).toEqual([...viaJson(text)]);
  });

  it('keeps one string per shard name', () => {
    const got = scanWeightMap(JSON.stringify(index, null, 2)) as Map<string, string>;
    const seen = new Map<string, string>();
    for (const file of got.values()) {
      const first = seen.get(file) ?? file;
      seen.set(file, first);
      expect(Object.is(first, file)).toBe(true);
    }
  });

  it.each([
    ['an escape', '{"weight_map":{"a\\u0062":"s.safetensors"}}'],
    ['a control character in a name', '{"weight_map":{"a\tb":"s.safetensors"}}'],
    ['a name given twice', '{"weight_map":{"a":"s1.safetensors","a":"s2.safetensors"}}'],
    ['a name that is an array index', '{"weight_map":{"0":"s.safetensors"}}'],
    ['a shard that is not a string', '{"weight_map":{"a":1}}'],
    ['a weight_map that is not an object', '{"weight_map":["a"]}'],
    ['no weight_map', '{"metadata":{}}'],
    ['an empty object', '{}'],
    ['weight_map given twice', '{"weight_map":{},"weight_map":{}}'],
    ['invalid metadata', '{"metadata":{"a":tru},"weight_map":{}}'],
    ['a missing comma', '{"metadata":{} "weight_map":{}}'],
    ['text after the object', '{"weight_map":{}} x'],
    ['a trailing comma', '{"weight_map":{"a":"s.safetensors",}}'],
    ['not an object', '["weight_map"]'],
  ])('leaves %s to JSON.parse (returns null)', (_, text) => {
    expect(scanWeightMap(text)).toBeNull();
  });
});

describe('readShardIndex with a cache', () => {
  it('parses identical indexes once and each different one on its own', async () => {
    const text = JSON.stringify(index, null, 2);
    const paths = ['a', 'b', 'c'].map((d) => join(root, `${d}.index.json`));
    for (const p of paths) writeFileSync(p, text);
    const other = join(root, 'other.index.json');
    writeFileSync(other, JSON.stringify({ ...index, weight_map: { x: SHARDS[0] } }));
    const cache: ShardIndexCache = new Map();
    const got = await Promise.all([...paths, other].map((p) => readShardIndex(p, cache)));
    expect(cache.size).toBe(2);
    expect(got.map((g) => g.path)).toEqual([...paths, other]);
    expect(got[1]?.weightMap).toBe(got[0]?.weightMap);
    expect(got[2]?.weightMap).toBe(got[0]?.weightMap);
    expect([...(got[0]?.weightMap ?? [])]).toEqual([...viaJson(text)]);
    expect(got[0]?.shards).toEqual(SHARDS);
    expect([...(got[3]?.weightMap ?? [])]).toEqual([['x', SHARDS[0]]]);
  });

  it('words the error of a bad index that another file repeats with the path of each file', async () => {
    const paths = ['bad1', 'bad2', 'bad3'].map((d) => join(root, `${d}.index.json`));
    for (const p of paths) writeFileSync(p, '{"weight_map": {"a": 1}}');
    const cache: ShardIndexCache = new Map();
    // At once (the later ones wait for the first parse) and after it (the cache holds its failure).
    const first = await Promise.allSettled(paths.slice(0, 2).map((p) => readShardIndex(p, cache)));
    const later = await Promise.allSettled([readShardIndex(paths[2] as string, cache)]);
    const errors = [...first, ...later].map((r) => (r.status === 'rejected' ? (r.reason as PmaError) : null));
    expect(errors.map((e) => e?.code)).toEqual(['E_SAFETENSORS', 'E_SAFETENSORS', 'E_SAFETENSORS']);
    expect(errors.map((e) => e?.file)).toEqual(paths);
    for (const [i, e] of errors.entries()) expect(e?.message).toContain(paths[i] as string);
  });
});
