import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import type { CheckpointRef } from '../../src/checkpoints/discover.js';
import { discover } from '../../src/checkpoints/discover.js';
import { LoadCache, loadCheckpoint, locate } from '../../src/checkpoints/load.js';
import { rejected } from '../helpers/errors.js';
import { INDEX_NAME } from '../../src/safetensors/shard-index.js';
import { randomData, rng, writeCheckpoint, writeSafetensors, type RawTensor } from '../helpers/safetensors.js';

const root = mkdtempSync(join(tmpdir(), 'pma-unit-shards-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

let counter = 0;
function freshDir(): string {
  counter += 1;
  const d = join(root, `checkpoint-${counter * 1000}`);
  mkdirSync(d, { recursive: true });
  return d;
}

const SHARD1 = 'model-00001-of-00002.safetensors';
const SHARD2 = 'model-00002-of-00002.safetensors';

function tensor(name: string, seed: number, elements = 4): RawTensor {
  return { name, dtype: 'F32', shape: [elements], data: randomData('F32', elements, rng(seed)) };
}

/** Writes shards with the given tensors and an index with the given weight_map (or raw index text). */
function sharded(
  shards: Record<string, RawTensor[]>,
  index: Record<string, unknown> | string,
): { dir: string; ref: CheckpointRef } {
  const dir = freshDir();
  for (const [file, tensors] of Object.entries(shards)) writeSafetensors(join(dir, file), tensors);
  writeFileSync(join(dir, INDEX_NAME), typeof index === 'string' ? index : JSON.stringify(index));
  return { dir, ref: refFor(dir) };
}

function refFor(dir: string): CheckpointRef {
  return { path: dir, dir, name: 'ck', step: null, layout: { kind: 'sharded', index: join(dir, INDEX_NAME) } };
}

function weightMapOf(shards: Record<string, RawTensor[]>): Record<string, string> {
  const wm: Record<string, string> = {};
  for (const [file, tensors] of Object.entries(shards)) for (const t of tensors) wm[t.name] = file;
  return wm;
}

describe('loadCheckpoint: sharded checkpoints', () => {
  it('loads a well-formed sharded checkpoint (found by discover)', async () => {
    const dir = freshDir();
    const specs = [
      { name: 'a', dtype: 'F32', shape: [2, 3] },
      { name: 'b', dtype: 'BF16', shape: [5] },
      { name: 'c', dtype: 'I64', shape: [1] },
      { name: 'd', dtype: 'F16', shape: [4] },
    ];
    writeCheckpoint(dir, specs, 3, { shards: 2 });
    const found = await discover([dir]);
    expect(found.checkpoints).toHaveLength(1);
    const ref = found.checkpoints[0] as CheckpointRef;
    expect(ref.layout).toEqual({ kind: 'sharded', index: join(dir, INDEX_NAME) });
    const ck = await loadCheckpoint(ref);
    expect(ck.files.map((f) => f.path)).toEqual([join(dir, SHARD1), join(dir, SHARD2)]);
    expect(ck.contents.tensors.map((t) => t.name)).toEqual(['a', 'b', 'c', 'd']);
    expect(ck.contents.tensors.map((t) => locate(ck, t).file)).toEqual([
      join(dir, SHARD1),
      join(dir, SHARD1),
      join(dir, SHARD2),
      join(dir, SHARD2),
    ]);
    expect(ck.contents.totalBytes).toBe(24 + 10 + 8 + 8);
    expect(ck.contents.byName.get('c')).toMatchObject({ dtype: 'I64', shape: [1], bytes: 8 });
  });

  it('refuses a weight_map naming a missing shard file, naming the missing path', async () => {
    const shards = { [SHARD1]: [tensor('a', 1)] };
    const wm = { ...weightMapOf(shards), b: SHARD2 };
    const { dir, ref } = sharded(shards, { metadata: {}, weight_map: wm });
    const err = await rejected(loadCheckpoint(ref));
    expect(['E_INPUT', 'E_SAFETENSORS']).toContain(err.code);
    expect(err.code).toBe('E_INPUT');
    expect(err.message).toContain(join(dir, SHARD2));
    expect(err.file).toBe(join(dir, SHARD2));
  });

  it('refuses a tensor in a shard header that is not in the weight_map', async () => {
    const shards = { [SHARD1]: [tensor('a', 1), tensor('stray', 2)], [SHARD2]: [tensor('b', 3)] };
    const wm = weightMapOf(shards);
    delete wm.stray;
    const { ref } = sharded(shards, { weight_map: wm });
    const err = await rejected(loadCheckpoint(ref));
    expect(err.code).toBe('E_SAFETENSORS');
    expect(err.message).toMatch(
      /tensor "stray" is in shard model-00001-of-00002\.safetensors but is not listed in the weight_map/,
    );
    expect(err.message).toContain(ref.layout.kind === 'sharded' ? ref.layout.index : '');
    expect(err.tensor).toBe('stray');
  });

  it('refuses a weight_map entry whose shard does not hold the tensor', async () => {
    const shards = { [SHARD1]: [tensor('a', 1)], [SHARD2]: [tensor('b', 3)] };
    const wm = { ...weightMapOf(shards), ghost: SHARD2 };
    const { dir, ref } = sharded(shards, { weight_map: wm });
    const err = await rejected(loadCheckpoint(ref));
    expect(err.code).toBe('E_SAFETENSORS');
    expect(err.message).toMatch(
      /weight_map puts tensor "ghost" in model-00002-of-00002\.safetensors, whose header does not hold it/,
    );
    expect(err.message).toContain(join(dir, INDEX_NAME));
    expect(err.tensor).toBe('ghost');
  });

  it('refuses a weight_map that lists a tensor under the wrong shard', async () => {
    const shards = { [SHARD1]: [tensor('a', 1), tensor('moved', 2)], [SHARD2]: [tensor('b', 3)] };
    const wm = { ...weightMapOf(shards), moved: SHARD2 };
    const { dir, ref } = sharded(shards, { weight_map: wm });
    const err = await rejected(loadCheckpoint(ref));
    expect(err.code).toBe('E_SAFETENSORS');
    expect(err.message).toMatch(
      /tensor "moved" is in shard model-00001-of-00002\.safetensors but is listed under model-00002-of-00002\.safetensors/,
    );
    expect(err.message).toContain(join(dir, INDEX_NAME));
  });

  it('refuses a tensor stored in two shards', async () => {
    const shards = { [SHARD1]: [tensor('a', 1), tensor('twice', 2)], [SHARD2]: [tensor('b', 3), tensor('twice', 4)] };
    const { dir, ref } = sharded(shards, { weight_map: { a: SHARD1, twice: SHARD1, b: SHARD2 } });
    const err = await rejected(loadCheckpoint(ref));
    expect(err.code).toBe('E_SAFETENSORS');
    expect(err.message).toMatch(
      /tensor "twice" is stored twice, in model-00001-of-00002\.safetensors and model-00002-of-00002\.safetensors/,
    );
    expect(err.message).toContain(join(dir, INDEX_NAME));
    expect(err.tensor).toBe('twice');
  });

  it('refuses a weight_map that lists a tensor twice', async () => {
    const shards = { [SHARD1]: [tensor('a', 1)], [SHARD2]: [tensor('b', 2)] };
    const { dir, ref } = sharded(shards, `{"weight_map":{"a":"${SHARD1}","b":"${SHARD2}","a":"${SHARD2}"}}`);
    const err = await rejected(loadCheckpoint(ref));
    expect(err.code).toBe('E_SAFETENSORS');
    expect(err.message).toBe(`${join(dir, INDEX_NAME)}: tensor "a": weight_map names "a" twice`);
    expect(err.tensor).toBe('a');
  });

  it.each([['../x.safetensors'], ['sub/x.safetensors'], ['/abs/x.safetensors'], [''], ['.'], ['..']])(
    'refuses a weight_map value %j that is not a plain shard file name',
    async (file) => {
      const shards = { [SHARD1]: [tensor('a', 1)] };
      const { dir, ref } = sharded(shards, { weight_map: { a: SHARD1, evil: file } });
      const err = await rejected(loadCheckpoint(ref));
      expect(err.code).toBe('E_SAFETENSORS');
      expect(err.message).toContain(`weight_map names ${JSON.stringify(file)}, not a shard file name in ${dir}`);
      expect(err.message).toContain(join(dir, INDEX_NAME));
      expect(err.tensor).toBe('evil');
    },
  );

  it('refuses a weight_map value that is not a string', async () => {
    const { ref } = sharded({ [SHARD1]: [tensor('a', 1)] }, { weight_map: { a: 7 } });
    const err = await rejected(loadCheckpoint(ref));
    expect(err.code).toBe('E_SAFETENSORS');
    expect(err.message).toMatch(/weight_map names 7, not a shard file name/);
  });

  it('refuses an index that is not JSON', async () => {
    const { dir, ref } = sharded({ [SHARD1]: [tensor('a', 1)] }, '{"weight_map": {"a": ');
    const err = await rejected(loadCheckpoint(ref));
    expect(err.code).toBe('E_SAFETENSORS');
    expect(err.message).toMatch(/not valid JSON/);
    expect(err.message).toContain(join(dir, INDEX_NAME));
    expect(err.file).toBe(join(dir, INDEX_NAME));
  });

  it.each([
    ['missing', { metadata: { total_size: 16 } }],
    ['an array', { weight_map: [['a', SHARD1]] }],
    ['a string', { weight_map: SHARD1 }],
    ['null', { weight_map: null }],
  ])('refuses an index whose weight_map is %s', async (_what, index) => {
    const { dir, ref } = sharded({ [SHARD1]: [tensor('a', 1)] }, index);
    const err = await rejected(loadCheckpoint(ref));
    expect(err.code).toBe('E_SAFETENSORS');
    expect(err.message).toMatch(/weight_map is missing or not an object/);
    expect(err.message).toContain(join(dir, INDEX_NAME));
  });

  it.each([['null'], ['[]'], ['42']])('refuses an index that is the JSON value %s', async (text) => {
    const { ref } = sharded({ [SHARD1]: [tensor('a', 1)] }, text);
    const err = await rejected(loadCheckpoint(ref));
    expect(err.code).toBe('E_SAFETENSORS');
    expect(err.message).toMatch(/weight_map is missing or not an object/);
  });

  it('passes on a shard header error naming the shard', async () => {
    const dir = freshDir();
    writeSafetensors(join(dir, SHARD1), [tensor('a', 1)]);
    writeFileSync(join(dir, SHARD2), Buffer.from([1, 2, 3]));
    writeFileSync(join(dir, INDEX_NAME), JSON.stringify({ weight_map: { a: SHARD1, b: SHARD2 } }));
    const err = await rejected(loadCheckpoint(refFor(dir)));
    expect(err.code).toBe('E_SAFETENSORS');
    expect(err.message).toContain(join(dir, SHARD2));
    expect(err.message).toMatch(/shorter than the 8-byte header length/);
  });
});

describe('shared contents of identical checkpoints', () => {
  it('parses identical headers once and still checks each file against its own size', async () => {
    const root = mkdtempSync(join(tmpdir(), 'pma-shared-'));
    try {
      const specs = [
        { name: 'a', dtype: 'F32', shape: [3] },
        { name: 'b', dtype: 'BF16', shape: [5] },
      ];
      for (const s of ['step-1', 'step-2', 'step-3']) writeCheckpoint(join(root, s), specs, 1, { shards: 2 });
      const found = await discover([root]);
      const cache = new LoadCache();
      const [c1, c2] = await Promise.all(found.checkpoints.slice(0, 2).map((r) => loadCheckpoint(r, cache)));
      expect(c1?.contents).toBe(c2?.contents);
      expect(c1?.files[0]?.path).not.toBe(c2?.files[0]?.path);
      const shard = join(root, 'step-3', 'model-00002-of-00002.safetensors');
      writeFileSync(shard, readFileSync(shard).subarray(0, -1));
      const err = await rejected(loadCheckpoint(found.checkpoints[2] as CheckpointRef, cache));
      expect(err.message).toMatch(/truncated/);
      expect(err.file).toBe(shard);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
