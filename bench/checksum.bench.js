#!/usr/bin/env node
// The output checksums' speed on one file, against reading the same file: `cat` of it (the
// machine's ceiling), `sha256sum` and `b3sum --num-threads 1` where installed (the tools a user
// checks pma.json with), and pma's own hash of the whole file on one of its threads (BLAKE3, the
// default, and SHA-256, `--checksum sha256`), interleaved round by round, medians. Then the BLAKE3
// of the same bytes in memory through each SIMD path this CPU has (no reading: the hash alone).
//
//   node bench/checksum.bench.js [--runs 7] [--mib 1024] [--dir .bench-data]
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { native } from '../dist/native.js';
import { HashThreads } from '../dist/output/hash-threads.js';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '7' },
    mib: { type: 'string', default: '1024' },
    dir: { type: 'string', default: join(import.meta.dirname, '..', '.bench-data') },
  },
});
const runs = Number(values.runs);
mkdirSync(values.dir, { recursive: true });
const file = join(values.dir, 'checksum-bench.bin');
const bytes = Number(values.mib) * 2 ** 20;
{
  // Bytes that look like bf16 weights, not zeros (no hash cares, but a compressing disk would).
  const block = Buffer.alloc(8 << 20);
  for (let i = 0; i < block.length; i++) block[i] = (i * 2654435761) >>> 24;
  writeFileSync(file, Buffer.alloc(0));
  for (let at = 0; at < bytes; at += block.length)
    writeFileSync(file, block.subarray(0, Math.min(block.length, bytes - at)), { flag: 'a' });
}
const has = (cmd) => spawnSync(cmd, ['--version'], { stdio: 'ignore' }).status === 0;
const seconds = (f) => {
  const t = performance.now();
  const r = f();
  return r instanceof Promise ? r.then(() => (performance.now() - t) / 1000) : (performance.now() - t) / 1000;
};
const threads = new HashThreads(1);
const rows = [
  ['cat (reading the file: the ceiling)', () => execFileSync('sh', ['-c', `cat '${file}' > /dev/null`])],
  ...(has('sha256sum') ? [['sha256sum', () => execFileSync('sha256sum', [file])]] : []),
  ...(has('b3sum') ? [['b3sum --num-threads 1', () => execFileSync('b3sum', ['--num-threads', '1', file])]] : []),
  ['pma, BLAKE3 (one hash thread)', () => threads.hashFile(file, 'blake3')],
  ['pma, SHA-256 (one hash thread)', () => threads.hashFile(file, 'sha256')],
];
const times = rows.map(() => []);
execFileSync('sh', ['-c', `cat '${file}' > /dev/null`]); // into the page cache, untimed
for (let r = 0; r < runs; r++) {
  for (const [i, [, f]] of rows.entries()) times[i].push(await seconds(f));
}
const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const gbps = (s) => (bytes / 1e9 / s).toFixed(2);
if (has('b3sum')) {
  const theirs = execFileSync('b3sum', ['--no-names', file], { encoding: 'utf8' }).trim();
  if (theirs !== (await threads.hashFile(file, 'blake3'))) throw new Error('b3sum and pma disagree');
}
const cat = median(times[0]);
console.log(`${values.mib} MiB file in the page cache (${file}); ${runs} interleaved rounds, medians\n`);
console.log('| what | median s | GB/s | x cat |');
console.log('|:--|--:|--:|--:|');
for (const [i, [name]] of rows.entries()) {
  const m = median(times[i]);
  console.log(`| ${name} | ${m.toFixed(3)} | ${gbps(m)} | ${(m / cat).toFixed(2)} |`);
}
await threads.close();

// The hash alone: the same bytes in memory, each SIMD path, one call.
const buf = readFileSync(file);
const paths = [
  'scalar',
  ...native()
    .cpuFeatures()
    .kernels.filter((k) => k !== 'scalar'),
];
console.log('\n| BLAKE3 in memory, path | median s | GB/s |');
console.log('|:--|--:|--:|');
for (const k of paths) {
  const t = [];
  for (let r = 0; r < Math.min(runs, k === 'scalar' ? 3 : runs); r++) t.push(seconds(() => native().blake3(buf, k)));
  console.log(`| ${k} | ${median(t).toFixed(3)} | ${gbps(median(t))} |`);
}
rmSync(file, { force: true });
