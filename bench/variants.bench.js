// Merge option variants against each other on the same inputs, interleaved round by round, so a
// slow spell of the machine hits every variant alike. Default variants: --write buffered|direct
// on 1 and 2 threads.
//
//   node bench/variants.bench.js [--inputs RUN_DIR] [--runs 7] [--breakdown] ['{"chunkSize":"64MiB"}' '{}' ...]
//
// --breakdown adds where each variant's time went: the medians of merge()'s breakdown (wall and
// phase seconds; the engine's and the hash's thread-seconds).
//
// Each positional argument is a JSON object of merge() options (threads, io, write, chunkSize,
// pageCache, kernel, ...). Inputs default to the series the last `npm run bench` or `pma bench
// --dir .bench-data` left in .bench-data/run.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { merge } from '../dist/index.js';
import { combineBreakdowns } from '../dist/run/breakdown.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    runs: { type: 'string', default: '7' },
    inputs: { type: 'string' },
    breakdown: { type: 'boolean', default: false },
  },
});
const inputs = values.inputs ?? join(import.meta.dirname, '..', '.bench-data', 'run');
const out = join(import.meta.dirname, '..', '.bench-data', 'variants-out');
const variants =
  positionals.length > 0
    ? positionals.map((p) => JSON.parse(p))
    : [
        { write: 'buffered', threads: 2 },
        { write: 'direct', threads: 2 },
        { write: 'buffered', threads: 1 },
        { write: 'direct', threads: 1 },
      ];
const times = variants.map(() => []);
const breakdowns = variants.map(() => []);
let inputBytes = 0;
for (let r = 0; r < Number(values.runs); r++) {
  for (const [i, v] of variants.entries()) {
    rmSync(out, { recursive: true, force: true });
    const t = performance.now();
    const res = await merge({ inputs, out, ...v });
    times[i].push((performance.now() - t) / 1000);
    breakdowns[i].push(res.breakdown);
    inputBytes = res.plan.totals.inputBytes;
  }
}
rmSync(out, { recursive: true, force: true });
const median = (a) => [...a].sort((x, y) => x - y)[a.length >> 1];
console.log(`inputs ${inputs} (${(inputBytes / 1e9).toFixed(2)} GB read per merge), ${values.runs} rounds\n`);
console.log('| variant | median s | min s | max s | input GB/s |');
console.log('|:--|--:|--:|--:|--:|');
for (const [i, v] of variants.entries()) {
  const m = median(times[i]);
  console.log(
    `| \`${JSON.stringify(v)}\` | ${m.toFixed(3)} | ${Math.min(...times[i]).toFixed(3)} | ${Math.max(...times[i]).toFixed(3)} | ${(inputBytes / 1e9 / m).toFixed(2)} |`,
  );
}
if (values.breakdown) {
  console.log('\nwhere the time went (medians; engine and hash in thread-seconds, the rest wall seconds):\n');
  console.log(
    '| variant | wall s | plan s | run s | finish s | engine s | read | scan | compute | write | hash s | hash read-back | hash wait |',
  );
  console.log('|:--|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|');
  for (const [i, v] of variants.entries()) {
    const b = combineBreakdowns(breakdowns[i], median);
    const { engine: e, hash: h } = b;
    const cells = [
      b.wall,
      b.plan,
      b.run,
      b.finish,
      e.total,
      e.read,
      e.scan,
      e.compute,
      e.write,
      h.update,
      h.read,
      h.wait,
    ];
    console.log(`| \`${JSON.stringify(v)}\` | ${cells.map((x) => x.toFixed(3)).join(' | ')} |`);
  }
}
