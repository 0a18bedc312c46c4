// Vitest global setup: the tests import src/ directly, but the CLI child processes and the tests'
// own child scripts run the compiled dist/. Before any test runs, dist/ is rebuilt when it is missing or
// older than src/, and the `pma` bundle when it is older than dist/, so every way of running the
// tests (npm test, npx vitest run, a single file) tests the current source.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, relative } from 'node:path';

const ROOT = join(import.meta.dirname, '..', '..');

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    return e.isDirectory() ? sources(p) : e.name.endsWith('.ts') ? [p] : [];
  });
}

/** The first source whose compiled file is missing or older than it, or null when dist/ is current. */
export function staleSource(): string | null {
  const src = join(ROOT, 'src');
  for (const file of sources(src)) {
    const out = join(ROOT, 'dist', relative(src, file).replace(/\.ts$/, '.js'));
    if (!existsSync(out) || statSync(out).mtimeMs < statSync(file).mtimeMs) return file;
  }
  return null;
}

/** Whether the `pma` command's bundle (dist/bin/pma.js) is missing or older than the modules it is made of. */
function staleBundle(): boolean {
  const bundle = join(ROOT, 'dist', 'bin', 'pma.js');
  const main = join(ROOT, 'dist', 'cli', 'main.js');
  return !existsSync(bundle) || statSync(bundle).mtimeMs < statSync(main).mtimeMs;
}

export default function setup(): void {
  const stale = staleSource();
  if (stale !== null) {
    const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
    process.stderr.write(`dist/ is older than ${relative(ROOT, stale)}: compiling src/ first\n`);
    execFileSync(process.execPath, [tsc, '-p', join(ROOT, 'tsconfig.json')], { stdio: 'inherit' });
  }
  // As npm run build:ts does after tsc: the CLI tests run the bundle, as a user's `pma` does.
  if (staleBundle()) execFileSync(process.execPath, [join(ROOT, 'scripts', 'bundle-cli.mjs')], { stdio: 'inherit' });
}
