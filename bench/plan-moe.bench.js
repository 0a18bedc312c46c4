// Plans (--dry-run) a 200B-parameter MoE series without spending disk: every shard is a real
// safetensors header followed by a sparse hole made with truncate. Prints the planning time and
// the peak RSS of the planning process, against the targets of < 2 s and < 300 MiB.
//
//   node bench/plan-moe.bench.js [--checkpoints 10] [--layers 94] [--experts 128] [--runs 3]
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, openSync, closeSync, writeSync, ftruncateSync, writeFileSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

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
const N = Number(values.checkpoints), L = Number(values.layers), E = Number(values.experts);
const H = Number(values.hidden), I = Number(values.intermediate), RUNS = Number(values.runs);
const SHARD_BYTES = 5e9;
const dir = values['data-dir'];

function tensors() {
  const t = [['model.embed_tokens.weight', [151936, H]]];
  for (let l = 0; l < L; l++) {
    const p = `model.layers.${l}`;
    for (const x of ['q', 'k', 'v', 'o']) t.push([`${p}.self_attn.${x}_proj.weight`, x === 'k' || x === 'v' ? [512, H] : [H, H]]);
    t.push([`${p}.input_layernorm.weight`, [H]], [`${p}.post_attention_layernorm.weight`, [H]], [`${p}.mlp.gate.weight`, [E, H]]);
    for (let e = 0; e < E; e++) {
      for (const x of ['gate', 'up', 'down']) t.push([`${p}.mlp.experts.${e}.${x}_proj.weight`, x === 'down' ? [H, I] : [I, H]]);
    }
  }
  t.push(['model.norm.weight', [H]], ['lm_head.weight', [151936, H]]);
  return t;
}

function header(entries) {
  const h = { __metadata__: { format: 'pt' } };
  let pos = 0;
  for (const [name, shape] of entries) {
    const bytes = shape.reduce((a, b) => a * b, 1) * 2;
    h[name] = { dtype: 'BF16', shape, data_offsets: [pos, pos + bytes] };
    pos += bytes;
  }
  let json = JSON.stringify(h);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const body = Buffer.from(json);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(body.length));
  return { head: Buffer.concat([len, body]), size: 8 + body.length + pos };
}

function generate() {
  const stamp = JSON.stringify({ N, L, E, H, I });
  const manifest = join(dir, 'manifest.json');
  if (existsSync(manifest) && readFileSync(manifest, 'utf8') === stamp) return;
  rmSync(dir, { recursive: true, force: true });
  const all = tensors();
  const shards = [];
  let cur = [], size = 0;
  for (const t of all) {
    const b = t[1].reduce((a, x) => a * x, 1) * 2;
    if (cur.length && size + b > SHARD_BYTES) { shards.push(cur); cur = []; size = 0; }
    cur.push(t); size += b;
  }
  shards.push(cur);
  const headers = shards.map(header);
  for (let c = 1; c <= N; c++) {
    const ck = join(dir, `checkpoint-${c * 1000}`);
    mkdirSync(ck, { recursive: true });
    const weightMap = {};
    let total = 0;
    headers.forEach(({ head, size }, i) => {
      const name = `model-${String(i + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`;
      const fd = openSync(join(ck, name), 'w');
      writeSync(fd, head);
      ftruncateSync(fd, size); // sparse: no disk spent on the data
      closeSync(fd);
      for (const [n] of shards[i]) weightMap[n] = name;
      total += size - head.length;
    });
    writeFileSync(join(ck, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }));
    writeFileSync(join(ck, 'config.json'), '{}');
  }
  writeFileSync(manifest, stamp);
  console.error(`generated ${N} checkpoints x ${shards.length} shards, ${all.length} tensors each, in ${dir}`);
}

generate();
const cli = join(import.meta.dirname, '..', 'dist', 'cli', 'main.js');
const results = [];
for (let r = 0; r < RUNS; r++) {
  // /usr/bin/time -v reports the peak RSS of the whole planning process.
  const t0 = performance.now();
  const out = execFileSync('/usr/bin/time', ['-v', process.execPath, cli, 'merge', dir, '--dry-run', '--quiet'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 1 << 26 });
  const wall = (performance.now() - t0) / 1000;
  results.push({ wall, out });
}
// execFileSync hides stderr on success; rerun once capturing it for the RSS figure.
const rssRuns = [];
for (let r = 0; r < RUNS; r++) {
  const res = execFileSync('bash', ['-c', `/usr/bin/time -v "${process.execPath}" "${cli}" merge "${dir}" --dry-run --quiet 2>&1 >/dev/null | grep 'Maximum resident'`], { encoding: 'utf8' });
  rssRuns.push(Number(/(\d+)\s*$/.exec(res.trim())?.[1] ?? NaN) / 1024);
}
const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
const summary = results[0].out.split('\n').filter((l) => /^(merging|output|work)/.test(l)).join('\n');
console.log(summary);
console.log(`\nplan of ${N} checkpoints (${tensors().length} tensors each): median wall ${median(results.map((r) => r.wall)).toFixed(2)} s (target < 2 s), median peak RSS ${median(rssRuns).toFixed(0)} MiB (target < 300 MiB), ${RUNS} runs`);
