#!/usr/bin/env node
// Builds the CPU-only addon for this platform into prebuilds/<platform>-<arch>/pma.node, with
// prebuild.json beside it (what it was built for and from), for the npm tarball: `npm pack` runs
// it as "prepack" and removes prebuilds/ again in "postpack". The build happens in a temporary
// copy of binding.gyp and native/, so the developer's build/ is left alone. `--clean` only
// removes prebuilds/. See docs/packaging.md.
import { spawnSync } from 'node:child_process';
import {
  copyFileSync,
  cpSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';

import { libc, nodeDir, nodeGyp, prebuildDir, probeAddon, ROOT, sourceHash } from './native-common.mjs';

const prebuilds = join(ROOT, 'prebuilds');
if (process.argv.includes('--clean')) {
  rmSync(prebuilds, { recursive: true, force: true });
  console.log('pma: removed prebuilds/');
  process.exit(0);
}

const started = Date.now();
const require = createRequire(import.meta.url);
const work = mkdtempSync(join(tmpdir(), 'pma-prebuild-'));
try {
  copyFileSync(join(ROOT, 'binding.gyp'), join(work, 'binding.gyp'));
  cpSync(join(ROOT, 'native'), join(work, 'native'), { recursive: true });
  // binding.gyp runs require('node-addon-api') from the build directory.
  const addonApi = dirname(require.resolve('node-addon-api/package.json', { paths: [ROOT] }));
  symlinkSync(dirname(addonApi), join(work, 'node_modules'), 'dir');

  const gyp = nodeGyp();
  const dir = nodeDir();
  const args = ['rebuild', '--release', '--jobs', 'max', ...(dir ? [`--nodedir=${dir}`] : [])];
  const [cmd, argv] = gyp.endsWith('.js') ? [process.execPath, [gyp, ...args]] : [gyp, args];
  // Only the CPU build: the CUDA variant is never prebuilt (PMA_CUDA does not apply here).
  console.log(`pma: prebuild: ${[cmd, ...argv].join(' ')} (in ${work})`);
  const r = spawnSync(cmd, argv, { cwd: work, stdio: 'inherit' });
  if (r.status !== 0) {
    throw new Error(`node-gyp failed (${r.error?.message ?? `exit ${r.status ?? r.signal}`})`);
  }

  const out = prebuildDir();
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  const addon = join(out, 'pma.node');
  copyFileSync(join(work, 'build', 'Release', 'pma.node'), addon);
  const bad = probeAddon(addon);
  if (bad) {
    rmSync(out, { recursive: true, force: true });
    throw new Error(`the built addon is unusable: ${bad}`);
  }
  const sources = JSON.parse(readFileSync(join(ROOT, 'native', 'sources.json'), 'utf8'));
  const napi = Number(
    /^NAPI_VERSION=(\d+)$/.exec(sources.defines.find((d) => d.startsWith('NAPI_VERSION=')) ?? '')?.[1],
  );
  const meta = {
    variant: 'cpu',
    platform: process.platform,
    arch: process.arch,
    libc: libc(),
    napi,
    node: process.versions.node,
    sourceHash: sourceHash(),
    cflags: sources.cflags,
    defines: sources.defines,
  };
  writeFileSync(join(out, 'prebuild.json'), JSON.stringify(meta, null, 2) + '\n');
  console.log(`pma: prebuild: wrote ${relative(ROOT, addon)} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
} catch (e) {
  console.error(`pma: prebuild: ${e.message}`);
  process.exitCode = 1;
} finally {
  rmSync(work, { recursive: true, force: true });
}
