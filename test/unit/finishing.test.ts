import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { finishingPath, recoverFinishing } from '../../src/output/partial.js';
import { rejected } from '../helpers/errors.js';
import { scratch } from '../helpers/scratch.js';

// The resume data a merge moves beside its partial (`<out>.partial.finishing`) just before it
// renames the partial into place: put back by the next merge when its mover died, and never while
// the mover lives (it would ride into the output).
const { out } = scratch('pma-finishing-');
const DEAD_PID = 2 ** 22 + 11;

/** A partial with its resume data moved aside, held by `holder` through `file` ('lock' or 'finalize'). */
function finishingPartial(file: 'lock' | 'finalize', holder: { pid: number; host?: string }) {
  const dir = `${out()}.partial`;
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'model.safetensors'), 'bytes');
  const aside = finishingPath(dir);
  mkdirSync(aside);
  writeFileSync(join(aside, 'journal'), '');
  const h = { host: hostname(), token: 't-1', since: 'then', beat: 0, at: 'then', ...holder };
  writeFileSync(join(aside, file), JSON.stringify(h));
  return { dir, aside };
}

describe('recoverFinishing', () => {
  for (const file of ['lock', 'finalize'] as const) {
    it(`puts back resume data whose mover is gone (its ${file}), at once`, async () => {
      const { dir, aside } = finishingPartial(file, { pid: DEAD_PID });
      await recoverFinishing(dir);
      expect(existsSync(aside)).toBe(false);
      expect(readdirSync(join(dir, '.pma-resume')).sort()).toEqual([file, 'journal'].sort());
    });

    it(`waits while the mover lives (its ${file}): the partial renamed into place carries nothing back`, async () => {
      const mover = spawn('sleep', ['60']);
      try {
        const { dir, aside } = finishingPartial(file, { pid: mover.pid as number });
        let settled = false;
        const recovering = recoverFinishing(dir).then(() => (settled = true));
        await new Promise((r) => setTimeout(r, 300));
        expect(settled).toBe(false);
        expect(existsSync(join(dir, '.pma-resume'))).toBe(false);
        const target = dir.slice(0, -'.partial'.length);
        renameSync(dir, target); // the mover finishes
        rmSync(aside, { recursive: true });
        await recovering;
        expect(readdirSync(target)).toEqual(['model.safetensors']);
      } finally {
        mover.kill();
      }
    });
  }

  it('drops resume data whose partial is already in place', async () => {
    const { dir, aside } = finishingPartial('lock', { pid: DEAD_PID });
    rmSync(dir, { recursive: true });
    await recoverFinishing(dir);
    expect(existsSync(aside)).toBe(false);
  });

  it("refuses a merge's lock from another host, naming the file to delete if that merge is gone", async () => {
    const { dir, aside } = finishingPartial('lock', { pid: 4242, host: 'another-node' });
    const e = await rejected(recoverFinishing(dir));
    expect(e.code).toBe('E_OUTPUT');
    expect(e.message).toBe(
      `${aside} is held by a merge on another host that was renaming its output into place; if that merge is gone, delete ${join(aside, 'lock')}`,
    );
    expect(existsSync(join(aside, 'lock'))).toBe(true);
  });
});
