#!/usr/bin/env node
// Bundles the CLI (dist/cli/main.js and what it imports, as tsc built them) into dist/bin/: the
// `pma` command of package.json. Node loads one entry and one file per command (and the chunks
// they share) instead of some 80 modules, which takes about 8 ms where the modules took about 30
// (`node bench/startup.bench.js`): every pma process starts that much sooner, a merge in parts
// once per part. The library (dist/index.js) is not bundled.
//
// dist/bin/ sits as deep as dist/util/, so the package root that src/util/package.ts derives from
// its own file's URL is the same from the bundle; the addon is loaded by absolute path.
import { build } from 'esbuild';
import { rmSync } from 'node:fs';
import { join } from 'node:path';

const root = join(import.meta.dirname, '..');
const outdir = join(root, 'dist', 'bin');
rmSync(outdir, { recursive: true, force: true });
await build({
  entryPoints: { pma: join(root, 'dist', 'cli', 'main.js') },
  outdir,
  bundle: true,
  splitting: true, // each command stays a file of its own, loaded when it runs
  format: 'esm',
  platform: 'node',
  target: 'node20',
  packages: 'external',
  chunkNames: 'chunk-[hash]',
  logLevel: 'warning',
});
