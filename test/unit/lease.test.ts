import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';

import { afterEach, describe, expect, it } from 'vitest';

import { Lease, readLease } from '../../src/util/lease.js';
import { rejected } from '../helpers/errors.js';
import { scratch } from '../helpers/scratch.js';

// Leases: the locks of a merge in parts, which processes on other machines must be able to take
// over once their holder is gone, and never while it lives.
const { out } = scratch('pma-lease-');
const holder = (o: Partial<Record<string, unknown>>) =>
  JSON.stringify({ pid: 4242, host: 'node-elsewhere', token: 'other', since: 'then', beat: 0, at: 'then', ...o });

function lockPath(): string {
  const dir = out();
  mkdirSync(dir);
  return join(dir, 'lock');
}

afterEach(() => {
  delete process.env.PMA_LEASE_BEAT_MS;
});

describe('Lease', () => {
  it('is created once (O_EXCL), beats while held, and is removed on release', async () => {
    process.env.PMA_LEASE_BEAT_MS = '20';
    const path = lockPath();
    const lease = await Lease.acquire(path, 'the thing', 'pma test');
    expect(await Lease.tryCreate(path)).toBeNull();
    const first = await readLease(path);
    await new Promise((r) => setTimeout(r, 120));
    expect((await readLease(path))?.beat).toBeGreaterThan(first?.beat ?? 0);
    expect(first).toMatchObject({ pid: process.pid, host: hostname() });
    await lease.release();
    expect(existsSync(path)).toBe(false);
  });

  it('beats where it was moved to (the finalizer moves it aside with the resume data), and is released there', async () => {
    process.env.PMA_LEASE_BEAT_MS = '20';
    const path = lockPath();
    const lease = await Lease.acquire(path, 'the thing', 'pma test');
    const moved = `${path}.aside`;
    renameSync(path, moved);
    lease.relocate(moved);
    const first = await readLease(moved);
    await new Promise((r) => setTimeout(r, 120));
    expect((await readLease(moved))?.beat).toBeGreaterThan(first?.beat ?? 0);
    expect(existsSync(path)).toBe(false);
    await lease.release();
    expect(existsSync(moved)).toBe(false);
  });

  it('takes over a lease whose process is gone from this host at once', async () => {
    const path = lockPath();
    writeFileSync(path, holder({ host: hostname(), pid: 2 ** 22 + 7 }));
    const t = performance.now();
    const lease = await Lease.acquire(path, 'the thing', 'pma test');
    expect(performance.now() - t).toBeLessThan(1000);
    expect((await readLease(path))?.pid).toBe(process.pid);
    await lease.release();
  });

  it('refuses a lease held elsewhere while its beat moves; takes it over once the beat stands still', async () => {
    process.env.PMA_LEASE_BEAT_MS = '40';
    const path = lockPath();
    writeFileSync(path, holder({}));
    let beat = 0;
    const beating = setInterval(() => writeFileSync(path, holder({ beat: ++beat })), 10);
    const e = await rejected(Lease.acquire(path, 'part 3 of /x.partial', 'pma merge part'));
    clearInterval(beating);
    expect(e.code).toBe('E_OUTPUT');
    expect(e.message).toContain(
      'part 3 of /x.partial is being written by another pma merge part (pid 4242 on host node-elsewhere',
    );
    const lease = await Lease.acquire(path, 'part 3', 'pma merge part');
    expect(JSON.parse(readFileSync(path, 'utf8'))).toMatchObject({ pid: process.pid });
    await lease.release();
  });

  it('a holder whose lease was taken over notices at its next beat', async () => {
    process.env.PMA_LEASE_BEAT_MS = '20';
    const path = lockPath();
    const lease = await Lease.acquire(path, 'the thing', 'pma test');
    writeFileSync(path, holder({}));
    await new Promise((r) => setTimeout(r, 100));
    expect(lease.lostTo?.code).toBe('E_OUTPUT');
    expect(lease.lostTo?.message).toContain('was taken over by pid 4242 on host node-elsewhere');
    await lease.release();
    expect(existsSync(path)).toBe(true); // not its own any more: left alone
  });
});
