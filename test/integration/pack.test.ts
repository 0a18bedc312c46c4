import { spawnSync } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  symlinkSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join, relative } from 'node:path';
import { gunzipSync } from 'node:zlib';

import { afterAll, beforeAll, expect, it } from 'vitest';

import { pma, ROOT } from '../helpers/cli.js';
import { describeNeeds } from '../helpers/requires.js';

// The npm package as users get it: `npm pack` (prepare, prepack: the prebuilt CPU addon, postpack),
// then `npm install ./pma-<v>.tgz` into an empty project with no compiler on PATH, once with the
// install script (which must pick the prebuild) and once with --ignore-scripts (npm 12's default:
// the runtime loader must find the prebuild itself), and `npx pma merge` / `verify` there.
// See docs/packaging.md.

function onPath(name: string): string | undefined {
  for (const d of (process.env.PATH ?? '').split(delimiter))
    if (d && existsSync(join(d, name))) return realpathSync(join(d, name));
  return undefined;
}

const NPM = onPath('npm');
const NPX = onPath('npx');

/**
 * The environment for the child npm commands: without what an enclosing npm (npx vitest, npm test)
 * exports (npm_config_local_prefix would point them at this repository), without compiler and CUDA
 * overrides, and with the given PATH. npm's cache, registry, user config and nodedir stay.
 */
function npmEnv(path: string): NodeJS.ProcessEnv {
  const keep = new Set([
    'npm_config_cache',
    'npm_config_registry',
    'npm_config_userconfig',
    'npm_config_globalconfig',
    'npm_config_nodedir',
    'npm_config_cafile',
  ]);
  const drop = new Set([
    'INIT_CWD',
    'NODE_OPTIONS',
    'CC',
    'CXX',
    'CUDACXX',
    'CUDAHOSTCXX',
    'CUDA_HOME',
    'CUDA_PATH',
    'PMA_CUDA',
    'PMA_CUDA_ARCHS',
    'PMA_BUILD_FROM_SOURCE',
  ]);
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if ((/^npm_/i.test(k) && !keep.has(k.toLowerCase())) || drop.has(k)) continue;
    env[k] = v;
  }
  env.PATH = path;
  return env;
}

function skipReason(): string | null {
  if (process.platform !== 'linux' || process.arch !== 'x64')
    return `the prebuild is made for linux-x64, this is ${process.platform}-${process.arch}`;
  if (!NPM || !NPX) return 'npm or npx is not on PATH';
  const ping = spawnSync(NPM, ['ping'], { encoding: 'utf8', timeout: 15_000, env: npmEnv(process.env.PATH ?? '') });
  if (ping.status !== 0) return 'the npm registry cannot be reached (npm ping failed within 15 s)';
  return null;
}
const skip = skipReason();

interface Run {
  status: number;
  out: string;
}

function sh(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv, timeout = 150_000): Run {
  const r = spawnSync(cmd, args, { cwd, env, encoding: 'utf8', timeout, maxBuffer: 64 << 20 });
  return {
    status: r.status ?? -1,
    out: `$ ${cmd} ${args.join(' ')}\n${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? String(r.error) : ''}`,
  };
}

/** The entry names of a .tgz (ustar, with pax path records), read without tar. */
function tarList(file: string): string[] {
  const buf = gunzipSync(readFileSync(file));
  const names: string[] = [];
  let paxPath: string | undefined;
  for (let pos = 0; pos + 512 <= buf.length;) {
    const h = buf.subarray(pos, pos + 512);
    if (h.every((b) => b === 0)) break;
    const str = (a: number, b: number) => h.subarray(a, b).toString('utf8').replace(/\0.*$/s, '');
    const size = parseInt(str(124, 136).trim() || '0', 8);
    const type = str(156, 157);
    const body = buf.subarray(pos + 512, pos + 512 + size);
    if (type === 'x') {
      paxPath = /(?:^|\n)\d+ path=([^\n]*)\n/.exec(body.toString('utf8'))?.[1];
    } else if (type !== 'g') {
      const prefix = str(345, 500);
      names.push(paxPath ?? (prefix ? `${prefix}/${str(0, 100)}` : str(0, 100)));
      paxPath = undefined;
    }
    pos += 512 + Math.ceil(size / 512) * 512;
  }
  return names;
}

describeNeeds(skip, 'npm pack, then install into an empty project without a compiler', () => {
  // Made in beforeAll (not with the scratch helper), so a skipped suite leaves nothing behind.
  let tmp: string;
  let bin: string;
  let tarball: string;
  let reduced: NodeJS.ProcessEnv;
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  beforeAll(() => {
    tmp = mkdtempSync(join(tmpdir(), 'pma-pack-'));
    bin = join(tmp, 'bin');
    // Packs a copy of the repository (its files, this node_modules), so the pack's prepare (tsc
    // into dist/) and prepack/postpack (prebuilds/) never touch the tree other tests are using.
    const stage = join(tmp, 'stage');
    const skipTop = new Set(['node_modules', '.git', 'build', 'dist', 'prebuilds', '.bench-data']);
    cpSync(ROOT, stage, {
      recursive: true,
      filter: (src) => {
        const rel = relative(ROOT, src);
        return !skipTop.has(rel.split('/')[0] as string) && !rel.endsWith('.tgz');
      },
    });
    symlinkSync(join(ROOT, 'node_modules'), join(stage, 'node_modules'), 'dir');
    const dest = join(tmp, 'pack');
    mkdirSync(dest);
    const packed = sh(
      NPM as string,
      ['pack', '--pack-destination', dest],
      stage,
      npmEnv(process.env.PATH ?? ''),
      240_000,
    );
    expect(packed.status, packed.out).toBe(0);
    const tgz = readdirSync(dest).filter((f) => f.endsWith('.tgz'));
    expect(tgz, packed.out).toHaveLength(1);
    tarball = join(dest, tgz[0] as string);
    expect(existsSync(join(stage, 'prebuilds')), 'postpack leaves no prebuilds/ behind').toBe(false);

    // A PATH with node, npm and npx only (and sh, which npm runs scripts with): no cc, gcc, g++,
    // make, cmake or python3.
    mkdirSync(bin);
    symlinkSync(process.execPath, join(bin, 'node'));
    symlinkSync(NPM as string, join(bin, 'npm'));
    symlinkSync(NPX as string, join(bin, 'npx'));
    symlinkSync(existsSync('/bin/sh') ? '/bin/sh' : (onPath('sh') as string), join(bin, 'sh'));
    reduced = npmEnv(bin);
  }, 300_000);

  it('the tarball holds dist/, the linux-x64 prebuild with its metadata, and no tests', () => {
    const names = tarList(tarball);
    expect(names).toContain('package/dist/cli/main.js');
    expect(names).toContain('package/prebuilds/linux-x64/pma.node');
    expect(names).toContain('package/prebuilds/linux-x64/prebuild.json');
    expect(names).toContain('package/scripts/build-native.mjs');
    expect(names.filter((n) => n.startsWith('package/test/') || n.startsWith('package/src/'))).toEqual([]);
    const which = sh(join(bin, 'sh'), ['-c', 'command -v cc gcc g++ c++ make cmake python3 || true'], tmp, reduced);
    expect(which.out.split('\n').slice(1).join('').trim(), 'no compiler on the reduced PATH').toBe('');
  });

  /**
   * `npx pma demo` (writes the demo run, merges and checks it) and `npx pma merge` / `verify` of
   * that run in the project with the reduced PATH; the bytes match this checkout's build.
   */
  function mergesThere(project: string) {
    const demo = sh(join(bin, 'npx'), ['pma', 'demo', 'demo'], project, reduced);
    expect(demo.status, demo.out).toBe(0);
    expect(demo.out).toMatch(/ok {2}same bytes from the scalar kernel/);
    const run = join(project, 'demo', 'run');
    const out = join(project, 'merged');
    const merged = sh(join(bin, 'npx'), ['pma', 'merge', run, '--last', '3', '--out', out], project, reduced);
    expect(merged.status, merged.out).toBe(0);
    expect(existsSync(join(out, 'model.safetensors')), merged.out).toBe(true);
    const verified = sh(join(bin, 'npx'), ['pma', 'verify', out], project, reduced);
    expect(verified.status, verified.out).toBe(0);
    const here = join(project, 'merged-by-checkout');
    expect(pma(['merge', run, '--last', '3', '--out', here]).status).toBe(0);
    expect(readFileSync(join(out, 'model.safetensors')).equals(readFileSync(join(here, 'model.safetensors')))).toBe(
      true,
    );
  }

  function project(name: string): string {
    const dir = join(tmp, name);
    mkdirSync(dir);
    const init = sh(join(bin, 'npm'), ['init', '-y'], dir, reduced);
    expect(init.status, init.out).toBe(0);
    return dir;
  }

  /** npm install of the tarball into `dir`, offline where it can be; it must succeed. */
  function install(dir: string, flag: string): ReturnType<typeof sh> {
    const inst = sh(
      join(bin, 'npm'),
      ['install', tarball, flag, '--prefer-offline', '--no-audit', '--no-fund'],
      dir,
      reduced,
    );
    expect(inst.status, inst.out).toBe(0);
    return inst;
  }

  it('npm install (scripts run) uses the prebuild, compiles nothing, and npx pma merge works', () => {
    const dir = project('with-scripts');
    const inst = install(dir, '--foreground-scripts');
    const pkg = join(dir, 'node_modules', 'pma');
    const build = JSON.parse(readFileSync(join(pkg, 'build', 'pma-build.json'), 'utf8')) as {
      variant: string;
      reason: string;
      prebuilt?: boolean;
      addon?: string;
    };
    expect(build, inst.out).toMatchObject({ variant: 'cpu', prebuilt: true, addon: 'prebuilds/linux-x64/pma.node' });
    expect(build.reason).toMatch(/^(nvcc not found|the CUDA build with .+ failed)$/);
    expect(existsSync(join(pkg, 'build', 'Release', 'pma.node'))).toBe(false);
    mergesThere(dir);
  });

  it('npm install --ignore-scripts (npm 12 default): the loader finds the prebuild by itself', () => {
    const dir = project('ignore-scripts');
    install(dir, '--ignore-scripts');
    const pkg = join(dir, 'node_modules', 'pma');
    expect(existsSync(join(pkg, 'build')), 'the install script did not run').toBe(false);
    expect(existsSync(join(pkg, 'prebuilds', 'linux-x64', 'pma.node'))).toBe(true);
    const devices = sh(join(bin, 'npx'), ['pma', 'devices'], dir, reduced);
    expect(devices.status, devices.out).toBe(0);
    expect(devices.out).toMatch(/^cpu {7}\d+ cores, kernels scalar/m);
    mergesThere(dir);
  });
});
