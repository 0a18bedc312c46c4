import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { main } from './cli/main.js';
import { merge } from './merge.js';
import { native } from './native.js';
import { readHeader } from './safetensors/header.js';
import { layoutFile, shardIndexJson, shardName, splitShards, type OutputTensorSpec } from './safetensors/writer.js';

/**
 * `npm run demo`: makes a tiny training run (5 checkpoints of a small MoE-shaped model, the newest
 * sharded), inspects it, merges the 4 newest with the CLI, and verifies the result: every tensor
 * present with its dtype and shape, the same bytes from the scalar kernel on one thread with tiny
 * chunks, and a sample of elements against a plain float64 average.
 */
const LAYERS = 2;
const EXPERTS = 4;
const HIDDEN = 64;

function specs(): OutputTensorSpec[] {
  const t: OutputTensorSpec[] = [{ name: 'model.embed_tokens.weight', dtype: 'BF16', shape: [512, HIDDEN], bytes: 512 * HIDDEN * 2 }];
  for (let l = 0; l < LAYERS; l++) {
    for (const p of ['q', 'k', 'v', 'o']) t.push({ name: `model.layers.${l}.self_attn.${p}_proj.weight`, dtype: 'BF16', shape: [HIDDEN, HIDDEN], bytes: HIDDEN * HIDDEN * 2 });
    for (let e = 0; e < EXPERTS; e++) {
      for (const p of ['gate', 'up', 'down']) t.push({ name: `model.layers.${l}.mlp.experts.${e}.${p}_proj.weight`, dtype: 'BF16', shape: [HIDDEN, 2 * HIDDEN], bytes: HIDDEN * 2 * HIDDEN * 2 });
    }
    t.push({ name: `model.layers.${l}.mlp.gate.weight`, dtype: 'F32', shape: [EXPERTS, HIDDEN], bytes: EXPERTS * HIDDEN * 4 });
    t.push({ name: `model.layers.${l}.input_layernorm.weight`, dtype: 'F32', shape: [HIDDEN], bytes: HIDDEN * 4 });
  }
  t.push({ name: 'model.norm.weight', dtype: 'F32', shape: [HIDDEN], bytes: HIDDEN * 4 });
  t.push({ name: 'lm_head.weight', dtype: 'F16', shape: [512, HIDDEN], bytes: 512 * HIDDEN * 2 });
  return t;
}

/** Deterministic weights drifting around a basin, as checkpoints of one run do. */
function tensorData(spec: OutputTensorSpec, step: number): Buffer {
  const n = spec.bytes / (spec.dtype === 'F32' ? 4 : 2);
  const b = Buffer.alloc(spec.bytes);
  const f = Buffer.alloc(4);
  for (let i = 0; i < n; i++) {
    const v = Math.sin(i * 0.37 + spec.name.length) * 0.5 + Math.sin(i * 1.7 + step * 1e-3) * 0.05;
    if (spec.dtype === 'F32') b.writeFloatLE(v, i * 4);
    else if (spec.dtype === 'BF16') {
      f.writeFloatLE(v);
      b.writeUInt16LE(f.readUInt16LE(2), i * 2);
    } else {
      const sign = v < 0 ? 0x8000 : 0;
      const a = Math.min(Math.abs(v), 65504);
      const e = a < 2 ** -14 ? 0 : Math.floor(Math.log2(a));
      const h = a < 2 ** -14 ? Math.round(a * 2 ** 24) : ((e + 15) << 10) | Math.min(1023, Math.floor((a / 2 ** e - 1) * 1024));
      b.writeUInt16LE(sign | h, i * 2);
    }
  }
  return b;
}

function writeCheckpoint(dir: string, step: number, shards: number): void {
  mkdirSync(dir, { recursive: true });
  const all = specs();
  const groups = shards > 1 ? splitShards(all, Math.ceil(all.reduce((s, t) => s + t.bytes, 0) / shards)) : [all];
  const weightMap = new Map<string, string>();
  for (const [i, g] of groups.entries()) {
    const name = groups.length > 1 ? shardName(i, groups.length) : 'model.safetensors';
    const layout = layoutFile(g);
    const buf = Buffer.alloc(layout.size);
    layout.header.copy(buf);
    for (const t of g) {
      tensorData(t, step).copy(buf, layout.offsets.get(t.name));
      weightMap.set(t.name, name);
    }
    writeFileSync(join(dir, name), buf);
  }
  if (groups.length > 1) writeFileSync(join(dir, 'model.safetensors.index.json'), shardIndexJson(all.reduce((s, t) => s + t.bytes, 0), weightMap));
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ model_type: 'pma-demo', num_hidden_layers: LAYERS, num_experts: EXPERTS, hidden_size: HIDDEN }, null, 2));
  writeFileSync(join(dir, 'optimizer.pt'), 'training state: never copied into a merge');
}

function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`demo verification failed: ${what}`);
  process.stdout.write(`  ok  ${what}\n`);
}

async function demo(): Promise<number> {
  const keep = process.argv.includes('--keep');
  const root = mkdtempSync(join(tmpdir(), 'pma-demo-'));
  try {
    const run = join(root, 'run');
    const steps = [1000, 2000, 3000, 4000, 10000];
    for (const s of steps) writeCheckpoint(join(run, `checkpoint-${s}`), s, s === 10000 ? 3 : 1);
    process.stdout.write(`made a tiny run of ${steps.length} checkpoints in ${run}\n\n$ pma inspect ${run}\n`);
    if ((await main(['inspect', run])) !== 0) return 1;
    const out = join(root, 'merged');
    process.stdout.write(`\n$ pma merge ${run} --last 4 --out ${out}\n`);
    if ((await main(['merge', run, '--last', '4', '--out', out])) !== 0) return 1;

    process.stdout.write('\nverifying:\n');
    const h = await readHeader(join(out, 'model.safetensors'));
    const want = specs();
    check(h.tensors.length === want.length && want.every((s) => h.tensors.some((t) => t.name === s.name && t.dtype === s.dtype && t.shape.join() === s.shape.join())), `${want.length} tensors with their dtypes and shapes`);
    const again = join(root, 'merged-scalar');
    await merge({ inputs: run, last: 4, out: again, kernel: 'scalar', threads: 1, chunkSize: 4096 });
    const a = readFileSync(join(out, 'model.safetensors'));
    check(a.equals(readFileSync(join(again, 'model.safetensors'))), `same bytes from the scalar kernel on 1 thread with 4 KiB chunks as from ${native().cpuFeatures().best} on the default pool`);
    const t = h.tensors.find((x) => x.name === 'model.norm.weight');
    const spec = want.find((x) => x.name === 'model.norm.weight') as OutputTensorSpec;
    let worst = 0;
    for (let i = 0; t && i < HIDDEN; i++) {
      const mean = steps.slice(-4).reduce((s, st) => s + tensorData(spec, st).readFloatLE(i * 4), 0) / 4;
      worst = Math.max(worst, Math.abs(a.readFloatLE(h.dataStart + t.begin + i * 4) - mean) / Math.max(Math.abs(mean), 1e-30));
    }
    check(worst <= 2 ** -22, `model.norm.weight within ${worst.toExponential(1)} (relative) of a float64 average`);
    check(JSON.parse(readFileSync(join(out, 'pma.json'), 'utf8')).inputs.length === 4, 'pma.json records the 4 inputs');
    process.stdout.write(`\ndemo done${keep ? `; files kept in ${root}` : ''}\n`);
    return 0;
  } finally {
    if (!keep) rmSync(root, { recursive: true, force: true });
  }
}

process.exitCode = await demo();
