#!/usr/bin/env node
// The install script. Picks the native addon, in this order (see docs/packaging.md):
//  - PMA_CUDA=1: the CUDA variant, built from source with cmake-js (fails without nvcc);
//  - nvcc found (and PMA_CUDA is not 0): tries the CUDA build; if it fails, the prebuilt CPU
//    addon if it loads here, else the CPU addon compiled with node-gyp;
//  - otherwise (no nvcc, or PMA_CUDA=0): the prebuilt CPU addon (prebuilds/<platform>-<arch>,
//    shipped in the npm tarball) when it matches and loads here, compiling nothing; else the CPU
//    addon compiled with node-gyp.
// PMA_BUILD_FROM_SOURCE=1 or `npm install --build-from-source` never uses the prebuild.
// The CUDA build needs nvcc of CUDA 12.0 or newer (native/sources.json, cuda_toolkits: a 12.x
// toolkit runs on drivers from 525.60.13, a 13.x one needs 580.65.06).
// Records which one it chose, and why (with the toolkit and the driver it needs), in
// build/pma-build.json (read by `pma devices` and tests).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { delimiter, join, relative } from 'node:path';

import { nodeDir, nodeGyp, ROOT as root, usablePrebuild } from './native-common.mjs';

const require = createRequire(import.meta.url);
const want = process.env.PMA_CUDA;

function findNvcc() {
  const candidates = [];
  if (process.env.CUDACXX) candidates.push(process.env.CUDACXX);
  for (const v of ['CUDA_HOME', 'CUDA_PATH']) if (process.env[v]) candidates.push(join(process.env[v], 'bin', 'nvcc'));
  for (const d of (process.env.PATH ?? '').split(delimiter)) if (d) candidates.push(join(d, 'nvcc'));
  candidates.push('/usr/local/cuda/bin/nvcc');
  // Toolkits installed side by side (/usr/local/cuda-12.9, /usr/local/cuda-13.0): the newest.
  const versioned = existsSync('/usr/local')
    ? readdirSync('/usr/local')
        .map((d) => /^cuda-(\d+)\.(\d+)$/.exec(d))
        .filter((m) => m !== null)
        .sort((a, b) => Number(b[1]) - Number(a[1]) || Number(b[2]) - Number(a[2]))
    : [];
  for (const m of versioned) candidates.push(join('/usr/local', m[0], 'bin', 'nvcc'));
  return candidates.find((p) => existsSync(p));
}

const toolkits = JSON.parse(readFileSync(join(root, 'native', 'sources.json'), 'utf8')).cuda_toolkits;

/** The toolkit's version ("13.0", from `nvcc --version`), or null when nvcc does not say. */
function toolkitVersion(nvcc) {
  const r = spawnSync(nvcc, ['--version'], { encoding: 'utf8' });
  return /release (\d+\.\d+)/.exec(r.stdout ?? '')?.[1] ?? null;
}

/** Why this toolkit cannot build pma, or null when it can (12.0 and newer: sm_90 and the runtime API used). */
function toolkitProblem(version) {
  if (version === null) return 'its version could not be read from nvcc --version';
  const [major, minor] = version.split('.').map(Number);
  const [oldMajor, oldMinor] = toolkits.oldest.split('.').map(Number);
  return major < oldMajor || (major === oldMajor && minor < oldMinor)
    ? `CUDA ${version} is older than ${toolkits.oldest}, the oldest toolkit pma builds with`
    : null;
}

/** What the addon built with `version` needs of the driver, as build/pma-build.json records it. */
function driverNeeded(version) {
  const major = version.split('.')[0];
  return { cuda: `${major}.0`, linux: toolkits.drivers[major] ?? null };
}

function run(cmd, args, env = process.env) {
  console.log(`pma: ${[cmd, ...args].join(' ')}`);
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', env });
  return r.status === 0;
}

function buildCpu() {
  const gyp = nodeGyp();
  // Outside npm (no npm_config_nodedir) the headers beside this node, rather than a download.
  const dir = process.env.npm_config_nodedir ? undefined : nodeDir();
  const args = ['rebuild', '--jobs', 'max', ...(dir ? [`--nodedir=${dir}`] : [])];
  return gyp.endsWith('.js') ? run(process.execPath, [gyp, ...args]) : run(gyp, args);
}

function buildCuda(nvcc) {
  const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
  const jobs = String(availableParallelism());
  const env = {
    ...process.env,
    CUDACXX: nvcc,
    CMAKE_BUILD_PARALLEL_LEVEL: process.env.CMAKE_BUILD_PARALLEL_LEVEL ?? jobs,
  };
  return run(process.execPath, [cmakeJs, 'rebuild', '--CDCMAKE_CUDA_COMPILER=' + nvcc], env);
}

function write(fields) {
  mkdirSync(join(root, 'build'), { recursive: true });
  writeFileSync(join(root, 'build', 'pma-build.json'), JSON.stringify(fields, null, 2) + '\n');
}

function record(variant, reason, extra = {}) {
  write({ variant, reason, ...extra });
  console.log(`pma: built the ${variant} addon (${reason})`);
}

/** npm --build-from-source (npm_config_build_from_source: "true", or a list of package names) or PMA_BUILD_FROM_SOURCE=1. */
function fromSourceForced() {
  if (process.env.PMA_BUILD_FROM_SOURCE === '1' || process.env.PMA_BUILD_FROM_SOURCE === 'true')
    return 'PMA_BUILD_FROM_SOURCE=1';
  const v = process.env.npm_config_build_from_source;
  if (!v || v === 'false' || v === '0') return undefined;
  return v === 'true' ||
    v === '1' ||
    v
      .split(',')
      .map((s) => s.trim())
      .includes('pma')
    ? '--build-from-source'
    : undefined;
}

/**
 * Uses the prebuilt CPU addon when it is usable here: records it and exits. Otherwise returns
 * why not, and the caller compiles. A compiled addon left in build/ would be loaded before the
 * prebuild, so it is removed.
 */
function tryPrebuild(reason) {
  const forced = fromSourceForced();
  if (forced) return `${forced} given`;
  const p = usablePrebuild(root);
  if (!p.path) return p.why;
  for (const stale of ['Release', 'Debug'].map((d) => join(root, 'build', d, 'pma.node')))
    rmSync(stale, { force: true });
  const addon = relative(root, p.path).split('\\').join('/');
  write({ variant: 'cpu', reason, prebuilt: true, addon, prebuild: p.meta });
  console.log(`pma: using the prebuilt cpu addon ${addon} (${reason}); nothing to compile`);
  process.exit(0);
}

if (want !== undefined && want !== '' && want !== '0' && want !== '1') {
  console.error(`pma: PMA_CUDA must be 0 or 1, got "${want}"`);
  process.exit(1);
}
const nvcc = want === '0' ? undefined : findNvcc();
if (want === '1' && !nvcc) {
  console.error(
    'pma: PMA_CUDA=1 but nvcc was not found (looked in CUDACXX, CUDA_HOME, CUDA_PATH, PATH and /usr/local/cuda/bin)',
  );
  process.exit(1);
}
if (nvcc) {
  const toolkit = toolkitVersion(nvcc);
  const unfit = toolkitProblem(toolkit);
  if (!unfit && buildCuda(nvcc)) {
    record('cuda', want === '1' ? 'PMA_CUDA=1' : `nvcc found at ${nvcc}`, {
      nvcc,
      toolkit,
      driverNeeded: driverNeeded(toolkit),
    });
    process.exit(0);
  }
  if (want === '1') {
    console.error(
      `pma: the CUDA build ${unfit ? `cannot use ${nvcc}: ${unfit}` : 'failed'} (PMA_CUDA=1); set PMA_CUDA=0 for the CPU-only build`,
    );
    process.exit(1);
  }
  const reason = unfit ? `${nvcc} is not usable: ${unfit}` : `the CUDA build with ${nvcc} failed`;
  console.warn(`pma: warning: ${reason}; using the CPU-only addon instead`);
  const notPrebuilt = tryPrebuild(reason);
  console.log(`pma: not using the prebuilt addon: ${notPrebuilt}; compiling the CPU addon`);
  if (!buildCpu()) process.exit(1);
  record('cpu', reason, { prebuildNotUsed: notPrebuilt });
  process.exit(0);
}
const reason = want === '0' ? 'PMA_CUDA=0' : 'nvcc not found';
const notPrebuilt = tryPrebuild(reason);
console.log(`pma: not using the prebuilt addon: ${notPrebuilt}; compiling the CPU addon`);
if (!buildCpu()) process.exit(1);
record('cpu', reason, { prebuildNotUsed: notPrebuilt });
