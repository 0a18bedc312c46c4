#!/usr/bin/env node
// One merge split into N parts, each a `pma merge --part I/N` process, against the same merge in
// one process and against `cat` of the same inputs (the machine's read floor), in interleaved
// rounds. On one machine the parts share its disk and cores, so the time of N parts against one
// process is the cost of splitting (planning N times, the part records, the finalize): it should
// be within 5%. Also printed: the balance (the largest part's bytes over the mean part's), the
// finalize's own time (the part that completes last reports it), and each part's read rate.
//
//   node bench/parts.bench.js [--parts 2,4] [--runs 5] [--threads 2] [--cold] [--data-dir .bench-data]
//
// --cold drops the inputs from the page cache before every case (the floor is then the disk's).
// The CPU seconds of each case (every process's user + system time, from bash's `time`) show
// what splitting adds in work, which machines of their own do not add up in time.
//
// The series is bench/merge.bench.js's 5 x 1 GB one (F32, MoE-shaped), made there if missing.
import { execFileSync, spawn } from 'node:child_process';
import { rmSync, statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

import { native, plan } from '../dist/index.js';
import { cachedSeries, generateSeries } from '../dist/bench/series.js';

const ROOT = join(import.meta.dirname, '..');
const CLI = join(ROOT, 'dist', 'bin', 'pma.js'); // the installed `pma` (package.json's bin)
const { values } = parseArgs({
  options: {
    parts: { type: 'string', default: '2,4' },
    runs: { type: 'string', default: '5' },
    threads: { type: 'string', default: String(availableParallelism()) },
    'data-dir': { type: 'string' },
    cold: { type: 'boolean', default: false },
  },
});
const dir = resolve(values['data-dir'] ?? join(ROOT, '.bench-data'));
const params = { inputs: 5, sizeBytes: 1e9, dtype: 'f32' };
const series =
  (await cachedSeries(dir, params)) ??
  (await generateSeries(dir, params, { log: (m) => process.stderr.write(`${m}\n`) }));
const runDir = series.runDir;
const threads = Number(values.threads);
const counts = values.parts.split(',').map(Number);
const inputs = series.paths;
const inputBytes = (await plan({ inputs: runDir })).totals.inputBytes;
const out = join(dir, 'parts-out');

/** CPU seconds (user + system) of the commands run so far in this case, from bash's `time`. */
let cpu = 0;

/** Runs a command under bash's `time`, adding its CPU seconds to `cpu`; resolves with its stdout. */
function timed(cmd, args) {
  return new Promise((resolveRun, reject) => {
    const script = 'TIMEFORMAT="pma-bench-cpu %U %S"; time "$0" "$@"';
    const child = spawn('bash', ['-c', script, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (status) => {
      const m = /pma-bench-cpu ([\d.]+) ([\d.]+)/.exec(stderr);
      if (m) cpu += Number(m[1]) + Number(m[2]);
      if (status === 0) resolveRun(stdout);
      else reject(new Error(`${cmd} ${args.join(' ')}: ${stderr}`));
    });
  });
}

/** Runs the CLI; resolves with its --json answer. */
async function pma(args) {
  return JSON.parse(await timed(process.execPath, [CLI, ...args, '--json', '-q']));
}

function clean() {
  rmSync(out, { recursive: true, force: true });
  rmSync(`${out}.partial`, { recursive: true, force: true });
}

/** N parts at once, each with its share of the threads; returns the parts' answers. */
async function parts(n) {
  const each = Math.max(1, Math.floor(threads / n));
  return Promise.all(
    Array.from({ length: n }, (_, i) =>
      pma(['merge', runDir, '--out', out, '--part', `${i}/${n}`, '--threads', String(each)]),
    ),
  );
}

const cases = [
  [
    'cat',
    'cat the inputs (read floor)',
    () => timed('sh', ['-c', `cat ${inputs.map((f) => `'${f}'`).join(' ')} > /dev/null`]),
  ],
  [
    'single',
    `pma merge, one process, ${threads} threads`,
    () => pma(['merge', runDir, '--out', out, '--threads', String(threads)]),
  ],
  [
    // A part that has nothing to write (one output file, two parts): what every part process
    // costs before and after its share of the work (Node, the workers, the plan, the record).
    'empty',
    'pma merge --part 1/2 of a 1-file output: a part with nothing to write',
    () => pma(['merge', runDir, '--out', out, '--part', '1/2', '--max-shard-size', '1000GB', '--threads', '1']),
  ],
  ...counts.map((n) => [
    `parts-${n}`,
    `pma merge --part I/${n}: ${n} processes, ${Math.max(1, Math.floor(threads / n))} thread(s) each`,
    () => parts(n),
  ]),
];
const times = Object.fromEntries(cases.map(([k]) => [k, []]));
const cpus = Object.fromEntries(cases.map(([k]) => [k, []]));
/** Drops the inputs from the page cache (--cold): each case reads them from the disk. */
function drop() {
  for (const f of inputs) native().dropCache(f, 0, statSync(f).size);
}
const extra = Object.fromEntries(counts.map((n) => [n, { finalize: [], balance: 0, rates: [] }]));
for (let r = 0; r < Number(values.runs); r++) {
  // Rotate the order, so that none always follows another's writeback.
  for (let k = 0; k < cases.length; k++) {
    const [key, , f] = cases[(k + r) % cases.length];
    clean();
    execFileSync('sync');
    if (values.cold) drop();
    cpu = 0;
    const t = performance.now();
    const answer = await f();
    times[key].push((performance.now() - t) / 1000);
    cpus[key].push(cpu);
    if (key.startsWith('parts-')) {
      const n = Number(key.slice(6));
      const fin = answer.find((a) => a.finalized !== null);
      extra[n].finalize.push(fin.finalized.elapsedMs / 1000);
      const loads = answer.map((a) => a.bytes);
      extra[n].balance = Math.max(...loads) / (loads.reduce((a, b) => a + b, 0) / n);
      extra[n].rates.push(...answer.map((a) => a.bytesRead / 1e9 / a.seconds));
    }
  }
}
clean();
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
console.log(
  `${params.inputs} checkpoints x ${(params.sizeBytes / 1e9).toFixed(0)} GB (${params.dtype}, ${(inputBytes / 1e9).toFixed(2)} GB of inputs), ${availableParallelism()} cores, ${values.runs} interleaved rounds, inputs ${values.cold ? 'dropped from the page cache before each case' : 'cached'}\n`,
);
console.log('| what | median s | min s | max s | x single process | x floor | CPU s (user + sys) |');
console.log('|:--|--:|--:|--:|--:|--:|--:|');
for (const [key, label] of cases) {
  const xs = times[key];
  const m = median(xs);
  console.log(
    `| ${label} | ${m.toFixed(3)} | ${Math.min(...xs).toFixed(3)} | ${Math.max(...xs).toFixed(3)} | ${(m / median(times.single)).toFixed(3)} | ${(m / median(times.cat)).toFixed(2)} | ${median(cpus[key]).toFixed(2)} |`,
  );
}
console.log('');
const fixed = median(cpus.empty);
console.log(
  `a part process's fixed cost: ${median(times.empty).toFixed(3)} s, ${fixed.toFixed(2)} CPU s (a part with nothing to write)`,
);
for (const n of counts) {
  const e = extra[n];
  // On a machine whose cores one merge already keeps busy, each extra process's fixed CPU time
  // adds to the wall time, shared by the cores.
  const least = ((n - 1) * fixed) / availableParallelism() / median(times.single);
  console.log(
    `${n} parts: balance ${e.balance.toFixed(3)} (largest part / mean), finalize median ${median(e.finalize).toFixed(3)} s, a part's read rate median ${median(e.rates).toFixed(2)} GB/s; splitting costs ${((median(times[`parts-${n}`]) / median(times.single) - 1) * 100).toFixed(1)}% of the single-process time and ${(median(cpus[`parts-${n}`]) - median(cpus.single)).toFixed(2)} CPU s more (the fixed cost of the extra processes, shared by these ${availableParallelism()} cores, comes to ${(least * 100).toFixed(1)}%)`,
  );
}
