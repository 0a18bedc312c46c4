// A merge larger than RAM: peak RSS, speed against a cold `cat` of the same files, and what the
// merge does to the rest of the machine's page cache, with --page-cache keep and drop.
//
//   node bench/page-cache.bench.js [--inputs 4] [--size 7GB] [--victim 2GB] [--data-dir DIR]
//
// Needs root (it empties the page cache through /proc/sys/vm/drop_caches before each cold run),
// /usr/bin/time and fincore (util-linux). Inputs are generated once and kept in DIR.
import { execFileSync, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

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
const cli = join(import.meta.dirname, '..', 'dist', 'cli', 'main.js');

// Each checkpoint: one model.safetensors of bf16 tensors of 64 MiB (the last one smaller).
function generate() {
  const stamp = JSON.stringify({ N, SIZE });
  const manifest = join(dir, 'manifest.json');
  if (existsSync(manifest) && readFileSync(manifest, 'utf8') === stamp) return;
  rmSync(dir, { recursive: true, force: true });
  const tensor = 64 * 2 ** 20;
  const shapes = [];
  for (let left = Math.floor(SIZE / 2) * 2; left > 0; left -= tensor) shapes.push(Math.min(tensor, left) / 2);
  const noise = Buffer.alloc(tensor + 4096);
  for (let i = 0; i < noise.length; i += 2) noise.writeUInt16LE(0x3c00 + ((i * 2654435761) >>> 20) % 0x300, i);
  for (let c = 1; c <= N; c++) {
    const ck = join(run, `checkpoint-${c * 1000}`);
    mkdirSync(ck, { recursive: true });
    const h = { __metadata__: { format: 'pt' } };
    let pos = 0;
    shapes.forEach((n, i) => {
      h[`model.layers.${i}.mlp.experts.0.up_proj.weight`] = { dtype: 'BF16', shape: [n], data_offsets: [pos, pos + n * 2] };
      pos += n * 2;
    });
    let json = JSON.stringify(h);
    json += ' '.repeat((8 - (json.length % 8)) % 8);
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    const fd = openSync(join(ck, 'model.safetensors'), 'w');
    writeSync(fd, Buffer.concat([len, Buffer.from(json)]));
    shapes.forEach((n, i) => writeSync(fd, noise, (c * 131 + i * 8) % 4096, n * 2));
    closeSync(fd);
    writeFileSync(join(ck, 'config.json'), '{}');
  }
  const fd = openSync(join(dir, 'victim.bin'), 'w');
  for (let left = VICTIM; left > 0; left -= noise.length) writeSync(fd, noise, 0, Math.min(noise.length, left));
  closeSync(fd);
  writeFileSync(manifest, stamp);
}

const sh = (cmd) => execFileSync('bash', ['-c', cmd], { encoding: 'utf8' });
const dropAll = () => sh('sync; echo 3 > /proc/sys/vm/drop_caches');
const resident = (f) => Number(sh(`fincore --bytes --noheadings --output RES ${f}`).trim());
const cachedGB = () => Number(/Cached:\s+(\d+)/.exec(readFileSync('/proc/meminfo', 'utf8'))[1]) / 1e6 * 1.024;
const inputs = () => sh(`ls ${run}/*/model.safetensors`).trim().split('\n');

generate();
const total = N * SIZE;
console.log(`machine: ${cpus().length} cores, ${(totalmem() / 2 ** 30).toFixed(1)} GiB RAM; inputs ${N} x ${(SIZE / 1e9).toFixed(1)} GB = ${(total / 1e9).toFixed(1)} GB bf16 in ${run}`);

dropAll();
let t = performance.now();
sh(`cat ${inputs().join(' ')} > /dev/null`);
const catS = (performance.now() - t) / 1000;
console.log(`cold cat of the inputs: ${catS.toFixed(1)} s = ${(total / 1e9 / catS).toFixed(2)} GB/s`);

const rows = [];
for (const mode of ['keep', 'drop']) {
  const out = join(dir, 'out');
  rmSync(out, { recursive: true, force: true });
  dropAll();
  sh(`cat ${join(dir, 'victim.bin')} > /dev/null`);
  const victimBefore = resident(join(dir, 'victim.bin'));
  t = performance.now();
  const r = spawnSync('/usr/bin/time', ['-f', '%M', process.execPath, cli, 'merge', run, '--out', out, '--page-cache', mode, '--json'], { encoding: 'utf8' });
  const wall = (performance.now() - t) / 1000;
  if (r.status !== 0) throw new Error(r.stderr);
  const rssMiB = Number(r.stderr.trim().split('\n').pop()) / 1024;
  const victimAfter = resident(join(dir, 'victim.bin'));
  rows.push({ mode, wall, gbps: total / 1e9 / wall, vsCat: wall / catS, rssMiB, victimKept: victimAfter / victimBefore, cachedAfterGB: cachedGB() });
  rmSync(out, { recursive: true, force: true });
}
console.log('\n| --page-cache | wall s | input GB/s | x cold cat | peak RSS MiB | victim file still cached | page cache after, GB |');
console.log('|:--|--:|--:|--:|--:|--:|--:|');
for (const r of rows) console.log(`| ${r.mode} | ${r.wall.toFixed(1)} | ${r.gbps.toFixed(2)} | ${r.vsCat.toFixed(2)} | ${r.rssMiB.toFixed(0)} | ${(r.victimKept * 100).toFixed(0)}% | ${r.cachedAfterGB.toFixed(1)} |`);
