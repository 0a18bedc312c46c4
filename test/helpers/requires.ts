import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

import { describe, it, type SuiteFactory, type TestFunction } from 'vitest';

/**
 * Tests that need something a machine may lack (a system tool, root, a GPU, a CPU feature) run
 * where it is there; elsewhere they are reported skipped, with the reason in their title, never
 * failed and never run half-way. `missing` is null when the need is met, else what is missing.
 */
function titled(title: string, missing: string | null): string {
  return missing === null ? title : `${title} (skipped: ${missing})`;
}

export function itNeeds(missing: string | null): (title: string, fn: TestFunction, timeout?: number) => void {
  return (title, fn, timeout) => it.skipIf(missing !== null)(titled(title, missing), fn, timeout);
}

export function describeNeeds(missing: string | null, title: string, fn: SuiteFactory): void {
  describe.skipIf(missing !== null)(titled(title, missing), fn);
}

/** Whether a command runs here (`cmd --version` exits 0). */
export function hasCommand(cmd: string, args = ['--version']): boolean {
  return spawnSync(cmd, args, { stdio: 'ignore' }).status === 0;
}

/** Debian's chromium, for the report test; null where it is not installed. */
export const CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => existsSync(p)) ?? null;

/** Root can mount a tmpfs (a real small filesystem that fills up); null when this process can. */
export const noTmpfs: string | null =
  process.getuid?.() !== 0 ? 'needs root to mount a tmpfs' : hasCommand('mount') ? null : 'needs mount(8) (util-linux)';
