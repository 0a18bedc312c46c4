import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { beforeAll, describe, expect, it } from 'vitest';

import { merge } from '../../src/index.js';
import { native } from '../../src/native.js';
import { rejected } from '../helpers/errors.js';
import { once } from '../helpers/once.js';
import { itNeeds, noTmpfs } from '../helpers/requires.js';
import { writeCheckpoint, type TensorSpec } from '../helpers/safetensors.js';
import { scratch } from '../helpers/scratch.js';

// A disk that fills up: pma reserves each output file's blocks when it creates it (fallocate), so
// a disk that fills later cannot stop the merge's writes; on a filesystem that cannot reserve
// (NFS, some FUSE), a write that finds the disk full fails with E_NOSPACE and the merge resumes
// once there is room. Real small filesystems (tmpfs, which only root may mount); a filesystem
// without fallocate is modelled by refusing it with EOPNOTSUPP at the engine's own call
// (PMA_FAULTS, native/engine/faults.h), read once per process: this file's worker, whose merges
// below are the only ones that write under a directory named no-fallocate (or reserve-fails, a
// reservation refused for want of space).
process.env['PMA_FAULTS'] = 'reserve:EOPNOTSUPP:no-fallocate,reserve:ENOSPC:reserve-fails';

const { tmp, out } = scratch('pma-disk-full-');

// About 1.8 MB of output, in chunks of 64 KiB of work: room on a 3 MiB filesystem until a filler
// takes the rest.
const SPECS: TensorSpec[] = [
  { name: 'wte.weight', dtype: 'BF16', shape: [700, 512] },
  { name: 'h.0.mlp.weight', dtype: 'F32', shape: [256, 1024] },
  { name: 'h.0.ln.bias', dtype: 'F16', shape: [4096] },
  { name: 'ids', dtype: 'I64', shape: [512] },
];
const run = join(tmp, 'run');
const reference = join(tmp, 'reference');

/** Whether the temporary directory's filesystem reserves blocks (fallocate): null when it does. */
function noFallocate(): string | null {
  const f = join(tmp, 'probe');
  writeFileSync(f, Buffer.alloc(0));
  const ok = native().preallocate(f, 4096);
  rmSync(f);
  return ok ? null : `needs a filesystem with fallocate under ${tmp}`;
}
const noReserve = noFallocate();

beforeAll(async () => {
  for (const [i, s] of [100, 200, 300, 400].entries()) writeCheckpoint(join(run, `step-${s}`), SPECS, 7 + i);
  await merge({ inputs: run, out: reference });
});

function expectSame(a: string, b: string): void {
  const files = readdirSync(a).filter((f) => f !== 'pma.json');
  expect(readdirSync(b).filter((f) => f !== 'pma.json')).toEqual(files);
  for (const f of files)
    if (!readFileSync(join(a, f)).equals(readFileSync(join(b, f)))) expect.fail(`${f} differs between ${a} and ${b}`);
}

/** A tmpfs of `size` mounted at a new directory named `name`; `body` runs, then it is unmounted. */
async function onSmallFs(name: string, size: string, body: (mnt: string) => Promise<void>): Promise<void> {
  const mnt = join(tmp, name);
  mkdirSync(mnt, { recursive: true });
  expect(spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', mnt]).status).toBe(0);
  try {
    await body(mnt);
  } finally {
    spawnSync('umount', [mnt]);
  }
}

/** Fills what is left of the filesystem under `mnt`. */
const fill = (mnt: string) =>
  spawnSync('sh', ['-c', `dd if=/dev/zero of=${join(mnt, 'filler')} bs=64k 2>/dev/null; true`]);

describe('output files', () => {
  itNeeds(noReserve)('are created with their blocks reserved where the filesystem can', async () => {
    const o = out();
    await merge({
      inputs: run,
      out: o,
      onProgress: () => {
        // The first chunk is done: every output file exists in the partial, its blocks allocated.
        for (const f of readdirSync(`${o}.partial`).filter((x) => x.endsWith('.safetensors'))) {
          const st = statSync(join(`${o}.partial`, f));
          expect(st.blocks * 512, f).toBeGreaterThanOrEqual(st.size);
        }
      },
      chunkSize: 64 * 1024,
    });
    expectSame(reference, o);
  });

  itNeeds(noReserve)('preallocate() reserves the blocks of an existing file, and says so', () => {
    const f = join(tmp, 'reserve-me');
    writeFileSync(f, '');
    spawnSync('truncate', ['-s', '3M', f]);
    expect(statSync(f).blocks).toBe(0);
    expect(native().preallocate(f, 3 * 2 ** 20)).toBe(true);
    expect(statSync(f).blocks * 512).toBeGreaterThanOrEqual(3 * 2 ** 20);
    expect(statSync(f).size).toBe(3 * 2 ** 20);
    expect(readFileSync(f).every((b) => b === 0)).toBe(true);
  });
});

describe('a disk that fills up mid-merge', () => {
  // The filler takes what is left once the first chunk is done.
  const fillingMerge = (o: string, mnt: string) =>
    rejected(merge({ inputs: run, out: o, chunkSize: 64 * 1024, threads: 1, onProgress: once(() => fill(mnt)) }));

  /**
   * A merge on a 3 MiB tmpfs named `name` whose disk fills after its first chunk: it fails with
   * E_NOSPACE (`check` says where), keeps its partial, and resumes to the reference bytes once the
   * filler is gone.
   */
  const failsAndResumes = (name: string, check: (message: string) => void) => () =>
    onSmallFs(name, '3m', async (mnt) => {
      const o = join(mnt, 'out');
      const err = await fillingMerge(o, mnt);
      expect(err.code).toBe('E_NOSPACE');
      check(err.message);
      expect(err.message).toContain(`the work done so far is kept in ${o}.partial`);
      expect(existsSync(o)).toBe(false);
      rmSync(join(mnt, 'filler'));
      // The journal lives on the same full disk, so how much was recorded varies; the bytes do not.
      await merge({ inputs: run, out: o, chunkSize: 64 * 1024, resume: true });
      expectSame(reference, o);
    });

  itNeeds(noTmpfs)(
    "cannot fail the output's writes (reserved); what needs new space fails with E_NOSPACE, and it resumes",
    // The journal or the finishing files found the disk full, never the engine's writes.
    failsAndResumes('small-fs', (m) => expect(m).not.toContain('no space left on the device writing')),
  );

  itNeeds(noTmpfs)(
    'without fallocate: fails with E_NOSPACE naming the file, keeps a partial, and resumes once there is room',
    failsAndResumes('no-fallocate', (m) => expect(m).toMatch(/No space left on device|ENOSPC|no space left/)),
  );

  it('out of space reserving a file: E_NOSPACE naming it, nothing at the output and no partial', async () => {
    const o = join(tmp, 'reserve-fails');
    const err = await rejected(merge({ inputs: run, out: o }));
    expect(err.code).toBe('E_NOSPACE');
    // The files are made in a directory renamed into place once they all are.
    expect(err.file).toMatch(/reserve-fails\.partial\.creating-[\w-]+\/model\.safetensors$/);
    expect(err.message).toMatch(
      /^no space left on the device for \S+\/model\.safetensors \(\d+ bytes reserved before the merge writes it\): No space left on device/,
    );
    expect(existsSync(o)).toBe(false);
    expect(existsSync(`${o}.partial`)).toBe(false);
  });
});
