#!/usr/bin/env node
// The GPU benchmark (scripts/gpu-check.sh runs it): on each usable GPU, the merge kernel's
// bandwidth against a device-to-device copy of the same bytes, measured in the same run, and
// pinned host<->device copy rates (for 5 and for 10 inputs, the paper's N); then end-to-end
// merges on the CPU and on the GPU, against this machine's read + write floor (pma bench --device
// cpu,cuda): the generated series, the same with 10 inputs, and a series of many small tensors
// (the MoE case, where each op's fixed cost on the GPU path shows: docs/gpu.md).
//
//   node bench/gpu.bench.js [--size 1GB] [--inputs 5] [--runs 3] [--threads N] [--dir DIR]
//                           [--small-tensors 20000] [--json] [--summary FILE]
import { mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { devices, formatBenchReport, native, runBench } from '../dist/index.js';
import { writeSafetensorsFile } from '../dist/synthetic/writer.js';
import { byteSize } from '../dist/validate.js';

const { values } = parseArgs({
  options: {
    size: { type: 'string', default: '1GB' },
    inputs: { type: 'string', default: '5' },
    runs: { type: 'string', default: '3' },
    threads: { type: 'string' },
    dir: { type: 'string', default: join(import.meta.dirname, '..', '.bench-data', 'gpu') },
    'kernel-elements': { type: 'string', default: String(2 ** 28) },
    'small-tensors': { type: 'string', default: '20000' },
    json: { type: 'boolean' },
    summary: { type: 'string' },
  },
});

const report = devices(availableParallelism());
const gpus = report.cuda.devices.filter((d) => d.usable);
if (gpus.length === 0) {
  console.error(
    `no usable GPU: ${report.cuda.built ? (report.cuda.error ?? 'none found') : 'this build has no CUDA (PMA_CUDA=1 npm run build)'}`,
  );
  process.exit(3);
}

const inputs = Number(values.inputs);
const count = Number(values['kernel-elements']);
const pairs = [
  ['BF16', 'BF16'],
  ['F16', 'F16'],
  ['F32', 'F32'],
  ['BF16', 'F32'],
];
const kernelRows = [];
for (const d of gpus) {
  // The given number of inputs in every dtype pair, and 10 inputs (the kernel's second batch).
  for (const [inDtype, outDtype, k] of [...pairs.map(([i, o]) => [i, o, inputs]), ['BF16', 'BF16', 10]]) {
    // Fewer elements for 4-byte inputs and for more inputs: about the same bytes moved per run.
    const n = Math.floor(((inDtype === 'F32' ? count / 2 : count) * inputs) / k / 64) * 64;
    const r = native().cudaBench({ device: d.index, inDtype, outDtype, inputs: k, count: n, iterations: 20 });
    kernelRows.push({
      device: `cuda:${d.index}`,
      name: d.name,
      inDtype,
      outDtype,
      inputs: k,
      elements: n,
      ...r,
      ratio: r.kernelGBps / r.copyGBps,
    });
  }
}

const threads = values.threads ?? String(Math.min(availableParallelism(), 16));
const command = `node bench/gpu.bench.js ${process.argv.slice(2).join(' ')}`.trim();
const common = { runs: values.runs, threads, io: 'pread', device: 'cpu,cuda', log: (m) => console.error(m), command };
const e2e = await runBench({ ...common, size: values.size, inputs: values.inputs, dir: values.dir });
// 10 inputs of half the size: the paper's N, about the same bytes read.
const e2e10 = await runBench({
  ...common,
  size: Math.floor(byteSize('size', values.size) / 2),
  inputs: '10',
  dir: join(values.dir, 'n10'),
});

// Many small tensors (4,096 bf16 values each) in 5 checkpoints: a small-tensor model end to end
// on the GPU path against the CPU's. Back to back in every checkpoint, they share ops since
// 2026-11-30 (src/plan/chunks.ts), so this no longer shows each tensor's fixed cost on the GPU
// (a piece, a read per input, a launch, an event, a writer wake-up) one op at a time.
const small = Number(values['small-tensors']);
const smallRun = join(values.dir, 'small', 'run');
const tensors = Array.from({ length: small }, (_, i) => ({ name: `layers.${i}.weight`, dtype: 'BF16', shape: [4096] }));
const payload = Buffer.alloc(8192);
for (let c = 1; c <= 5; c++) {
  mkdirSync(join(smallRun, `checkpoint-${c}`), { recursive: true });
  for (let j = 0; j < 4096; j++) payload.writeUInt16LE(0x3c00 + ((j * c) & 0x3ff), 2 * j);
  writeSafetensorsFile(join(smallRun, `checkpoint-${c}`, 'model.safetensors'), tensors, () => payload);
}
const e2eSmall = await runBench({ ...common, paths: [smallRun], dir: join(values.dir, 'small', 'work') });
const endToEnd = { [`${values.inputs} inputs`]: e2e, '10 inputs': e2e10, [`${small} small tensors`]: e2eSmall };

const lines = [];
const print = (l = '') => lines.push(l);
if (values.json) {
  print(JSON.stringify({ devices: report, kernels: kernelRows, endToEnd }, null, 2));
} else {
  const f = (x) => x.toFixed(1);
  print(
    `GPUs: ${gpus.map((d) => `cuda:${d.index} ${d.name} (compute ${d.computeCapability}, ${d.multiprocessors} SMs)`).join('; ')}`,
  );
  print(
    `build: ${report.cuda.archs}, CUDA runtime ${report.cuda.runtimeVersion}, driver ${report.cuda.driverRelease ?? '?'} (CUDA ${report.cuda.driverVersion})\n`,
  );
  print(
    `Kernel: SMA on the device, medians of 20 runs; "copy" is cudaMemcpy device-to-device moving the same bytes (read + write).\n`,
  );
  print(
    '| device | in -> out | inputs | elements/input | kernel GB/s | copy GB/s | kernel / copy | H2D pinned GB/s | D2H pinned GB/s |',
  );
  print('|:--|:--|--:|--:|--:|--:|--:|--:|--:|');
  for (const r of kernelRows) {
    print(
      `| ${r.device} | ${r.inDtype} -> ${r.outDtype} | ${r.inputs} | ${r.elements} | ${f(r.kernelGBps)} | ${f(r.copyGBps)} | ${(r.ratio * 100).toFixed(0)}% | ${f(r.h2dGBps)} | ${f(r.d2hGBps)} |`,
    );
  }
  for (const [name, r] of Object.entries(endToEnd)) {
    print(`\nEnd to end, ${name} (same files, interleaved rounds):\n`);
    print(formatBenchReport(r));
  }
}
const text = `${lines.join('\n')}\n`;
process.stdout.write(text);
if (values.summary) writeFileSync(values.summary, text);
