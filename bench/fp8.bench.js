#!/usr/bin/env node
// Merging a block-scaled FP8 series (DeepSeek-V3's layout: F8_E4M3 expert weights of 2048 x 7168
// with one F32 scale per 128 x 128 block) against the same tensors stored as BF16, each beside its
// own read floor (`cat` of that series' inputs) in the same interleaved rounds: the FP8 merge
// should stand to its floor as the BF16 one does, whether it requantises (the default) or writes
// BF16.
//
//   node bench/fp8.bench.js [--checkpoints 5] [--tensors 34] [--runs 5] [--threads 2] [--cold]
//
// --cold drops each series' input files from the page cache before every case (the floor is then
// the disk's); without it the inputs stay cached and the floor is a memory copy, which makes the
// merge's arithmetic the whole difference.
//
// The series are written once into .bench-data/fp8-<checkpoints>x<tensors>/ and kept.
import { execFileSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { statSync } from 'node:fs';

import { merge, native, plan } from '../dist/index.js';
import { rng, weightLike } from '../dist/synthetic/values.js';
import { writeSyntheticCheckpoint } from '../dist/synthetic/writer.js';

const ROOT = join(import.meta.dirname, '..');
const { values } = parseArgs({
  options: {
    checkpoints: { type: 'string', default: '5' },
    tensors: { type: 'string', default: '34' },
    runs: { type: 'string', default: '5' },
    threads: { type: 'string', default: '2' },
    cold: { type: 'boolean', default: false },
  },
});
const n = Number(values.checkpoints);
const count = Number(values.tensors);
const [ROWS, COLS, BLOCK] = [2048, 7168, 128];
const ELEMENTS = ROWS * COLS;
const dir = join(ROOT, '.bench-data', `fp8-${n}x${count}`);
const name = (i) => `model.layers.${i}.mlp.experts.0.down_proj.weight`;
const grid = [ROWS / BLOCK, COLS / BLOCK];

const TILE = 2 ** 20;

/** A tensor of `bytes` from a 1 MiB tile (random data for the tile only: writing is then fast). */
function tiled(tile, bytes, flip) {
  const out = Buffer.alloc(bytes);
  for (let at = 0, i = 0; at < bytes; at += tile.length, i++) {
    tile.copy(out, at);
    if (flip && i % 2 === 1) for (let j = at; j < Math.min(bytes, at + tile.length); j++) out[j] ^= 0x80;
  }
  return out;
}

/** E4M3 codes of weight-like values, both signs; never the NaN code (0x7F, 0xFF). */
function fp8Codes(seed) {
  const r = rng(seed);
  const tile = Buffer.alloc(TILE);
  for (let j = 0; j < TILE; j++) tile[j] = Math.floor(((r() + r() + r()) / 3) * 0x7e) | (r() < 0.5 ? 0x80 : 0);
  return tiled(tile, ELEMENTS, true);
}

function scales(seed) {
  const r = rng(seed);
  const b = Buffer.alloc(grid[0] * grid[1] * 4);
  for (let i = 0; i < grid[0] * grid[1]; i++) b.writeFloatLE(1e-5 * (1 + r()), i * 4);
  return b;
}

if (!existsSync(join(dir, 'done'))) {
  rmSync(dir, { recursive: true, force: true });
  const config = JSON.stringify({
    model_type: 'deepseek_v3',
    quantization_config: { quant_method: 'fp8', fmt: 'e4m3', weight_block_size: [BLOCK, BLOCK] },
  });
  for (let s = 1; s <= n; s++) {
    const fp8 = Array.from({ length: count }, (_, i) => [
      { name: name(i), dtype: 'F8_E4M3', shape: [ROWS, COLS] },
      { name: `${name(i)}_scale_inv`, dtype: 'F32', shape: grid },
    ]).flat();
    const data = (t) => (t.dtype === 'F32' ? scales(s * 1000 + fp8.indexOf(t)) : fp8Codes(s * 1000 + fp8.indexOf(t)));
    writeSyntheticCheckpoint(join(dir, 'fp8', `step-${s}`), {
      tensors: fp8,
      data,
      files: { 'config.json': config },
    });
    const bf16 = Array.from({ length: count }, (_, i) => ({ name: name(i), dtype: 'BF16', shape: [ROWS, COLS] }));
    writeSyntheticCheckpoint(join(dir, 'bf16', `step-${s}`), {
      tensors: bf16,
      data: (t) => tiled(weightLike('BF16', TILE, s * 1000 + bf16.indexOf(t)), ELEMENTS * 2, false),
    });
    console.error(`wrote checkpoint ${s} of ${n}`);
  }
  execFileSync('touch', [join(dir, 'done')]);
}

const inputsOf = async (series) =>
  [...new Set((await plan({ inputs: join(dir, series) })).chunks.flatMap((c) => c.inputs))].sort();
const files = { fp8: await inputsOf('fp8'), bf16: await inputsOf('bf16') };
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const cases = [
  ['cat-fp8', 'cat the FP8 inputs (FP8 floor)', 'fp8', () => cat(files.fp8)],
  ['fp8', 'pma merge FP8 (requantised, the default)', 'fp8', () => run('fp8', {})],
  ['fp8-bf16', 'pma merge FP8 --dtype bf16 (dequantised)', 'fp8', () => run('fp8', { dtype: 'bf16' })],
  ['cat-bf16', 'cat the BF16 inputs (BF16 floor)', 'bf16', () => cat(files.bf16)],
  ['bf16', 'pma merge BF16', 'bf16', () => run('bf16', {})],
];
/** Drops a series' inputs from the page cache (--cold), so that the case reads them from disk. */
function drop(series) {
  for (const f of files[series]) native().dropCache(f, 0, statSync(f).size);
}
const out = join(dir, 'out');
function cat(list) {
  execFileSync('sh', ['-c', `cat ${list.map((f) => `'${f}'`).join(' ')} > /dev/null`]);
}
async function run(series, extra) {
  rmSync(out, { recursive: true, force: true });
  await merge({ inputs: join(dir, series), out, threads: Number(values.threads), ...extra });
}
const times = Object.fromEntries(cases.map(([k]) => [k, []]));
for (let r = 0; r < Number(values.runs); r++) {
  // Rotate the order, so that none always follows another's writeback.
  for (let k = 0; k < cases.length; k++) {
    const [key, , series, f] = cases[(k + r) % cases.length];
    if (values.cold) drop(series);
    const t = performance.now();
    await f();
    times[key].push((performance.now() - t) / 1000);
  }
}
rmSync(out, { recursive: true, force: true });
const fp8Bytes = n * count * ELEMENTS;
console.log(
  `${n} checkpoints x ${count} tensors of ${ROWS} x ${COLS}: FP8 E4M3 with 128x128 F32 block scales ` +
    `(${(fp8Bytes / 1e9).toFixed(2)} GB of inputs) and the same as BF16 (${((2 * fp8Bytes) / 1e9).toFixed(2)} GB); ` +
    `${values.threads} threads, ${values.runs} interleaved rounds, inputs ${values.cold ? 'dropped from the page cache before each case' : 'cached'}\n`,
);
console.log('| what | median s | min s | max s | GB/s of inputs |');
console.log('|:--|--:|--:|--:|--:|');
for (const [key, label] of cases) {
  const xs = times[key];
  const bytes = key.endsWith('bf16') && !key.startsWith('fp8') ? 2 * fp8Bytes : fp8Bytes;
  console.log(
    `| ${label} | ${median(xs).toFixed(3)} | ${Math.min(...xs).toFixed(3)} | ${Math.max(...xs).toFixed(3)} | ${(bytes / 1e9 / median(xs)).toFixed(2)} |`,
  );
}
const ratio = (a, b) => (median(times[a]) / median(times[b])).toFixed(2);
console.log(
  `\nratio to the floor: FP8 requantised ${ratio('fp8', 'cat-fp8')}x, FP8 -> BF16 ${ratio('fp8-bf16', 'cat-fp8')}x, BF16 ${ratio('bf16', 'cat-bf16')}x`,
);
