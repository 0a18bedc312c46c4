import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll } from 'vitest';

/** A temporary directory for one test file, removed after it, and fresh output paths inside it. */
export function scratch(prefix: string): { tmp: string; out: () => string } {
  const tmp = mkdtempSync(join(tmpdir(), prefix));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));
  let n = 0;
  return { tmp, out: () => join(tmp, `out-${n++}`) };
}
