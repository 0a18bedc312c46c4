import { spawnSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { CLI, ROOT } from '../helpers/cli.js';
import { writeCheckpoint, type TensorSpec } from '../helpers/safetensors.js';
import { scratch } from '../helpers/scratch.js';

// package.json's `pma` is the bundle scripts/bundle-cli.mjs makes of tsc's modules (dist/bin/):
// the command users run must do what the modules the other tests run do.
const BIN = join(ROOT, 'dist', 'bin', 'pma.js');
const { tmp } = scratch('pma-bundle-');

const run = (entry: string, args: string[]) => {
  const r = spawnSync(process.execPath, [entry, ...args], { encoding: 'utf8', cwd: ROOT, timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
};

describe('the installed command (dist/bin/pma.js)', () => {
  it("is package.json's bin, made by every build after tsc's modules", () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
      bin: { pma: string };
      scripts: Record<string, string>;
    };
    expect(join(ROOT, pkg.bin.pma)).toBe(BIN);
    // npm ci and npm pack run prepare, which runs build:ts (the test setup bundles a stale build too).
    expect(pkg.scripts['prepare']).toBe('npm run build:ts');
    expect(pkg.scripts['build:ts']).toMatch(/tsc -p tsconfig\.json && node scripts\/bundle-cli\.mjs$/);
    expect(statSync(BIN).mtimeMs).toBeGreaterThanOrEqual(statSync(CLI).mtimeMs);
  });

  it('prints what the modules print: version, help, a usage error', () => {
    for (const args of [
      ['--version'],
      ['--help'],
      ['merge', '--help'],
      ['merge', '/nonexistent/run', '--out', join(tmp, 'x')],
    ]) {
      const a = run(BIN, args);
      const b = run(CLI, args);
      expect([a.status, a.stdout, a.stderr], args.join(' ')).toEqual([b.status, b.stdout, b.stderr]);
    }
  });

  it('merges to the bytes the modules write, with the addon, and verifies them', () => {
    const specs: TensorSpec[] = [
      { name: 'a.weight', dtype: 'BF16', shape: [64, 33] },
      { name: 'b.weight', dtype: 'F32', shape: [100] },
    ];
    for (const s of [1, 2, 3]) writeCheckpoint(join(tmp, 'run', `step-${s}`), specs, s);
    const viaBin = run(BIN, ['merge', join(tmp, 'run'), '--out', join(tmp, 'bin-out'), '--quiet']);
    expect(viaBin.status, viaBin.stderr).toBe(0);
    const viaModules = run(CLI, ['merge', join(tmp, 'run'), '--out', join(tmp, 'modules-out'), '--quiet']);
    expect(viaModules.status, viaModules.stderr).toBe(0);
    const file = 'model.safetensors';
    expect(readFileSync(join(tmp, 'bin-out', file)).equals(readFileSync(join(tmp, 'modules-out', file)))).toBe(true);
    const v = run(BIN, ['verify', join(tmp, 'bin-out')]);
    expect(v.status, v.stderr).toBe(0);
    expect(v.stdout).toContain('intact (2 tensors');
  });
});
