import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import { expect } from 'vitest';

/** Every file of an output (in subdirectories too) except pma.json (it records times and commands): name -> bytes. */
export function outputFiles(dir: string): Map<string, Buffer> {
  const files = readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile() && e.name !== 'pma.json')
    .map((e) => join(e.parentPath, e.name).slice(dir.length + 1))
    .sort();
  return new Map(files.map((f) => [f, readFileSync(join(dir, f))]));
}

/** Two outputs hold the same files with the same bytes (pma.json aside). */
export function expectSameOutput(a: string, b: string): void {
  const x = outputFiles(a);
  const y = outputFiles(b);
  expect([...y.keys()]).toEqual([...x.keys()]);
  for (const [f, buf] of x) if (!buf.equals(y.get(f) as Buffer)) expect.fail(`${f} differs between ${a} and ${b}`);
}
