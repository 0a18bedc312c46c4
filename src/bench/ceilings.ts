/**
 * What this machine can do at best, measured the plain way: read files with `cat` into /dev/null,
 * write a file with `dd oflag=direct conv=fdatasync` (the disk's own rate), and with write() and
 * fsync. Plus a description of the machine for the report.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, fsyncSync, openSync, readFileSync, rmSync, statfsSync, writeSync } from 'node:fs';
import { availableParallelism, cpus, platform, release, totalmem } from 'node:os';

import { PmaError, fsError } from '../errors.js';
import type { CpuInfo } from '../native.js';

function sh(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return r.status === 0 ? r.stdout : '';
}

/** Flushes every dirty page of the machine (outside the timings, so one measurement's writeback does not fall on the next). */
export function syncAll(): void {
  spawnSync('sync', [], { stdio: 'ignore' });
}

/**
 * Reads every file with `cat` into /dev/null and returns the milliseconds. One `cat` process reads
 * them all (several, one after the other, when the argument list would be long).
 */
export function catFiles(paths: string[]): number {
  const batches: string[][] = [[]];
  let chars = 0;
  for (const p of paths) {
    if (chars + p.length > 64_000 && batches[batches.length - 1]!.length > 0) {
      batches.push([]);
      chars = 0;
    }
    batches[batches.length - 1]!.push(p);
    chars += p.length + 1;
  }
  let ms = 0;
  for (const batch of batches) {
    const t0 = performance.now();
    const r = spawnSync('cat', batch, { stdio: ['ignore', 'ignore', 'pipe'] });
    ms += performance.now() - t0;
    if (r.status !== 0) {
      const why = r.error ? r.error.message : r.stderr?.toString().trim() || `exit status ${r.status}`;
      throw new PmaError('E_IO', `measuring the read ceiling: cat failed: ${why}`);
    }
  }
  return ms;
}

export interface WriteTiming {
  /** Total: open, write, fsync (when asked) and close. */
  ms: number;
  writeMs: number;
  fsyncMs: number;
}

function writeAll(fd: number, buf: Uint8Array): void {
  let done = 0;
  while (done < buf.length) done += writeSync(fd, buf, done, buf.length - done);
}

/**
 * Writes `bytes` bytes to a new file at `path` from `buf` (in writes of buf.length), optionally
 * fsyncs, closes and deletes it; returns the milliseconds, total and by part.
 */
export function timedWrite(path: string, bytes: number, buf: Uint8Array, fsync: boolean): WriteTiming {
  rmSync(path, { force: true });
  const t0 = performance.now();
  let t1 = t0;
  try {
    const fd = openSync(path, 'w');
    try {
      let left = bytes;
      while (left > 0) {
        const n = Math.min(left, buf.length);
        writeAll(fd, n === buf.length ? buf : buf.subarray(0, n));
        left -= n;
      }
      t1 = performance.now();
      if (fsync) fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch (e) {
    rmSync(path, { force: true });
    // A full disk is E_NOSPACE here too.
    throw fsError(e, 'measuring the write ceiling: cannot write', path);
  }
  const t2 = performance.now();
  rmSync(path, { force: true });
  return { ms: t2 - t0, writeMs: t1 - t0, fsyncMs: t2 - t1 };
}

const DD_BLOCK = 4 * 2 ** 20;

/**
 * Writes an output-sized file (`bytes`, rounded up to 4 MiB) of zeros from /dev/zero with O_DIRECT
 * and one fdatasync at the end (`dd bs=4M oflag=direct conv=fdatasync`), then deletes it; returns
 * the milliseconds, or null where the filesystem refuses O_DIRECT (tmpfs) or dd is missing. This
 * measures the disk: a buffered write without sync measures the page cache, which on some VMs is
 * slower to allocate than the disk is to write.
 */
export function timedDirectWrite(path: string, bytes: number): number | null {
  rmSync(path, { force: true });
  const count = Math.max(1, Math.ceil(bytes / DD_BLOCK));
  const args = ['if=/dev/zero', `of=${path}`, `bs=${DD_BLOCK}`, `count=${count}`, 'oflag=direct', 'conv=fdatasync'];
  const t0 = performance.now();
  const r = spawnSync('dd', [...args, 'status=none'], { stdio: ['ignore', 'ignore', 'pipe'] });
  const ms = performance.now() - t0;
  rmSync(path, { force: true });
  return r.status === 0 ? ms : null;
}

/** Bytes free for an unprivileged user in the filesystem of `dir`; null when unknown. */
export function freeBytes(dir: string): number | null {
  try {
    const s = statfsSync(dir);
    return s.bavail * s.bsize;
  } catch {
    return null;
  }
}

export interface MachineInfo {
  platform: string;
  cpuModel: string;
  cores: number;
  availableParallelism: number;
  memoryGiB: number;
  memoryBytes: number;
  /** From /proc/cpuinfo (what the CPU has, whatever pma was built with). */
  avx2: boolean;
  avx512f: boolean;
  /** Filesystem type of the bench directory (df -T, or stat -f). */
  filesystem: string;
  device: string;
  node: string;
  cat: string;
  /** What the pma build can use on this CPU. */
  pmaKernels: string[];
  pmaBestKernel: string;
}

/** Describes the machine; `dir` is the bench directory (it must exist), whose filesystem is reported. */
export function machineInfo(dir: string, cpu: CpuInfo): MachineInfo {
  let cpuinfo = '';
  try {
    cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    /* not Linux */
  }
  const model = /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1]?.trim() ?? cpus()[0]?.model ?? 'unknown';
  const flags = new Set((/^flags\s*:\s*(.*)$/m.exec(cpuinfo)?.[1] ?? '').split(/\s+/));
  const df = sh('df', ['-T', dir]).trim().split('\n')[1]?.split(/\s+/) ?? [];
  const statf = sh('stat', ['-f', '-c', '%T', dir]).trim();
  return {
    platform: `${platform()} ${release()}`,
    cpuModel: model,
    cores: cpus().length,
    availableParallelism: availableParallelism(),
    memoryGiB: Number((totalmem() / 2 ** 30).toFixed(1)),
    memoryBytes: totalmem(),
    avx2: flags.has('avx2') || cpu.avx2,
    avx512f: flags.has('avx512f') || cpu.avx512,
    filesystem: df[1] ?? (statf || 'unknown'),
    device: df[0] ?? 'unknown',
    node: process.version,
    cat: sh('cat', ['--version']).split('\n')[0] || 'unknown',
    pmaKernels: [...cpu.kernels],
    pmaBestKernel: cpu.best,
  };
}
