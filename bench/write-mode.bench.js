// --write buffered vs --write direct, interleaved round by round on the same inputs (a run
// directory; default: the series the last `npm run bench` left in .bench-data/run).
//
//   node bench/write-mode.bench.js [run-dir] [--runs 7]
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { merge } from '../dist/index.js';

const { values, positionals } = parseArgs({ allowPositionals: true, options: { runs: { type: 'string', default: '7' } } });
const inputs = positionals[0] ?? join(import.meta.dirname, '..', '.bench-data', 'run');
const out = join(import.meta.dirname, '..', '.bench-data', 'write-mode-out');
const configs = [
  ['buffered', 2], ['direct', 2], ['buffered', 1], ['direct', 1],
];
const times = configs.map(() => []);
let inputBytes = 0;
for (let r = 0; r < Number(values.runs); r++) {
  for (const [i, [write, threads]] of configs.entries()) {
    rmSync(out, { recursive: true, force: true });
    const t = performance.now();
    const res = await merge({ inputs, out, threads, write });
    times[i].push((performance.now() - t) / 1000);
    inputBytes = res.plan.totals.inputBytes;
  }
}
rmSync(out, { recursive: true, force: true });
const median = (a) => [...a].sort((x, y) => x - y)[a.length >> 1];
console.log(`inputs ${inputs} (${(inputBytes / 1e9).toFixed(2)} GB read per merge), ${values.runs} rounds\n`);
console.log('| --write | threads | median s | input GB/s |');
console.log('|:--|--:|--:|--:|');
for (const [i, [write, threads]] of configs.entries()) {
  const m = median(times[i]);
  console.log(`| ${write} | ${threads} | ${m.toFixed(3)} | ${(inputBytes / 1e9 / m).toFixed(2)} |`);
}
