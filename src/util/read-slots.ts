/**
 * Small files read at once during planning (headers, shard indexes), and their read buffers,
 * reused. A run of 10 checkpoints x 94 shards would otherwise open 940 files and hold 940 fresh
 * buffers at once, each garbage as soon as its header is parsed or found in the cache; fresh
 * memory costs a page fault per 4 KiB page, 15-18 us each on a VM that traps them
 * (bench/fresh-memory.js), and 940 descriptors at once can meet a ulimit of 1024.
 */
const MAX_AT_ONCE = 16;
// Buffers larger than this are not kept for reuse (a 100 MB header is read once).
const KEEP_BELOW = 8 * 2 ** 20;
// Spares are let go once no read has run for this long: a planning session reuses them, a
// long-lived process (pma watch, a service) holds none between its plans.
const IDLE_MS = 1000;

let active = 0;
const waiting: (() => void)[] = [];
let spare: Buffer[] = [];
let idle: NodeJS.Timeout | null = null;

/**
 * Runs `read` with a slot: at most MAX_AT_ONCE run at once. `buffer(n)` gives a buffer of at least
 * n bytes, not zeroed, valid until `read` settles (copy out what must outlive it).
 */
export async function withReadSlot<T>(read: (buffer: (n: number) => Buffer) => Promise<T>): Promise<T> {
  while (active >= MAX_AT_ONCE) await new Promise<void>((resolve) => waiting.push(resolve));
  active++;
  if (idle) clearTimeout(idle);
  idle = null;
  const taken: Buffer[] = [];
  const buffer = (n: number): Buffer => {
    // The smallest spare that fits: a header's read must not take the buffer an index needs.
    let i = -1;
    for (let k = 0; k < spare.length; k++) {
      const len = (spare[k] as Buffer).length;
      if (len >= n && (i < 0 || len < (spare[i] as Buffer).length)) i = k;
    }
    const b = i >= 0 ? (spare.splice(i, 1)[0] as Buffer) : Buffer.allocUnsafeSlow(Math.max(n, 64 * 1024));
    taken.push(b);
    return b;
  };
  try {
    return await read(buffer);
  } finally {
    for (const b of taken) if (b.length < KEEP_BELOW && spare.length < 2 * MAX_AT_ONCE) spare.push(b);
    active--;
    waiting.shift()?.();
    if (active === 0) {
      idle = setTimeout(() => {
        if (active === 0) spare = [];
      }, IDLE_MS);
      idle.unref();
    }
  }
}
