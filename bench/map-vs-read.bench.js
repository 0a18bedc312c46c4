// Reading a file in the page cache through mappings against pread, per operation size: what sets
// --io mmap's window and its smallest mapped op (native/engine/chunk.cc). Compiles
// bench/map-vs-read.c with the system's C compiler and runs it on the largest shard of the series
// `npm run bench` or `pma bench --dir .bench-data` left (or FILE), after one `cat` of it.
//
//   node bench/map-vs-read.bench.js [FILE]
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const ROOT = join(import.meta.dirname, '..');
const data = join(ROOT, '.bench-data');

function largestShard() {
  const run = join(data, 'run');
  if (!existsSync(run)) return null;
  const files = readdirSync(run, { recursive: true })
    .map(String)
    .filter((f) => f.endsWith('.safetensors'))
    .map((f) => join(run, f));
  return files.sort((a, b) => statSync(b).size - statSync(a).size)[0] ?? null;
}

const file = process.argv[2] ?? largestShard();
if (!file) {
  console.error('no file: pass one, or run `npx pma bench --dir .bench-data` first to generate a series');
  process.exit(2);
}
mkdirSync(data, { recursive: true });
const exe = join(data, 'map-vs-read');
execFileSync(process.env.CC ?? 'cc', ['-O2', '-o', exe, join(import.meta.dirname, 'map-vs-read.c')], {
  stdio: 'inherit',
});
execFileSync('cat', [file], { stdio: ['ignore', 'ignore', 'inherit'], maxBuffer: 0 });
console.log(
  `${file} (${(statSync(file).size / 1e6).toFixed(0)} MB, in the page cache), 1 GiB of operations per size:\n`,
);
console.log(execFileSync(exe, [file], { encoding: 'utf8' }));
