#!/usr/bin/env node
// clang-format over native/ (the .clang-format beside package.json): rewrites the files, or with
// --check only reports the ones that differ and exits 1. The binary comes from the clang-format
// npm package, so every machine formats with the same version.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const check = process.argv.includes('--check');

function sources(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    return e.isDirectory() ? sources(p) : /\.(h|cc|cu|cuh)$/.test(e.name) ? [p] : [];
  });
}

const bin = join(
  dirname(createRequire(import.meta.url).resolve('clang-format/package.json')),
  'bin',
  `${process.platform}_${process.arch === 'x64' ? 'x64' : process.arch}`,
  'clang-format',
);
const files = sources(join(root, 'native'));
const args = check ? ['--dry-run', '--Werror', ...files] : ['-i', ...files];
const r = spawnSync(bin, args, { stdio: 'inherit', cwd: root });
if (r.error) {
  console.error(`clang-format could not run (${bin}): ${r.error.message}`);
  process.exit(1);
}
if (r.status === 0)
  console.log(`clang-format: ${files.length} native files ${check ? 'formatted as .clang-format asks' : 'formatted'}`);
process.exit(r.status ?? 1);
