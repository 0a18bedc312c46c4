#!/usr/bin/env node
// What a pma process costs before it does any work, against Node's own start on the same
// machine, interleaved round by round: `node -e 0`, `pma --version` (the CLI's entry alone) and
// `pma merge --help` (the merge command's modules loaded, nothing read), each as installed (the
// bundle in dist/bin/, package.json's bin) and from tsc's modules (dist/cli/main.js).
//
//   node bench/startup.bench.js [--runs 11] [--root DIR]
//
// --root: another checkout's build (dist/) to measure, e.g. a worktree of an older commit.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '11' },
    root: { type: 'string', default: join(import.meta.dirname, '..') },
  },
});
const CLI = join(values.root, 'dist', 'cli', 'main.js');
const BIN = join(values.root, 'dist', 'bin', 'pma.js');

const variants = [
  ['node -e 0', ['-e', '0']],
  ['pma --version (bundle)', [BIN, '--version']],
  ['pma merge --help (bundle)', [BIN, 'merge', '--help']],
  ['pma --version (modules)', [CLI, '--version']],
  ['pma merge --help (modules)', [CLI, 'merge', '--help']],
];
const times = variants.map(() => []);
for (let r = 0; r < Number(values.runs); r++) {
  for (const [i, [, args]] of variants.entries()) {
    const t = performance.now();
    execFileSync(process.execPath, args, { stdio: 'ignore' });
    times[i].push((performance.now() - t) / 1000);
  }
}
const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
console.log(`${BIN} and ${CLI}: ${values.runs} interleaved rounds, whole processes\n`);
console.log('| process | median s | min s | max s | over node -e 0 |');
console.log('|:--|--:|--:|--:|--:|');
const base = median(times[0]);
for (const [i, [name]] of variants.entries()) {
  const m = median(times[i]);
  console.log(
    `| ${name} | ${m.toFixed(3)} | ${Math.min(...times[i]).toFixed(3)} | ${Math.max(...times[i]).toFixed(3)} | ${(m - base).toFixed(3)} |`,
  );
}
