#!/usr/bin/env node
// Merging a PyTorch DCP series (into safetensors, and into DCP: the default, the newest
// checkpoint's files with the averages written in and their CRC-32s rewritten) against merging
// the same tensors saved as safetensors, with this machine's read floor (`cat` of the safetensors
// inputs) in the same interleaved rounds, so the ratios hold on a noisy machine.
//
//   node bench/dcp.bench.js [--checkpoints 5] [--size 1GB] [--ranks 4] [--runs 5] [--threads 2]
//
// The series (bf16 tensors of 64 MiB, each DCP checkpoint saved by --ranks ranks as row blocks)
// is written once into .bench-data/dcp-<checkpoints>x<size>-r<ranks>/ and kept.
import { execFileSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { merge, plan } from '../dist/index.js';
import { writeSyntheticDcp } from '../dist/synthetic/dcp.js';
import { weightLike } from '../dist/synthetic/values.js';
import { writeSyntheticCheckpoint } from '../dist/synthetic/writer.js';
import { byteSize } from '../dist/validate.js';

const ROOT = join(import.meta.dirname, '..');
const { values } = parseArgs({
  options: {
    checkpoints: { type: 'string', default: '5' },
    size: { type: 'string', default: '1GB' },
    ranks: { type: 'string', default: '4' },
    runs: { type: 'string', default: '5' },
    threads: { type: 'string', default: '2' },
  },
});
const n = Number(values.checkpoints);
const size = byteSize('size', values.size);
const ranks = Number(values.ranks);
const TENSOR = 64 * 2 ** 20;
const dir = join(ROOT, '.bench-data', `dcp-${n}x${values.size}-r${ranks}`);
const tensors = Array.from({ length: Math.max(1, Math.round(size / TENSOR)) }, (_, i) => ({
  name: `model.layers.${i}.mlp.weight`,
  dtype: 'BF16',
  shape: [4096, TENSOR / 2 / 4096],
}));
if (!existsSync(join(dir, 'done'))) {
  rmSync(dir, { recursive: true, force: true });
  for (let s = 1; s <= n; s++) {
    const data = (t) => weightLike('BF16', TENSOR, s * 1000 + tensors.indexOf(t));
    writeSyntheticDcp(join(dir, 'dcp', `step-${s}`), { tensors, data, ranks });
    writeSyntheticCheckpoint(join(dir, 'safetensors', `step-${s}`), { tensors, data: (t) => data(t) });
    console.error(`wrote checkpoint ${s} of ${n}`);
  }
  execFileSync('touch', [join(dir, 'done')]);
}
const files = [...new Set((await plan({ inputs: join(dir, 'safetensors') })).chunks.flatMap((c) => c.inputs))].sort();
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const times = { cat: [], safetensors: [], dcp: [], 'dcp-dcp': [] };
const out = join(dir, 'out');
for (let r = 0; r < Number(values.runs); r++) {
  let t = performance.now();
  execFileSync('sh', ['-c', `cat ${files.map((f) => `'${f}'`).join(' ')} > /dev/null`]);
  times.cat.push((performance.now() - t) / 1000);
  // Rotate which goes first, so that none always follows another's writeback.
  const kinds = [
    ['safetensors', 'safetensors', {}],
    ['dcp', 'dcp', { format: 'safetensors' }],
    ['dcp-dcp', 'dcp', {}],
  ];
  for (let k = 0; k < kinds.length; k++) {
    const [name, inputs, extra] = kinds[(k + r) % kinds.length];
    rmSync(out, { recursive: true, force: true });
    t = performance.now();
    await merge({ inputs: join(dir, inputs), out, threads: Number(values.threads), ...extra });
    times[name].push((performance.now() - t) / 1000);
  }
}
rmSync(out, { recursive: true, force: true });
const bytes = n * tensors.length * TENSOR;
console.log(
  `${n} checkpoints x ${tensors.length} bf16 tensors of 64 MiB (${(bytes / 1e9).toFixed(2)} GB of inputs), DCP saved by ${ranks} ranks; ${values.threads} threads, ${values.runs} interleaved rounds\n`,
);
console.log('| what | median s | min s | max s | GB/s of inputs |');
console.log('|:--|--:|--:|--:|--:|');
for (const [name, label] of [
  ['cat', 'cat the safetensors inputs (floor)'],
  ['safetensors', 'pma merge, safetensors inputs'],
  ['dcp', 'pma merge --format safetensors, DCP inputs'],
  ['dcp-dcp', 'pma merge, DCP inputs into DCP'],
]) {
  const xs = times[name];
  console.log(
    `| ${label} | ${median(xs).toFixed(3)} | ${Math.min(...xs).toFixed(3)} | ${Math.max(...xs).toFixed(3)} | ${(bytes / 1e9 / median(xs)).toFixed(2)} |`,
  );
}
console.log(
  `\nDCP / safetensors: ${(median(times.dcp) / median(times.safetensors)).toFixed(3)}x; DCP into DCP / safetensors: ${(median(times['dcp-dcp']) / median(times.safetensors)).toFixed(3)}x; safetensors / cat: ${(median(times.safetensors) / median(times.cat)).toFixed(2)}x`,
);
