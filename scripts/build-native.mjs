#!/usr/bin/env node
// Builds the native addon: the CUDA variant with cmake-js when the CUDA toolkit is here (nvcc
// found, or PMA_CUDA=1), else the CPU-only variant with node-gyp. PMA_CUDA=0 forces the CPU build.
// Records which one it built, and why, in build/pma-build.json (read by `pma devices` and tests).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const want = process.env.PMA_CUDA;

function findNvcc() {
  const candidates = [];
  if (process.env.CUDACXX) candidates.push(process.env.CUDACXX);
  for (const v of ['CUDA_HOME', 'CUDA_PATH']) if (process.env[v]) candidates.push(join(process.env[v], 'bin', 'nvcc'));
  for (const d of (process.env.PATH ?? '').split(delimiter)) if (d) candidates.push(join(d, 'nvcc'));
  candidates.push('/usr/local/cuda/bin/nvcc');
  return candidates.find((p) => existsSync(p));
}

function nodeGyp() {
  if (process.env.npm_config_node_gyp) return process.env.npm_config_node_gyp;
  const bundled = join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
  return existsSync(bundled) ? bundled : 'node-gyp';
}

function run(cmd, args, env = process.env) {
  console.log(`pma: ${[cmd, ...args].join(' ')}`);
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', env });
  return r.status === 0;
}

function buildCpu() {
  const gyp = nodeGyp();
  return gyp.endsWith('.js') ? run(process.execPath, [gyp, 'rebuild']) : run(gyp, ['rebuild']);
}

function buildCuda(nvcc) {
  const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
  const jobs = String(availableParallelism());
  const env = { ...process.env, CUDACXX: nvcc, CMAKE_BUILD_PARALLEL_LEVEL: process.env.CMAKE_BUILD_PARALLEL_LEVEL ?? jobs };
  return run(process.execPath, [cmakeJs, 'rebuild', '--CDCMAKE_CUDA_COMPILER=' + nvcc], env);
}


function record(variant, reason, extra = {}) {
  mkdirSync(join(root, 'build'), { recursive: true });
  writeFileSync(join(root, 'build', 'pma-build.json'), JSON.stringify({ variant, reason, ...extra }, null, 2) + '\n');
  console.log(`pma: built the ${variant} addon (${reason})`);
}

if (want !== undefined && want !== '' && want !== '0' && want !== '1') {
  console.error(`pma: PMA_CUDA must be 0 or 1, got "${want}"`);
  process.exit(1);
}
const nvcc = want === '0' ? undefined : findNvcc();
if (want === '1' && !nvcc) {
  console.error('pma: PMA_CUDA=1 but nvcc was not found (looked in CUDACXX, CUDA_HOME, CUDA_PATH, PATH and /usr/local/cuda/bin)');
  process.exit(1);
}
if (nvcc) {
  if (buildCuda(nvcc)) {
    record('cuda', want === '1' ? 'PMA_CUDA=1' : `nvcc found at ${nvcc}`, { nvcc });
    process.exit(0);
  }
  if (want === '1') {
    console.error('pma: the CUDA build failed (PMA_CUDA=1); set PMA_CUDA=0 for the CPU-only build');
    process.exit(1);
  }
  console.warn('pma: warning: the CUDA build failed; building the CPU-only addon instead');
  if (!buildCpu()) process.exit(1);
  record('cpu', `the CUDA build with ${nvcc} failed`);
  process.exit(0);
}
if (!buildCpu()) process.exit(1);
record('cpu', want === '0' ? 'PMA_CUDA=0' : 'nvcc not found');
