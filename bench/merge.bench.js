#!/usr/bin/env node
// npm run bench: the full merge benchmark table, against this machine's own I/O floor.
//
//   node bench/merge.bench.js [--quick] [--data-dir DIR] [--regenerate] [--json]
//
// A thin wrapper over the built dist/bench code, which `pma bench` runs too (one implementation):
// the settings are standardSuite() in src/bench/suite.ts, the measurements runSuite() in
// src/bench/run.ts. For one configuration of your choice, or your own checkpoints, use
// `pma bench` (pma bench --help). See bench/README.md.

import { existsSync, writeFileSync } from 'node:fs';
import { availableParallelism, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

const USAGE = `Usage: node bench/merge.bench.js [options]      (npm run bench)

The full table: SMA of 5 checkpoints x 1 GB bf16 at 1 and 2 threads (and all cores), pread and
mmap, 5 runs; then the same into shards of at most a quarter of the output (several files to
hash), 5 x 1 GB
bf16 to an f32 output, 10 and 20 inputs, f16 and f32 inputs, at the largest thread count with
pread, 3 runs. Every row has its own inputs and its own floor
(cat of the same files + write and fsync of an output-sized file), measured in the same rounds.

  --quick             smoke test: 256MB checkpoints, 4 inputs in the first rows, 3 runs
  --data-dir DIR      where the inputs (one series at a time, kept as a cache), the output and
                      last-result.json go (default .bench-data)
  --regenerate        regenerate the inputs even if the cached ones match
  --json              print the result JSON on stdout instead of the report
  -h, --help          this help

One configuration, or your own checkpoints: pma bench --help.
`;

async function main() {
  let values;
  try {
    ({ values } = parseArgs({
      args: process.argv.slice(2),
      strict: true,
      options: {
        quick: { type: 'boolean' },
        'data-dir': { type: 'string' },
        regenerate: { type: 'boolean' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (e) {
    process.stderr.write(`merge.bench: ${e.message}\n(see node bench/merge.bench.js --help)\n`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const entry = join(ROOT, 'dist', 'bench', 'index.js');
  if (!existsSync(entry))
    throw new Error(`${entry} is missing: build first (npm run build, or npx tsc -p . for the TypeScript)`);
  const bench = await import(pathToFileURL(entry).href);

  const dir = resolve(values['data-dir'] ?? join(ROOT, '.bench-data'));
  const { cases, notes } = bench.standardSuite({
    quick: values.quick === true,
    cores: availableParallelism(),
    memoryBytes: totalmem(),
  });
  const ac = new AbortController();
  process.once('SIGINT', () => ac.abort());
  process.once('SIGTERM', () => ac.abort());
  const command = `node bench/merge.bench.js${process.argv.length > 2 ? ` ${process.argv.slice(2).join(' ')}` : ''}`;
  const result = await bench.runSuite(cases, {
    dir,
    regenerate: values.regenerate === true,
    log: (msg) => process.stderr.write(`${msg}\n`),
    signal: ac.signal,
    command,
    notes,
  });
  // The torch baseline of the issue's headline case, where Debian's python3-torch is installed.
  const torch = await import('./torch-baseline.bench.js');
  if (torch.torchAvailable()) {
    result.torch = await torch.torchBaseline({
      dir,
      ...(values.quick ? { inputs: 4, size: '256MB' } : {}),
      log: (msg) => process.stderr.write(`${msg}\n`),
    });
  }
  writeFileSync(join(dir, 'last-result.json'), `${JSON.stringify(result, null, 2)}\n`);
  const torchLine = result.torch
    ? torch.formatTorch(result.torch)
    : 'torch baseline skipped: /usr/bin/python3 cannot import torch (apt-get install python3-torch)\n';
  process.stdout.write(
    values.json
      ? `${JSON.stringify(result, null, 2)}\n`
      : `${bench.formatSuiteReport(result)}${torchLine}results: ${join(dir, 'last-result.json')}\n`,
  );
  return 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (e) => {
    process.stderr.write(`merge.bench: ${e?.code ? `[${e.code}] ${e.message}` : (e?.stack ?? e)}\n`);
    process.exitCode = e?.code === 'E_USAGE' ? 2 : 1;
  },
);
