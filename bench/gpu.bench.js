#!/usr/bin/env node
// The GPU benchmark (scripts/gpu-check.sh runs it): on each usable GPU, the merge kernel's
// bandwidth against a device-to-device copy of the same bytes, measured in the same run, and
// pinned host<->device copy rates; then an end-to-end merge of a generated series on the CPU and
// on the GPU, both against this machine's read + write floor (pma bench --device cpu,cuda).
//
//   node bench/gpu.bench.js [--size 1GB] [--inputs 5] [--runs 3] [--threads N] [--dir DIR] [--json]
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { devices, formatBenchReport, native, runBench } from '../dist/index.js';

const { values } = parseArgs({
  options: {
    size: { type: 'string', default: '1GB' },
    inputs: { type: 'string', default: '5' },
    runs: { type: 'string', default: '3' },
    threads: { type: 'string' },
    dir: { type: 'string', default: join(import.meta.dirname, '..', '.bench-data', 'gpu') },
    'kernel-elements': { type: 'string', default: String(2 ** 28) },
    json: { type: 'boolean' },
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
  for (const [inDtype, outDtype] of pairs) {
    // Fewer elements for 4-byte inputs: the same bytes moved per run, whatever the dtype.
    const n = inDtype === 'F32' ? count / 2 : count;
    const r = native().cudaBench({ device: d.index, inDtype, outDtype, inputs, count: n, iterations: 20 });
    kernelRows.push({
      device: `cuda:${d.index}`,
      name: d.name,
      inDtype,
      outDtype,
      inputs,
      elements: n,
      ...r,
      ratio: r.kernelGBps / r.copyGBps,
    });
  }
}

const threads = values.threads ?? String(Math.min(availableParallelism(), 16));
const e2e = await runBench({
  size: values.size,
  inputs: values.inputs,
  runs: values.runs,
  threads,
  io: 'pread',
  device: 'cpu,cuda',
  dir: values.dir,
  log: (m) => console.error(m),
  command: `node bench/gpu.bench.js ${process.argv.slice(2).join(' ')}`.trim(),
});

if (values.json) {
  console.log(JSON.stringify({ devices: report, kernels: kernelRows, endToEnd: e2e }, null, 2));
} else {
  const f = (x) => x.toFixed(1);
  console.log(
    `GPUs: ${gpus.map((d) => `cuda:${d.index} ${d.name} (compute ${d.computeCapability}, ${d.multiprocessors} SMs)`).join('; ')}`,
  );
  console.log(
    `build: ${report.cuda.archs}, CUDA runtime ${report.cuda.runtimeVersion}, driver ${report.cuda.driverVersion}\n`,
  );
  console.log(
    `Kernel: SMA of ${inputs} inputs on the device, medians of 20 runs; "copy" is cudaMemcpy device-to-device moving the same bytes (read + write).\n`,
  );
  console.log(
    '| device | in -> out | elements/input | kernel GB/s | copy GB/s | kernel / copy | H2D pinned GB/s | D2H pinned GB/s |',
  );
  console.log('|:--|:--|--:|--:|--:|--:|--:|--:|');
  for (const r of kernelRows) {
    console.log(
      `| ${r.device} | ${r.inDtype} -> ${r.outDtype} | ${r.elements} | ${f(r.kernelGBps)} | ${f(r.copyGBps)} | ${(r.ratio * 100).toFixed(0)}% | ${f(r.h2dGBps)} | ${f(r.d2hGBps)} |`,
    );
  }
  console.log('\nEnd to end (same files, interleaved rounds):\n');
  console.log(formatBenchReport(e2e));
}
