// Plans (--dry-run) a 200B-parameter MoE series without spending disk: every shard is a real
// safetensors header followed by a sparse hole made with truncate. Prints the planning time and
// the peak RSS of the planning process, against the targets of < 1 s and < 256 MiB (issue 16), and
// its page faults with what each costs on this machine (bench/fresh-memory.js).
//
//   node bench/plan-moe.bench.js [--checkpoints 10] [--layers 94] [--experts 128] [--runs 3]
import { execFileSync } from 'node:child_process';
import { existsSync, writeFileSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { pageFaultMicros } from './fresh-memory.js';
import { moeTensors } from '../dist/synthetic/models.js';
import { writeSyntheticCheckpoint } from '../dist/synthetic/writer.js';

const { values } = parseArgs({
  options: {
    checkpoints: { type: 'string', default: '10' },
    layers: { type: 'string', default: '94' },
    experts: { type: 'string', default: '128' },
    hidden: { type: 'string', default: '4096' },
    intermediate: { type: 'string', default: '1536' },
    runs: { type: 'string', default: '3' },
    'data-dir': { type: 'string', default: join(import.meta.dirname, '..', '.bench-data', 'moe') },
  },
});
const N = Number(values.checkpoints),
  L = Number(values.layers),
  E = Number(values.experts);
const H = Number(values.hidden),
  I = Number(values.intermediate),
  RUNS = Number(values.runs);
const SHARD_BYTES = 5e9;
const dir = values['data-dir'];

// Qwen3-235B-A22B-shaped by default: 94 layers of 128 experts, a 151,936-token vocabulary.
const tensors = moeTensors(
  { hidden: H, intermediate: I, kvDim: 512, experts: E, layers: L, vocab: 151936, headDim: 128 },
  { weights: 'BF16' },
);

function generate() {
  const stamp = JSON.stringify({ N, L, E, H, I, generator: 2 });
  const manifest = join(dir, 'manifest.json');
  if (existsSync(manifest) && readFileSync(manifest, 'utf8') === stamp) return;
  rmSync(dir, { recursive: true, force: true });
  let shards = 0;
  for (let c = 1; c <= N; c++) {
    // Sparse: every tensor is a hole (data: null), so no disk is spent on the data.
    const written = writeSyntheticCheckpoint(join(dir, `checkpoint-${c * 1000}`), {
      tensors,
      data: () => null,
      maxShardBytes: SHARD_BYTES,
      files: { 'config.json': '{}' },
    });
    shards = written.length;
  }
  writeFileSync(manifest, stamp);
  console.error(`generated ${N} checkpoints x ${shards} shards, ${tensors.length} tensors each, in ${dir}`);
}

generate();
const cli = join(import.meta.dirname, '..', 'dist', 'bin', 'pma.js'); // the installed `pma` (package.json's bin)
const results = [];
for (let r = 0; r < RUNS; r++) {
  // /usr/bin/time -v reports the peak RSS of the whole planning process.
  const t0 = performance.now();
  const out = execFileSync('/usr/bin/time', ['-v', process.execPath, cli, 'merge', dir, '--dry-run', '--quiet'], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    maxBuffer: 1 << 26,
  });
  const wall = (performance.now() - t0) / 1000;
  results.push({ wall, out });
}
// execFileSync hides stderr on success; rerun capturing it for the peak RSS and the page faults.
const rssRuns = [];
const faultRuns = [];
for (let r = 0; r < RUNS; r++) {
  const res = execFileSync(
    'bash',
    ['-c', `/usr/bin/time -v "${process.execPath}" "${cli}" merge "${dir}" --dry-run --quiet 2>&1 >/dev/null`],
    { encoding: 'utf8' },
  );
  const field = (name) => Number(new RegExp(`${name}[^:]*:\\s*(\\d+)`).exec(res)?.[1] ?? NaN);
  rssRuns.push(field('Maximum resident') / 1024);
  faultRuns.push(field('Minor'));
}
const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
const summary = results[0].out
  .split('\n')
  .filter((l) => /^(merging|output|work)/.test(l))
  .join('\n');
console.log(summary);
const faults = median(faultRuns);
const us = pageFaultMicros();
console.log(
  `\nplan of ${N} checkpoints (${tensors.length} tensors each): median wall ${median(results.map((r) => r.wall)).toFixed(2)} s (target < 1 s), median peak RSS ${median(rssRuns).toFixed(0)} MiB (target < 256 MiB), ${RUNS} runs`,
);
console.log(
  `page faults: median ${faults} per process; this machine takes ${us.toFixed(1)} us per fault on fresh memory, so about ${((faults * us) / 1e6).toFixed(2)} s of each process is spent touching new pages`,
);
