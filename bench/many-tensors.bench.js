#!/usr/bin/env node
// A known abuse of the format at full size: two checkpoints of N one-element bf16 tensors each
// (default 1,048,576: a 74 MB header). Prints the time to plan and to merge them (plan() and
// merge() in this process, and a whole `pma merge` process), peak memory, and, as this machine's
// floor, the time to read the same files; with the page faults the process took and what each
// costs here (bench/fresh-memory.js).
//
//   node bench/many-tensors.bench.js [--tensors 1048576] [--runs 3] [--dir /tmp/pma-many]
import { spawnSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { merge, plan } from '../dist/index.js';
import { writeSafetensorsFile } from '../dist/synthetic/writer.js';
import { pageFaultMicros } from './fresh-memory.js';

const { values } = parseArgs({
  options: {
    tensors: { type: 'string', default: String(2 ** 20) },
    runs: { type: 'string', default: '3' },
    dir: { type: 'string' },
  },
});
const count = Number(values.tensors);
const dir = values.dir ?? join(tmpdir(), 'pma-many-tensors-bench');
rmSync(dir, { recursive: true, force: true });

// One writer of synthetic checkpoints for tests, demo and benchmarks (src/synthetic/writer.ts).
const tensors = Array.from({ length: count }, (_, i) => ({ name: `w.${i}`, dtype: 'BF16', shape: [1] }));
const files = [1, 2].map((s) => {
  const path = join(dir, 'run', `step-${s}`, 'model.safetensors');
  mkdirSync(join(path, '..'), { recursive: true });
  const data = Buffer.alloc(2 * count);
  for (let i = 0; i < count; i++) data.writeUInt16LE(0x3f80 | (i & 0x3f) | s, 2 * i);
  writeSafetensorsFile(path, tensors, (t) =>
    data.subarray(2 * Number(t.name.slice(2)), 2 * Number(t.name.slice(2)) + 2),
  );
  return path;
});

function readAll() {
  const buf = Buffer.allocUnsafe(8 * 2 ** 20);
  for (const f of files) {
    const fd = openSync(f, 'r');
    while (readSync(fd, buf, 0, buf.length, null) > 0);
    closeSync(fd);
  }
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const rows = { read: [], plan: [], merge: [], process: [] };
const CLI = join(import.meta.dirname, '..', 'dist', 'bin', 'pma.js'); // the installed `pma` (package.json's bin)
for (let r = 0; r < Number(values.runs); r++) {
  let t = performance.now();
  readAll();
  rows.read.push((performance.now() - t) / 1000);
  t = performance.now();
  await plan({ inputs: join(dir, 'run') });
  rows.plan.push((performance.now() - t) / 1000);
  const out = join(dir, `out-${r}`);
  t = performance.now();
  await merge({ inputs: join(dir, 'run'), out });
  rows.merge.push((performance.now() - t) / 1000);
  rmSync(out, { recursive: true, force: true });
  t = performance.now();
  const p = spawnSync(process.execPath, [CLI, 'merge', join(dir, 'run'), '--out', out, '-q'], { encoding: 'utf8' });
  rows.process.push((performance.now() - t) / 1000);
  if (p.status !== 0) throw new Error(`pma merge failed: ${p.stderr}`);
  rmSync(out, { recursive: true, force: true });
}
console.log(`2 checkpoints x ${count} one-element bf16 tensors, ${values.runs} rounds\n`);
console.log('| what | median s | min s | max s |');
console.log('|:--|--:|--:|--:|');
for (const [name, xs] of [
  ['read the files', rows.read],
  ['plan()', rows.plan],
  ['merge() (plans again)', rows.merge],
  ['pma merge (a whole process)', rows.process],
]) {
  console.log(`| ${name} | ${median(xs).toFixed(2)} | ${Math.min(...xs).toFixed(2)} | ${Math.max(...xs).toFixed(2)} |`);
}
const { maxRSS, minorPageFault } = process.resourceUsage();
const us = pageFaultMicros();
console.log(`\npeak resident memory of this process (plan() and merge()): ${(maxRSS / 2 ** 20).toFixed(2)} GiB`);
console.log(
  `page faults of this process: ${minorPageFault}, at ${us.toFixed(1)} us each on this machine: about ${((minorPageFault * us) / 1e6).toFixed(1)} s in all`,
);
rmSync(dir, { recursive: true, force: true });
