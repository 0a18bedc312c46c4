import { mkdtempSync, readFileSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { merge, verify, type Checksum } from '../../src/index.js';
import { pma } from '../helpers/cli.js';
import { rejected } from '../helpers/errors.js';
import { writeCheckpoint, type TensorSpec } from '../helpers/safetensors.js';

const tmp = mkdtempSync(join(tmpdir(), 'pma-verify-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const SPECS: TensorSpec[] = [
  { name: 'a.weight', dtype: 'BF16', shape: [64, 33] },
  { name: 'b.weight', dtype: 'F32', shape: [100] },
];
const run = join(tmp, 'run');
let n = 0;

beforeAll(() => {
  for (const s of [1, 2, 3]) writeCheckpoint(join(run, `step-${s}`), SPECS, s, { shards: 2 });
});

async function fresh(checksum?: Checksum): Promise<string> {
  const o = join(tmp, `out-${n++}`);
  await merge({ inputs: run, out: o, maxShardSize: 3000, checksum });
  return o;
}

describe('pma verify', () => {
  it('passes an intact output: every header, the index, every file against pma.json', async () => {
    const o = await fresh();
    const r = await verify(o);
    expect(r.ok).toBe(true);
    expect(r.checksum).toBe('blake3');
    expect(r.tensors).toBe(2);
    expect(r.files.map((f) => f.name)).toEqual([
      'config.json',
      'model-00001-of-00002.safetensors',
      'model-00002-of-00002.safetensors',
      'model.safetensors.index.json',
      'tokenizer_config.json',
    ]);
    const cli = pma(['verify', o]);
    expect(cli.status).toBe(0);
    expect(cli.stdout).toMatch(/intact \(2 tensors, 5 files checked, blake3\)/);
  });

  it('checks an output whose pma.json records SHA-256 (--checksum sha256) against those sums', async () => {
    const o = await fresh('sha256');
    const r = await verify(o);
    expect(r.ok).toBe(true);
    expect(r.checksum).toBe('sha256');
    expect(r.files).toHaveLength(5);
    const f = join(o, 'model-00002-of-00002.safetensors');
    const buf = readFileSync(f);
    buf[buf.length - 1] = (buf[buf.length - 1] as number) ^ 0x80;
    writeFileSync(f, buf);
    const bad = await verify(o);
    expect(bad.problems).toEqual([
      expect.stringMatching(
        /^model-00002-of-00002\.safetensors has SHA-256 [0-9a-f]{64}, pma\.json records [0-9a-f]{64}$/,
      ),
    ]);
  });

  it('finds one flipped bit of tensor data, naming the file (exit 2, E_CORRUPT)', async () => {
    const o = await fresh();
    const f = join(o, 'model-00001-of-00002.safetensors');
    const buf = readFileSync(f);
    buf[buf.length - 10] = (buf[buf.length - 10] as number) ^ 0x04;
    writeFileSync(f, buf);
    const r = await verify(o);
    expect(r.ok).toBe(false);
    expect(r.problems).toEqual([
      expect.stringMatching(
        /^model-00001-of-00002\.safetensors has BLAKE3 [0-9a-f]{64}, pma\.json records [0-9a-f]{64}$/,
      ),
    ]);
    const cli = pma(['verify', o]);
    expect(cli.status).toBe(2);
    expect(cli.stdout).toContain('FAILED  model-00001-of-00002.safetensors');
    expect(cli.stderr).toMatch(/pma: error \[E_CORRUPT\]: .* does not match its pma\.json/);
  });

  it('rejects a truncated shard and a missing file', async () => {
    const o = await fresh();
    const f = join(o, 'model-00002-of-00002.safetensors');
    writeFileSync(f, readFileSync(f).subarray(0, statSync(f).size - 4));
    const err = await rejected(verify(o));
    expect(err.code).toBe('E_SAFETENSORS');
    expect(err.file).toBe(f);
    const o2 = await fresh();
    unlinkSync(join(o2, 'tokenizer_config.json'));
    const r = await verify(o2);
    expect(r.ok).toBe(false);
    expect(r.problems).toEqual(['tokenizer_config.json is missing']);
  });

  it('refuses a directory pma did not write', async () => {
    const o = await fresh();
    unlinkSync(join(o, 'pma.json'));
    const err = await rejected(verify(o));
    expect(err.code).toBe('E_INPUT');
    expect(err.message).toBe(`${o} has no pma.json: it was not written by pma`);
    expect(pma(['verify']).status).toBe(2);
  });
});
