import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { CLI } from '../helpers/cli.js';
import { mergeTensor } from '../helpers/reference.js';
import { writeSafetensorsFile } from '../../src/synthetic/writer.js';
import { rng } from '../helpers/safetensors.js';

// A known abuse of the format: millions of tiny tensors in one file (a header near the 100 MB
// limit). pma must neither fall over nor crawl: no per-tensor system calls or reads.
const tmp = mkdtempSync(join(tmpdir(), 'pma-many-tensors-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const COUNT = 2 ** 20;

/** One BF16 scalar per tensor, through the synthetic writer. */
function writeTinyTensors(path: string, values: Uint16Array): void {
  mkdirSync(dirname(path), { recursive: true });
  const tensors = Array.from({ length: values.length }, (_, i) => ({
    name: `t.${i}`,
    dtype: 'BF16' as const,
    shape: [1],
  }));
  const bytes = new Uint8Array(values.buffer);
  writeSafetensorsFile(path, tensors, (t) =>
    bytes.subarray(2 * Number(t.name.slice(2)), 2 * Number(t.name.slice(2)) + 2),
  );
}

describe('a million tiny tensors', () => {
  it(`merges ${COUNT} one-element tensors per checkpoint to the contract's bytes`, async () => {
    const rand = rng(99);
    // Finite bf16 (exponent's top bit clear), so no NaN check stops the merge.
    const inputs = [1, 2].map(() => Uint16Array.from({ length: COUNT }, () => Math.floor(rand() * 0x10000) & 0xbfff));
    for (const [i, v] of inputs.entries()) writeTinyTensors(join(tmp, 'run', `step-${i + 1}`, 'model.safetensors'), v);
    const o = join(tmp, 'out');
    // Not spawnSync: the test's own event loop must stay free while the merge runs.
    const child = spawn(process.execPath, [CLI, 'merge', join(tmp, 'run'), '--out', o, '--quiet', '--json'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const status = await new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    expect(status, stderr).toBe(0);
    expect((JSON.parse(stdout) as { tensors: { merged: number } }).tensors.merged).toBe(COUNT);

    // All tensors are one BF16 element, laid out in input order: the data buffer is the merge of
    // the input buffers taken as one array each.
    const file = readFileSync(join(o, 'model.safetensors'));
    const headerLength = Number(file.readBigUInt64LE(0));
    const header = JSON.parse(file.subarray(8, 8 + headerLength).toString('utf8')) as Record<
      string,
      { dtype: string; shape: number[]; data_offsets: [number, number] }
    >;
    expect(Object.keys(header).length).toBe(COUNT + 1);
    for (let i = 0; i < COUNT; i++) {
      const e = header[`t.${i}`];
      if (e?.dtype !== 'BF16' || e.data_offsets[0] !== 2 * i || e.data_offsets[1] !== 2 * i + 2)
        expect.fail(`t.${i}: ${JSON.stringify(e)}`);
    }
    const want = Buffer.from(
      mergeTensor(
        'BF16',
        'BF16',
        inputs.map((v) => new Uint8Array(v.buffer)),
        [0.5, 0.5],
      ),
    );
    expect(file.length).toBe(8 + headerLength + COUNT * 2);
    expect(file.subarray(8 + headerLength).equals(want)).toBe(true);
  }, 300_000);
});
