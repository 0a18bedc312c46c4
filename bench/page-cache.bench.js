// A merge larger than RAM: peak RSS, speed against a cold `cat` of the same files, and what the
// merge does to the rest of the machine's page cache, with --page-cache keep and drop and
// buffered writes, and with drop and the default --write auto (direct writes).
//
//   node bench/page-cache.bench.js [--inputs 4] [--size 7GB] [--victim 2GB] [--data-dir DIR]
//
// Needs root (it empties the page cache through /proc/sys/vm/drop_caches before each cold run),
// /usr/bin/time and fincore (util-linux). Inputs are generated once and kept in DIR.
import { execFileSync, spawnSync } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { weightLike } from '../dist/synthetic/values.js';
import { writeSyntheticCheckpoint } from '../dist/synthetic/writer.js';

const { values } = parseArgs({
  options: {
    inputs: { type: 'string', default: '4' },
    size: { type: 'string', default: '7GB' },
    victim: { type: 'string', default: '2GB' },
    'data-dir': { type: 'string', default: join(import.meta.dirname, '..', '.bench-data', 'large') },
  },
});
const bytes = (s) => {
  const m = /^(\d+(?:\.\d+)?)(GB|MB|GiB|MiB)$/.exec(s);
  if (!m) throw new Error(`bad size ${s}`);
  return Math.round(Number(m[1]) * { GB: 1e9, MB: 1e6, GiB: 2 ** 30, MiB: 2 ** 20 }[m[2]]);
};
const N = Number(values.inputs);
const SIZE = bytes(values.size);
const VICTIM = bytes(values.victim);
const dir = values['data-dir'];
const run = join(dir, 'run');
const cli = join(import.meta.dirname, '..', 'dist', 'bin', 'pma.js'); // the installed `pma` (package.json's bin)

// Each checkpoint: one model.safetensors of bf16 tensors of 64 MiB (the last one smaller), made by
// the synthetic-checkpoint writer from windows of one buffer of weight-like values.
function generate() {
  const stamp = JSON.stringify({ N, SIZE, generator: 3 });
  const manifest = join(dir, 'manifest.json');
  if (existsSync(manifest) && readFileSync(manifest, 'utf8') === stamp) return;
  rmSync(dir, { recursive: true, force: true });
  const tensor = 64 * 2 ** 20;
  const tensors = [];
  for (let left = Math.floor(SIZE / 2) * 2, i = 0; left > 0; left -= tensor, i++) {
    tensors.push({
      name: `model.layers.${i}.mlp.experts.0.up_proj.weight`,
      dtype: 'BF16',
      shape: [Math.min(tensor, left) / 2],
    });
  }
  const noise = weightLike('BF16', tensor + 4096);
  for (let c = 1; c <= N; c++) {
    writeSyntheticCheckpoint(join(run, `checkpoint-${c * 1000}`), {
      tensors,
      // An even byte offset: the window starts on a bf16 value (an odd one makes NaNs of the noise).
      data: (t, i) => noise.subarray((c * 262 + i * 8) % 4096, ((c * 262 + i * 8) % 4096) + t.shape[0] * 2),
      files: { 'config.json': '{}' },
    });
  }
  const fd = openSync(join(dir, 'victim.bin'), 'w');
  for (let left = VICTIM; left > 0; left -= noise.length) writeSync(fd, noise, 0, Math.min(noise.length, left));
  closeSync(fd);
  writeFileSync(manifest, stamp);
}

const sh = (cmd) => execFileSync('bash', ['-c', cmd], { encoding: 'utf8' });
const dropAll = () => sh('sync; echo 3 > /proc/sys/vm/drop_caches');
const resident = (f) => Number(sh(`fincore --bytes --noheadings --output RES ${f}`).trim());
const cachedGB = () => (Number(/Cached:\s+(\d+)/.exec(readFileSync('/proc/meminfo', 'utf8'))[1]) / 1e6) * 1.024;
const inputs = () => sh(`ls ${run}/*/model.safetensors`).trim().split('\n');

generate();
const total = N * SIZE;
console.log(
  `machine: ${cpus().length} cores, ${(totalmem() / 2 ** 30).toFixed(1)} GiB RAM; inputs ${N} x ${(SIZE / 1e9).toFixed(1)} GB = ${(total / 1e9).toFixed(1)} GB bf16 in ${run}`,
);

dropAll();
let t = performance.now();
sh(`cat ${inputs().join(' ')} > /dev/null`);
const catS = (performance.now() - t) / 1000;
console.log(`cold cat of the inputs: ${catS.toFixed(1)} s = ${(total / 1e9 / catS).toFixed(2)} GB/s`);

const rows = [];
for (const [mode, extra] of [
  ['keep', ['--write', 'buffered']],
  ['drop', ['--write', 'buffered']],
  ['drop', []], // --write auto: direct, as the page cache is dropped
]) {
  const out = join(dir, 'out');
  rmSync(out, { recursive: true, force: true });
  dropAll();
  sh(`cat ${join(dir, 'victim.bin')} > /dev/null`);
  const victimBefore = resident(join(dir, 'victim.bin'));
  t = performance.now();
  const r = spawnSync(
    '/usr/bin/time',
    ['-f', '%M', process.execPath, cli, 'merge', run, '--out', out, '--page-cache', mode, ...extra, '--json'],
    { encoding: 'utf8' },
  );
  const wall = (performance.now() - t) / 1000;
  if (r.status !== 0) throw new Error(r.stderr);
  const rssMiB = Number(r.stderr.trim().split('\n').pop()) / 1024;
  const victimAfter = resident(join(dir, 'victim.bin'));
  rows.push({
    mode: `${mode}${extra.length > 0 ? ` ${extra.join(' ')}` : ' (--write auto: direct)'}`,
    wall,
    gbps: total / 1e9 / wall,
    vsCat: wall / catS,
    rssMiB,
    victimKept: victimAfter / victimBefore,
    cachedAfterGB: cachedGB(),
  });
  rmSync(out, { recursive: true, force: true });
}
console.log(
  '\n| --page-cache, --write | wall s | input GB/s | x cold cat | peak RSS MiB | victim file still cached | page cache after, GB |',
);
console.log('|:--|--:|--:|--:|--:|--:|--:|');
for (const r of rows)
  console.log(
    `| ${r.mode} | ${r.wall.toFixed(1)} | ${r.gbps.toFixed(2)} | ${r.vsCat.toFixed(2)} | ${r.rssMiB.toFixed(0)} | ${(r.victimKept * 100).toFixed(0)}% | ${r.cachedAfterGB.toFixed(1)} |`,
  );
