// Vitest global setup: the tests import src/ directly, but the CLI child processes and the tests'
// own child scripts run the compiled dist/. Before any test runs, dist/ is rebuilt when it is missing or
// older than src/, so every way of running the tests (npm test, npx vitest run, a single file)
// tests the current source.
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

export default function setup(): void {
  const stale = staleSource();
  if (stale === null) return;
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  process.stderr.write(`dist/ is older than ${relative(ROOT, stale)}: compiling src/ first\n`);
  execFileSync(process.execPath, [tsc, '-p', join(ROOT, 'tsconfig.json')], { stdio: 'inherit' });
}
