#!/usr/bin/env node
// pma analyze against this machine's floor: reading the same input files (8 MiB blocks, one
// thread), interleaved round by round so a slow spell of the machine hits both alike.
//
//   node bench/analyze.bench.js [--inputs RUN_DIR] [--runs 5] [--threads 2]
//
// Inputs default to the series `npm run bench` left in .bench-data/run.
import { closeSync, existsSync, openSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { analyze, plan } from '../dist/index.js';

const ROOT = join(import.meta.dirname, '..');
const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '5' },
    threads: { type: 'string', default: '2' },
    inputs: { type: 'string' },
  },
});
const inputs = values.inputs ?? join(ROOT, '.bench-data', 'run');
if (!existsSync(inputs)) {
  console.error(`no inputs at ${inputs}: run pma bench --dir .bench-data --keep first, or pass --inputs`);
  process.exit(2);
}
const files = [...new Set((await plan({ inputs })).chunks.flatMap((c) => c.inputs))].sort();

function readAll() {
  const buf = Buffer.allocUnsafe(8 * 2 ** 20);
  let bytes = 0;
  for (const f of files) {
    const fd = openSync(f, 'r');
    for (let n; (n = readSync(fd, buf, 0, buf.length, null)) > 0;) bytes += n;
    closeSync(fd);
  }
  return bytes;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const read = [];
const an = [];
let bytes = 0;
for (let r = 0; r < Number(values.runs); r++) {
  let t = performance.now();
  bytes = readAll();
  read.push((performance.now() - t) / 1000);
  t = performance.now();
  await analyze({ inputs, threads: Number(values.threads) });
  an.push((performance.now() - t) / 1000);
}
console.log(
  `inputs ${inputs}: ${files.length} files, ${(bytes / 1e9).toFixed(2)} GB; ${values.threads} threads, ${values.runs} interleaved rounds\n`,
);
console.log('| what | median s | min s | max s | GB/s |');
console.log('|:--|--:|--:|--:|--:|');
for (const [name, xs] of [
  ['read the files', read],
  ['pma analyze', an],
]) {
  console.log(
    `| ${name} | ${median(xs).toFixed(3)} | ${Math.min(...xs).toFixed(3)} | ${Math.max(...xs).toFixed(3)} | ${(bytes / 1e9 / median(xs)).toFixed(2)} |`,
  );
}
console.log(`\npma analyze / read: ${(median(an) / median(read)).toFixed(2)}x`);
