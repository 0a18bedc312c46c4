// Shared by scripts/build-native.mjs (the install script) and scripts/prebuild.mjs (prepack):
// finding node-gyp and the node headers, the prebuild's place and tag, and whether one loads here.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

/** Where the prebuilt CPU addon for this platform lives (inside the package). */
export function prebuildDir(root = ROOT) {
  return join(root, 'prebuilds', `${process.platform}-${process.arch}`);
}

export function nodeGyp() {
  if (process.env.npm_config_node_gyp) return process.env.npm_config_node_gyp;
  const bundled = join(
    dirname(process.execPath),
    '..',
    'lib',
    'node_modules',
    'npm',
    'node_modules',
    'node-gyp',
    'bin',
    'node-gyp.js',
  );
  return existsSync(bundled) ? bundled : 'node-gyp';
}

/**
 * The node headers for node-gyp: npm's nodedir (npm_config_nodedir, set by npm from its config),
 * else the headers installed beside this node when they are its version, else none (node-gyp
 * then downloads them).
 */
export function nodeDir() {
  if (process.env.npm_config_nodedir) return process.env.npm_config_nodedir;
  const prefix = join(dirname(process.execPath), '..');
  const header = join(prefix, 'include', 'node', 'node_version.h');
  if (!existsSync(header)) return undefined;
  const text = readFileSync(header, 'utf8');
  const v = ['MAJOR', 'MINOR', 'PATCH']
    .map((k) => new RegExp(`#define NODE_${k}_VERSION (\\d+)`).exec(text)?.[1])
    .join('.');
  return v === process.versions.node ? prefix : undefined;
}

/** 'glibc' or 'musl' on Linux, '' elsewhere. */
export function libc() {
  if (process.platform !== 'linux') return '';
  const header = process.report?.getReport().header;
  return header?.glibcVersionRuntime ? 'glibc' : 'musl';
}

function filesUnder(dir) {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name));
}

/** A hash of what the CPU addon is built from: native/ (sources, headers, flags) and binding.gyp. */
export function sourceHash(root = ROOT) {
  const h = createHash('sha256');
  const files = [join(root, 'binding.gyp'), ...filesUnder(join(root, 'native'))]
    .map((f) => relative(root, f).split('\\').join('/'))
    .sort();
  for (const f of files)
    h.update(f)
      .update('\0')
      .update(readFileSync(join(root, f)))
      .update('\0');
  return h.digest('hex');
}

/** Loads an addon in a child process and calls cpuFeatures(): undefined when it works, else why not. */
export function probeAddon(path) {
  const code =
    'const a = require(process.argv[1]); const f = a.cpuFeatures(); if (!f || !Array.isArray(f.kernels)) throw new Error("cpuFeatures() returned " + JSON.stringify(f));';
  const r = spawnSync(process.execPath, ['-e', code, path], { encoding: 'utf8', timeout: 30_000 });
  if (r.status === 0) return undefined;
  const msg =
    (r.stderr || r.error?.message || `exit ${r.status ?? r.signal}`)
      .trim()
      .split('\n')
      .find((l) => /Error/.test(l)) ?? `exit ${r.status ?? r.signal}`;
  return `it does not load: ${msg.trim()}`;
}

/**
 * The prebuild for this platform when it is usable here: { path, meta } or { why } it is not
 * (missing, another platform or libc, a newer N-API, other sources, or it fails to load).
 */
export function usablePrebuild(root = ROOT) {
  const dir = prebuildDir(root);
  const path = join(dir, 'pma.node');
  const tag = `${process.platform}-${process.arch}`;
  if (!existsSync(path)) return { why: `no prebuild for ${tag}` };
  let meta;
  try {
    meta = JSON.parse(readFileSync(join(dir, 'prebuild.json'), 'utf8'));
  } catch (e) {
    return { why: `its prebuild.json is unreadable (${e.message})` };
  }
  if (meta.platform !== process.platform || meta.arch !== process.arch)
    return { why: `it is for ${meta.platform}-${meta.arch}` };
  if ((meta.libc ?? '') !== libc())
    return { why: `it is for ${meta.libc || 'no libc'}, this is ${libc() || 'no libc'}` };
  if (!(Number(meta.napi) <= Number(process.versions.napi)))
    return { why: `it needs N-API ${meta.napi}, this node has ${process.versions.napi}` };
  if (meta.sourceHash !== sourceHash(root)) return { why: 'the native sources changed since it was built' };
  const bad = probeAddon(path);
  if (bad) return { why: bad };
  return { path, meta };
}
