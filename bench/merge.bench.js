#!/usr/bin/env node
// pma merge benchmark: merge throughput against the machine's own I/O ceilings.
//
//   node bench/merge.bench.js [--inputs N] [--size 1GB] [--dtype bf16|f16|f32] [--runs R]
//                             [--threads 1,2] [--io pread,mmap] [--kernel auto] [--quick]
//                             [--data-dir DIR] [--regenerate] [--json]
//
// See bench/README.md. Plain Node ESM, no dependencies; needs the built package (dist/ and the
// native addon).

import { spawnSync } from 'node:child_process';
import {
  closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, rmSync, statSync, writeFileSync, writeSync,
} from 'node:fs';
import { availableParallelism, cpus, loadavg, platform, release, totalmem } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const GENERATOR_VERSION = 1;
const RANDOM_BUFFER_BYTES = 64 * 2 ** 20;
const SHARDS = 4;
const EXPERTS = 16;
const GB = 1e9;

// ---------------------------------------------------------------------------------------------
// Options

const USAGE = `Usage: node bench/merge.bench.js [options]

  --inputs N          checkpoints to generate and merge (default 5)
  --size SIZE         tensor bytes per checkpoint: 1GB = 1e9, 1GiB = 2^30, 256MB, ... (default 1GB)
  --dtype D           bf16 | f16 | f32 (default bf16)
  --runs R            timed repetitions of every measurement; medians are reported (default 5)
  --threads LIST      comma-separated thread counts (default 1,2)
  --io LIST           comma-separated io modes, pread and/or mmap (default pread,mmap)
  --kernel K          auto | scalar | avx2 | avx512 (default auto)
  --quick             smoke test: 4 inputs x 256MB, 3 runs (explicit flags still win)
  --data-dir DIR      where the generated run, the output and the results live (default .bench-data)
  --regenerate        regenerate the inputs even if the cached ones match
  --json              print the result JSON on stdout instead of the report
  -h, --help          this help
`;

function parseSize(text) {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)b?\s*$/i.exec(String(text));
  if (!m) throw new Error(`--size: cannot parse ${JSON.stringify(text)} (examples: 1GB, 256MB, 1GiB, 1000000)`);
  const power = { '': 0, k: 1, m: 2, g: 3, t: 4 }[m[2].toLowerCase()];
  const base = m[3] ? 1024 : 1000;
  const n = Math.round(Number(m[1]) * base ** power);
  if (!(n > 0)) throw new Error(`--size must be positive (got ${text})`);
  return n;
}

function parseList(name, text, check) {
  const items = String(text).split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (items.length === 0) throw new Error(`--${name}: empty list`);
  return items.map((s) => check(s));
}

function positiveInt(name, s) {
  const n = Number(s);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name}: expected a positive integer, got ${JSON.stringify(s)}`);
  return n;
}

function options(argv) {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      inputs: { type: 'string' },
      size: { type: 'string' },
      dtype: { type: 'string' },
      runs: { type: 'string' },
      threads: { type: 'string' },
      io: { type: 'string' },
      kernel: { type: 'string' },
      quick: { type: 'boolean' },
      'data-dir': { type: 'string' },
      regenerate: { type: 'boolean' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  const quick = values.quick === true;
  const dtype = values.dtype ?? 'bf16';
  if (!['bf16', 'f16', 'f32'].includes(dtype)) throw new Error(`--dtype: expected bf16, f16 or f32, got ${JSON.stringify(dtype)}`);
  const kernel = values.kernel ?? 'auto';
  if (!['auto', 'scalar', 'avx2', 'avx512'].includes(kernel)) throw new Error(`--kernel: expected auto, scalar, avx2 or avx512, got ${JSON.stringify(kernel)}`);
  const o = {
    quick,
    inputs: positiveInt('inputs', values.inputs ?? (quick ? 4 : 5)),
    sizeBytes: parseSize(values.size ?? (quick ? '256MB' : '1GB')),
    dtype,
    runs: positiveInt('runs', values.runs ?? (quick ? 3 : 5)),
    threads: parseList('threads', values.threads ?? '1,2', (s) => positiveInt('threads', s)),
    io: parseList('io', values.io ?? 'pread,mmap', (s) => {
      if (s !== 'pread' && s !== 'mmap') throw new Error(`--io: expected pread or mmap, got ${JSON.stringify(s)}`);
      return s;
    }),
    kernel,
    dataDir: resolve(values['data-dir'] ?? join(ROOT, '.bench-data')),
    regenerate: values.regenerate === true,
    json: values.json === true,
  };
  if (o.inputs < 2) throw new Error('--inputs: a merge needs at least 2 checkpoints');
  return o;
}

// ---------------------------------------------------------------------------------------------
// Small helpers

const log = (msg) => process.stderr.write(`${msg}\n`);
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n === 0 ? NaN : n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
};
const fmtGB = (bytes) => `${(bytes / GB).toFixed(bytes >= 10 * GB ? 1 : 2)} GB`;
const fmtSize = (bytes) => {
  if (bytes >= GB && bytes % GB === 0) return `${bytes / GB}GB`;
  if (bytes >= 1e6 && bytes % 1e6 === 0) return `${bytes / 1e6}MB`;
  if (bytes >= 2 ** 30 && bytes % 2 ** 30 === 0) return `${bytes / 2 ** 30}GiB`;
  if (bytes >= 2 ** 20 && bytes % 2 ** 20 === 0) return `${bytes / 2 ** 20}MiB`;
  return `${bytes}B`;
};
const secs = (ms) => ms / 1000;

function sh(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return r.status === 0 ? r.stdout : '';
}

function syncAll() {
  spawnSync('sync', [], { stdio: 'ignore' });
}

// ---------------------------------------------------------------------------------------------
// Machine description

function machine(dataDir) {
  let cpuinfo = '';
  try {
    cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  } catch { /* not Linux */ }
  const model = /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1]?.trim() ?? cpus()[0]?.model ?? 'unknown';
  const flags = new Set((/^flags\s*:\s*(.*)$/m.exec(cpuinfo)?.[1] ?? '').split(/\s+/));
  const df = sh('df', ['-T', dataDir]).trim().split('\n')[1]?.split(/\s+/) ?? [];
  const statf = sh('stat', ['-f', '-c', '%T', dataDir]).trim();
  return {
    platform: `${platform()} ${release()}`,
    cpuModel: model,
    cores: cpus().length,
    availableParallelism: availableParallelism(),
    memoryGiB: Number((totalmem() / 2 ** 30).toFixed(1)),
    avx2: flags.has('avx2'),
    avx512f: flags.has('avx512f'),
    filesystem: df[1] ?? (statf || 'unknown'),
    device: df[0] ?? 'unknown',
    node: process.version,
    cat: sh('cat', ['--version']).split('\n')[0] || 'unknown',
  };
}

// ---------------------------------------------------------------------------------------------
// Synthetic MoE-like checkpoints

const ELEMENT_BYTES = { bf16: 2, f16: 2, f32: 4 };
const ST_DTYPE = { bf16: 'BF16', f16: 'F16', f32: 'F32' };

/**
 * A MoE-shaped architecture whose tensors add up to about `target` bytes: the hidden size is the
 * largest that still gives at least 8 layers, the layer count takes ~88% of the bytes and the
 * vocabulary (embed_tokens + lm_head) takes the rest.
 */
function architecture(target, dtype) {
  const b = ELEMENT_BYTES[dtype];
  const shapeOf = (H) => {
    const I = (3 * H) / 8; // expert intermediate size
    const kv = H / 4; // grouped-query attention: 4 query heads per kv head
    const layerElems = EXPERTS * 3 * H * I + 2 * H * H + 2 * kv * H + EXPERTS * H + 2 * H;
    return { H, I, kv, layerBytes: layerElems * b };
  };
  let a = shapeOf(64);
  for (const H of [128, 256, 512, 1024, 2048, 4096]) {
    const c = shapeOf(H);
    if (c.layerBytes * 8 <= target) a = c;
  }
  const layers = Math.max(1, Math.floor((target * 0.88) / a.layerBytes));
  const rest = target - layers * a.layerBytes - a.H * b; // final norm
  const vocab = Math.max(64, Math.floor(rest / (2 * a.H * b)));
  return { hidden: a.H, intermediate: a.I, kvDim: a.kv, experts: EXPERTS, layers, vocab, headDim: 64 };
}

function tensorList(arch) {
  const { hidden: H, intermediate: I, kvDim: KV, experts: E, layers: L, vocab: V } = arch;
  const t = [['model.embed_tokens.weight', [V, H]]];
  for (let l = 0; l < L; l++) {
    const p = `model.layers.${l}`;
    t.push([`${p}.input_layernorm.weight`, [H]]);
    t.push([`${p}.self_attn.q_proj.weight`, [H, H]]);
    t.push([`${p}.self_attn.k_proj.weight`, [KV, H]]);
    t.push([`${p}.self_attn.v_proj.weight`, [KV, H]]);
    t.push([`${p}.self_attn.o_proj.weight`, [H, H]]);
    t.push([`${p}.post_attention_layernorm.weight`, [H]]);
    t.push([`${p}.mlp.gate.weight`, [E, H]]);
    for (let e = 0; e < E; e++) {
      t.push([`${p}.mlp.experts.${e}.gate_proj.weight`, [I, H]]);
      t.push([`${p}.mlp.experts.${e}.up_proj.weight`, [I, H]]);
      t.push([`${p}.mlp.experts.${e}.down_proj.weight`, [H, I]]);
    }
  }
  t.push(['model.norm.weight', [H]]);
  t.push(['lm_head.weight', [V, H]]);
  return t.map(([name, shape]) => ({ name, shape, elements: shape.reduce((a, b) => a * b, 1) }));
}

/** Splits the tensors, in order, into SHARDS contiguous groups of about equal bytes. */
function shard(tensors, b) {
  const total = tensors.reduce((s, t) => s + t.elements * b, 0);
  const groups = Array.from({ length: SHARDS }, () => []);
  let acc = 0;
  for (const [i, t] of tensors.entries()) {
    const left = tensors.length - i;
    let g = Math.min(SHARDS - 1, Math.floor((acc * SHARDS) / total));
    // Every shard gets at least one tensor.
    const emptyAfter = groups.slice(g + 1).filter((x) => x.length === 0).length;
    if (left <= emptyAfter) g = SHARDS - left;
    groups[g].push(t);
    acc += t.elements * b;
  }
  return groups;
}

function safetensorsHeader(group, dtype, b) {
  const header = { __metadata__: { format: 'pt' } };
  let off = 0;
  for (const t of group) {
    header[t.name] = { dtype: ST_DTYPE[dtype], shape: t.shape, data_offsets: [off, off + t.elements * b] };
    off += t.elements * b;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + json.length) % 8)) % 8);
  const body = Buffer.from(json, 'utf8');
  const head = Buffer.alloc(8);
  head.writeBigUInt64LE(BigInt(body.length), 0);
  return { bytes: Buffer.concat([head, body]), dataBytes: off };
}

/** A deterministic xorshift32 stream. */
function rng(seed) {
  let s = seed >>> 0 || 0x9e3779b9;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 4294967296;
  };
}

function f32BitsToF16(f) {
  const sign = (f >>> 16) & 0x8000;
  const e = ((f >>> 23) & 0xff) - 127 + 15;
  let m = f & 0x7fffff;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    m |= 0x800000;
    const shift = 14 - e;
    let h = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (h & 1))) h++;
    return sign | h;
  }
  let h = (e << 10) | (m >>> 13);
  const rem = m & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++;
  return sign | h;
}

/** 64 MiB of weight-like values (~N(0, 0.02)-shaped, no NaN/Inf/denormal bf16) in the dtype. */
function randomBuffer(dtype) {
  const n = RANDOM_BUFFER_BYTES / ELEMENT_BYTES[dtype];
  const f = new Float32Array(n);
  const u = new Uint32Array(f.buffer);
  const r = rng(20250101);
  for (let i = 0; i < n; i++) f[i] = (r() + r() + r() - 1.5) * 0.04;
  if (dtype === 'f32') return Buffer.from(f.buffer);
  const out = new Uint16Array(n);
  if (dtype === 'bf16') {
    for (let i = 0; i < n; i++) {
      const x = u[i];
      out[i] = (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
    }
  } else {
    for (let i = 0; i < n; i++) out[i] = f32BitsToF16(u[i]);
  }
  return Buffer.from(out.buffer);
}

function writeAll(fd, buf) {
  let done = 0;
  while (done < buf.length) done += writeSync(fd, buf, done, buf.length - done);
}

/** Writes `bytes` bytes of the random buffer starting at `start` (wrapping around). */
function writeFromRandom(fd, rnd, start, bytes) {
  let pos = start % rnd.length;
  while (bytes > 0) {
    const n = Math.min(bytes, rnd.length - pos);
    writeAll(fd, rnd.subarray(pos, pos + n));
    bytes -= n;
    pos = 0;
  }
}

function generationParams(o) {
  return { generator: GENERATOR_VERSION, inputs: o.inputs, sizeBytes: o.sizeBytes, dtype: o.dtype };
}

/** Is the cached run there, complete and made with these parameters? */
function cachedRun(o, manifestPath) {
  if (o.regenerate || !existsSync(manifestPath)) return null;
  let m;
  try {
    m = JSON.parse(readFileSync(manifestPath, 'utf8'));
  } catch {
    return null;
  }
  if (JSON.stringify(m.params) !== JSON.stringify(generationParams(o))) return null;
  for (const f of m.files) {
    try {
      if (statSync(f.path).size !== f.size) return null;
    } catch {
      return null;
    }
  }
  return m;
}

function generate(o, runDir, manifestPath) {
  const cached = cachedRun(o, manifestPath);
  if (cached) {
    log(`using the cached inputs in ${relative(process.cwd(), runDir) || runDir} (${o.inputs} x ${fmtSize(o.sizeBytes)} ${o.dtype})`);
    return { ...cached, generatedNow: false };
  }
  // One run directory at a time keeps the disk use bounded.
  rmSync(manifestPath, { force: true });
  rmSync(runDir, { recursive: true, force: true });
  mkdirSync(runDir, { recursive: true });
  const b = ELEMENT_BYTES[o.dtype];
  const arch = architecture(o.sizeBytes, o.dtype);
  const tensors = tensorList(arch);
  const groups = shard(tensors, b);
  const headers = groups.map((g) => safetensorsHeader(g, o.dtype, b));
  const tensorBytes = headers.reduce((s, h) => s + h.dataBytes, 0);
  log(`generating ${o.inputs} checkpoints x ${fmtGB(tensorBytes)} ${o.dtype} (${tensors.length} tensors: hidden ${arch.hidden}, ` +
    `${arch.layers} layers x ${arch.experts} experts, vocab ${arch.vocab}) in ${runDir} ...`);
  const t0 = performance.now();
  const rnd = randomBuffer(o.dtype);
  const shardNames = groups.map((_, i) => `model-${String(i + 1).padStart(5, '0')}-of-${String(SHARDS).padStart(5, '0')}.safetensors`);
  const weightMap = {};
  for (const [i, g] of groups.entries()) for (const t of g) weightMap[t.name] = shardNames[i];
  const index = `${JSON.stringify({ metadata: { total_size: tensorBytes }, weight_map: weightMap }, null, 2)}\n`;
  const config = `${JSON.stringify({
    architectures: ['PmaBenchMoeForCausalLM'],
    model_type: 'pma_bench_moe',
    _comment: 'synthetic checkpoint generated by pma bench/merge.bench.js; random weights',
    hidden_size: arch.hidden,
    intermediate_size: arch.intermediate,
    moe_intermediate_size: arch.intermediate,
    num_experts: arch.experts,
    num_experts_per_tok: 2,
    num_hidden_layers: arch.layers,
    num_attention_heads: arch.hidden / arch.headDim,
    num_key_value_heads: arch.kvDim / arch.headDim || 1,
    vocab_size: arch.vocab,
    torch_dtype: { bf16: 'bfloat16', f16: 'float16', f32: 'float32' }[o.dtype],
  }, null, 2)}\n`;
  const files = [];
  for (let c = 0; c < o.inputs; c++) {
    const dir = join(runDir, `checkpoint-${(c + 1) * 1000}`);
    mkdirSync(dir);
    for (const [s, g] of groups.entries()) {
      const path = join(dir, shardNames[s]);
      const fd = openSync(path, 'w');
      try {
        writeAll(fd, headers[s].bytes);
        for (const [ti, t] of g.entries()) {
          // Each checkpoint and tensor starts at a different place in the random buffer.
          const start = ((c * 7919 + s * 104729 + ti * 4099) * 64) % rnd.length;
          writeFromRandom(fd, rnd, start, t.elements * b);
        }
      } finally {
        closeSync(fd);
      }
      files.push({ path, size: headers[s].bytes.length + headers[s].dataBytes });
    }
    writeFileSync(join(dir, 'model.safetensors.index.json'), index);
    writeFileSync(join(dir, 'config.json'), config);
    log(`  ${dir}`);
  }
  syncAll();
  const generateSeconds = secs(performance.now() - t0);
  const manifest = {
    params: generationParams(o),
    arch,
    tensors: tensors.length,
    tensorBytesPerCheckpoint: tensorBytes,
    files,
    inputFileBytes: files.reduce((s, f) => s + f.size, 0),
    generateSeconds,
  };
  writeFileSync(manifestPath, `${JSON.stringify(manifest, null, 2)}\n`);
  log(`generated ${fmtGB(manifest.inputFileBytes)} in ${generateSeconds.toFixed(1)} s`);
  return { ...manifest, generatedNow: true };
}

// ---------------------------------------------------------------------------------------------
// Ceilings

/** Reads every input file with `cat` into /dev/null; returns milliseconds. */
function catAll(paths) {
  const t0 = performance.now();
  const r = spawnSync('cat', paths, { stdio: ['ignore', 'ignore', 'pipe'] });
  const ms = performance.now() - t0;
  if (r.status !== 0) throw new Error(`cat failed: ${r.stderr?.toString() ?? r.error}`);
  return ms;
}

/**
 * Writes `bytes` bytes to a new file in 64 MiB writes, optionally fsyncs, and deletes it; returns
 * milliseconds: total, and the write() and fsync() parts.
 */
function writeFile(path, bytes, buf, fsync) {
  rmSync(path, { force: true });
  const t0 = performance.now();
  let t1 = t0;
  const fd = openSync(path, 'w');
  try {
    let left = bytes;
    while (left > 0) {
      const n = Math.min(left, buf.length);
      writeAll(fd, n === buf.length ? buf : buf.subarray(0, n));
      left -= n;
    }
    t1 = performance.now();
    if (fsync) fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  const t2 = performance.now();
  rmSync(path, { force: true });
  return { ms: t2 - t0, writeMs: t1 - t0, fsyncMs: t2 - t1 };
}

// ---------------------------------------------------------------------------------------------
// Main

async function main() {
  let o;
  try {
    o = options(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`merge.bench: ${e.message}\n(see node bench/merge.bench.js --help)\n`);
    process.exit(2);
  }
  const distIndex = join(ROOT, 'dist', 'index.js');
  if (!existsSync(distIndex)) throw new Error(`${distIndex} is missing: build first (npm run build, or npx tsc -p . for the TypeScript)`);
  const pma = await import('../dist/index.js');
  const cpu = pma.native().cpuFeatures();

  mkdirSync(o.dataDir, { recursive: true });
  const runDir = join(o.dataDir, 'run');
  const outDir = join(o.dataDir, 'out');
  const manifestPath = join(o.dataDir, 'inputs.json');
  const scratch = join(o.dataDir, 'write-ceiling.tmp');
  rmSync(outDir, { recursive: true, force: true });
  rmSync(scratch, { force: true });

  const host = machine(o.dataDir);
  const data = generate(o, runDir, manifestPath);
  const inputPaths = data.files.map((f) => f.path);

  const plan = await pma.plan({ inputs: runDir });
  const inputBytes = plan.totals.inputBytes; // tensor bytes the merge reads
  const outputFileBytes = plan.outputs.reduce((s, f) => s + f.size, 0);
  if (plan.checkpoints.length !== o.inputs) throw new Error(`the plan has ${plan.checkpoints.length} checkpoints, expected ${o.inputs}`);

  // Warm the page cache (untimed) so that every measurement below reads from memory.
  // One untimed output-sized write + fsync too: the first one after a while is slow on some disks.
  log('warming up: one untimed read of every input, one untimed write + fsync ...');
  catAll(inputPaths);
  syncAll();
  writeFile(scratch, outputFileBytes, Buffer.alloc(RANDOM_BUFFER_BYTES, 0x3c), true);
  syncAll();

  // The measurements are interleaved, one round of everything at a time, so that a slow spell of
  // the machine (other load, writeback, a noisy neighbour) falls on all of them alike.
  const buf = Buffer.alloc(RANDOM_BUFFER_BYTES, 0x3c);
  const combos = o.threads.flatMap((threads) => o.io.map((io) => ({ threads, io, wallMs: [], libraryElapsedMs: [], kernel: '' })));
  const readMs = [];
  const writeFsync = [];
  const writeCache = [];
  const loadBefore = loadavg();
  log(`measuring ${o.runs} rounds of: cat ${inputPaths.length} files (${fmtGB(data.inputFileBytes)}) > /dev/null; ` +
    `write ${fmtGB(outputFileBytes)} + fsync; the same write without fsync; ` +
    `merge with ${combos.map((c) => `${c.threads}t/${c.io}`).join(', ')} ...`);
  for (let round = 0; round < o.runs; round++) {
    readMs.push(catAll(inputPaths));
    // Memory that has stayed free for a second or two can be slow to touch again (in a VM whose
    // free pages go back to the host, e.g. with free page reporting): an untimed write first, so
    // that the timed ones, like every merge, write into memory freed a moment before.
    writeFile(scratch, outputFileBytes, buf, false);
    syncAll(); // also flushes the unsynced file's deletion
    writeCache.push(writeFile(scratch, outputFileBytes, buf, false));
    syncAll();
    writeFsync.push(writeFile(scratch, outputFileBytes, buf, true));
    syncAll();
    for (const c of combos) {
      rmSync(outDir, { recursive: true, force: true });
      syncAll(); // the previous output's deletion is flushed outside the timing
      const t0 = performance.now();
      const r = await pma.merge({ inputs: runDir, out: outDir, threads: c.threads, io: c.io, kernel: o.kernel });
      c.wallMs.push(performance.now() - t0);
      c.libraryElapsedMs.push(r.elapsedMs);
      c.kernel = r.kernel;
      for (const f of plan.outputs) {
        const size = statSync(join(outDir, f.name)).size;
        if (size !== f.size) throw new Error(`${join(outDir, f.name)} is ${size} bytes, the plan says ${f.size}`);
      }
    }
    rmSync(outDir, { recursive: true, force: true });
    const last = (xs) => secs(xs[xs.length - 1]).toFixed(2);
    log(`  round ${round + 1}/${o.runs}: read ${last(readMs)} s, write+fsync ${secs(writeFsync[writeFsync.length - 1].ms).toFixed(2)} s, ` +
      combos.map((c) => `${c.threads}t/${c.io} ${last(c.wallMs)} s`).join(', '));
  }
  const loadAfter = loadavg();

  const readS = secs(median(readMs));
  const writeS = secs(median(writeFsync.map((x) => x.ms)));
  const writeCacheS = secs(median(writeCache.map((x) => x.ms)));
  const floorS = readS + writeS;
  const ceilings = {
    read: { seconds: readS, bytes: data.inputFileBytes, gbPerSecond: data.inputFileBytes / GB / readS, runsMs: readMs },
    writeFsync: {
      seconds: writeS, bytes: outputFileBytes, gbPerSecond: outputFileBytes / GB / writeS,
      runsMs: writeFsync.map((x) => x.ms), writePartMs: writeFsync.map((x) => x.writeMs), fsyncPartMs: writeFsync.map((x) => x.fsyncMs),
    },
    writePageCache: {
      seconds: writeCacheS, bytes: outputFileBytes, gbPerSecond: outputFileBytes / GB / writeCacheS, runsMs: writeCache.map((x) => x.ms),
    },
    floorSeconds: floorS,
  };
  const merges = combos.map((c) => {
    const s = secs(median(c.wallMs));
    return {
      threads: c.threads, io: c.io, kernel: c.kernel,
      medianSeconds: s,
      minSeconds: secs(Math.min(...c.wallMs)),
      maxSeconds: secs(Math.max(...c.wallMs)),
      inputGBps: inputBytes / GB / s,
      ratioToFloor: s / floorS,
      wallMs: c.wallMs, libraryElapsedMs: c.libraryElapsedMs,
    };
  });

  // pread vs mmap at each thread count, where both were measured.
  const ioComparison = [];
  for (const threads of o.threads) {
    const p = merges.find((m) => m.threads === threads && m.io === 'pread');
    const m = merges.find((x) => x.threads === threads && x.io === 'mmap');
    if (p && m) {
      const faster = p.medianSeconds <= m.medianSeconds ? 'pread' : 'mmap';
      const [fast, slow] = faster === 'pread' ? [p, m] : [m, p];
      ioComparison.push({ threads, faster, percent: (slow.medianSeconds / fast.medianSeconds - 1) * 100 });
    }
  }

  const command = `node bench/merge.bench.js${process.argv.length > 2 ? ` ${process.argv.slice(2).join(' ')}` : ''}`;
  const result = {
    date: new Date().toISOString(),
    command,
    pma: pma.VERSION,
    machine: { ...host, pmaKernels: cpu.kernels, pmaBestKernel: cpu.best },
    params: {
      inputs: o.inputs, sizePerCheckpoint: fmtSize(o.sizeBytes), dtype: o.dtype, runs: o.runs,
      threads: o.threads, io: o.io, kernel: o.kernel, dataDir: o.dataDir,
    },
    data: {
      arch: data.arch, tensorsPerCheckpoint: data.tensors, shardsPerCheckpoint: SHARDS,
      inputTensorBytes: inputBytes, inputFileBytes: data.inputFileBytes, outputFileBytes,
      generatedNow: data.generatedNow, generateSeconds: data.generateSeconds,
    },
    loadAverage: { before: loadBefore, after: loadAfter },
    ceilings,
    merges,
    ioComparison,
  };
  writeFileSync(join(o.dataDir, 'last-result.json'), `${JSON.stringify(result, null, 2)}\n`);

  if (o.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  else process.stdout.write(report(result));
}

function report(r) {
  const m = r.machine;
  const d = r.data;
  const c = r.ceilings;
  const L = [];
  L.push(`## pma merge benchmark`);
  L.push('');
  L.push(`command: \`${r.command}\` (${r.date})`);
  L.push(`machine: ${m.cpuModel}, ${m.cores} cores, ${m.memoryGiB} GiB RAM, avx2 ${m.avx2 ? 'yes' : 'no'}, avx512f ${m.avx512f ? 'yes' : 'no'} ` +
    `(pma kernels: ${m.pmaKernels.join(', ')}; best ${m.pmaBestKernel}); data on ${m.filesystem} (${m.device}); ${m.platform}; node ${m.node}; pma ${r.pma}`);
  L.push(`inputs: ${r.params.inputs} checkpoints x ${r.params.sizePerCheckpoint} ${r.params.dtype} (${fmtGB(d.inputTensorBytes / r.params.inputs)} of tensors each), ${d.shardsPerCheckpoint} shards each, ` +
    `${d.tensorsPerCheckpoint} tensors (hidden ${d.arch.hidden}, ${d.arch.layers} layers x ${d.arch.experts} experts, vocab ${d.arch.vocab}); ` +
    `reads ${fmtGB(d.inputTensorBytes)}, writes ${fmtGB(d.outputFileBytes)}; ${r.params.runs} runs each, medians; warm page cache`);
  L.push(`load average (1/5/15 min) before ${r.loadAverage.before.map((x) => x.toFixed(2)).join('/')}, after ${r.loadAverage.after.map((x) => x.toFixed(2)).join('/')}; ` +
    'measurements interleaved round by round');
  L.push('');
  L.push(`ceilings: read (cat > /dev/null) ${c.read.seconds.toFixed(3)} s = ${c.read.gbPerSecond.toFixed(2)} GB/s; ` +
    `write + fsync ${c.writeFsync.seconds.toFixed(3)} s = ${c.writeFsync.gbPerSecond.toFixed(2)} GB/s ` +
    `(medians of the parts: write ${secs(median(c.writeFsync.writePartMs)).toFixed(3)} s, fsync ${secs(median(c.writeFsync.fsyncPartMs)).toFixed(3)} s) ` +
    `(to the page cache only, no fsync: ${c.writePageCache.seconds.toFixed(3)} s = ${c.writePageCache.gbPerSecond.toFixed(2)} GB/s); ` +
    `floor = read + write+fsync = ${c.floorSeconds.toFixed(3)} s`);
  L.push('');
  L.push('| threads | io | kernel | median s | min s | max s | input GB/s | x floor |');
  L.push('|--:|:--|:--|--:|--:|--:|--:|--:|');
  for (const x of r.merges) {
    L.push(`| ${x.threads} | ${x.io} | ${x.kernel} | ${x.medianSeconds.toFixed(3)} | ${x.minSeconds.toFixed(3)} | ${x.maxSeconds.toFixed(3)} | ` +
      `${x.inputGBps.toFixed(2)} | ${x.ratioToFloor.toFixed(2)} |`);
  }
  L.push(`| - | floor (read + write+fsync) | - | ${c.floorSeconds.toFixed(3)} | | | ${(d.inputTensorBytes / GB / c.floorSeconds).toFixed(2)} | 1.00 |`);
  L.push('');
  for (const x of r.ioComparison) {
    L.push(`io at ${x.threads} thread(s): ${x.faster} faster by ${x.percent.toFixed(1)}% (median)`);
  }
  L.push(`results: ${join(r.params.dataDir, 'last-result.json')}`);
  return `${L.join('\n')}\n`;
}

main().catch((e) => {
  process.stderr.write(`merge.bench: ${e?.stack ?? e}\n`);
  process.exit(1);
});
