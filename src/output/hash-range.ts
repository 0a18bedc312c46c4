import type { Hash } from 'node:crypto';
import { readSync } from 'node:fs';

import { PmaError } from '../errors.js';

/**
 * Read size for hashing: small enough that a block read from the page cache is still in the core's
 * L2 cache when it is hashed (8 MiB blocks hashed measurably slower), large enough that the system
 * calls do not count.
 */
export const HASH_BLOCK = 256 * 1024;

/**
 * Reads bytes [from, to) of `fd` in HASH_BLOCK pieces into `buf` and feeds each to `hash`, then
 * to `also` (a CRC-32, say) with its offset. Returns the seconds spent reading and hashing.
 * `to` of Infinity reads to the end of the file; otherwise a file that ends sooner is an E_IO
 * naming `path`.
 */
export function hashRange(
  fd: number,
  path: string,
  from: number,
  to: number,
  hash: Hash,
  buf: Buffer,
  also?: (at: number, bytes: Buffer) => void,
): { read: number; update: number } {
  const seconds = { read: 0, update: 0 };
  for (let pos = from; pos < to;) {
    const t0 = performance.now();
    const n = readSync(fd, buf, 0, Math.min(buf.length, to - pos), pos);
    const t1 = performance.now();
    seconds.read += (t1 - t0) / 1000;
    if (n <= 0) {
      if (to === Infinity) break;
      throw new PmaError('E_IO', `cannot hash the output ${path}: it ends at ${pos}, expected ${to} bytes`, {
        file: path,
      });
    }
    const got = buf.subarray(0, n);
    hash.update(got);
    also?.(pos, got);
    seconds.update += (performance.now() - t1) / 1000;
    pos += n;
  }
  return seconds;
}
