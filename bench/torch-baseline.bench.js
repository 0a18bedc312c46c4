#!/usr/bin/env node
// pma against a plain torch merge script (bench/torch_baseline.py: per tensor, mmap, fp32
// accumulation, the way merge scripts do it) on the same series, interleaved run by run.
// Needs Debian's python3-torch (/usr/bin/python3 with torch); says so and exits 0 without it.
//
//   node bench/torch-baseline.bench.js [--inputs 5] [--size 1GB] [--dtype bf16] [--runs 3]
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const PY = process.env.PMA_TORCH_PYTHON ?? '/usr/bin/python3';

export function torchAvailable() {
  return spawnSync(PY, ['-c', 'import torch'], { stdio: 'ignore' }).status === 0;
}

export async function torchBaseline({
  inputs = 5,
  size = '1GB',
  dtype = 'bf16',
  runs = 3,
  dir = join(ROOT, '.bench-data'),
  log = () => {},
} = {}) {
  const pma = await import(pathToFileURL(join(ROOT, 'dist', 'index.js')).href);
  const bench = await import(pathToFileURL(join(ROOT, 'dist', 'bench', 'index.js')).href);
  const { byteSize } = await import(pathToFileURL(join(ROOT, 'dist', 'validate.js')).href);
  const series = await bench.generateSeries(dir, { inputs, sizeBytes: byteSize('size', size), dtype }, { log });
  const ckpts = spawnSync('bash', ['-c', `ls -d ${series.runDir}/checkpoint-* | sort -t- -k2 -n`], { encoding: 'utf8' })
    .stdout.trim()
    .split('\n');
  const out = join(dir, 'torch-out');
  const times = { pma: [], torch: [] };
  for (let r = 0; r < runs; r++) {
    rmSync(out, { recursive: true, force: true });
    let t = performance.now();
    await pma.merge({ inputs: series.runDir, out });
    times.pma.push((performance.now() - t) / 1000);
    rmSync(out, { recursive: true, force: true });
    t = performance.now();
    const py = spawnSync(PY, [join(ROOT, 'bench', 'torch_baseline.py'), out, ...ckpts], { encoding: 'utf8' });
    if (py.status !== 0) throw new Error(`torch baseline failed: ${py.stderr}`);
    times.torch.push((performance.now() - t) / 1000);
    log(`round ${r + 1}/${runs}: pma ${times.pma.at(-1).toFixed(2)} s, torch ${times.torch.at(-1).toFixed(2)} s`);
  }
  rmSync(out, { recursive: true, force: true });
  const median = (a) => [...a].sort((x, y) => x - y)[a.length >> 1];
  return {
    series: `${inputs} x ${size} ${dtype}`,
    runs,
    pmaSeconds: median(times.pma),
    torchSeconds: median(times.torch),
    times,
  };
}

export function formatTorch(r) {
  return `torch baseline (bench/torch_baseline.py, per tensor, mmap, fp32 accumulation) on ${r.series}, medians of ${r.runs}: torch ${r.torchSeconds.toFixed(2)} s, pma ${r.pmaSeconds.toFixed(2)} s: pma is ${(r.torchSeconds / r.pmaSeconds).toFixed(1)}x faster\n`;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({
    options: {
      inputs: { type: 'string', default: '5' },
      size: { type: 'string', default: '1GB' },
      dtype: { type: 'string', default: 'bf16' },
      runs: { type: 'string', default: '3' },
    },
  });
  if (!torchAvailable()) {
    process.stdout.write(`torch baseline skipped: ${PY} cannot import torch (apt-get install python3-torch)\n`);
  } else {
    const r = await torchBaseline({
      inputs: Number(values.inputs),
      size: values.size,
      dtype: values.dtype,
      runs: Number(values.runs),
      log: (m) => process.stderr.write(`${m}\n`),
    });
    process.stdout.write(formatTorch(r));
  }
}
