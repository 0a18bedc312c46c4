import { createHash, type Hash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';

import { PmaError, fsError } from '../errors.js';
import { native } from '../native.js';
import { opWrites, type MergePlan, type PlanChunk, type PlanCrcPatch } from '../plan/types.js';

const READ_BLOCK = 8 * 2 ** 20;
// Files hashed at once: one. Each pass keeps a read in flight in libuv's four threads, which the
// journal's fdatasync and the final stat of the inputs share; a DCP output of four files hashed
// at once was measurably slower (docs/performance.md), and one pass keeps up with the merge.
const MAX_PASSES = 1;

/** A zip member whose CRC-32 is rewritten: its running CRC, and how many of its bytes are still to be written. */
interface CrcState extends PlanCrcPatch {
  crc: number;
  /** The CRC-32 of [start, end) is complete. */
  known: boolean;
  unwritten: number;
}

interface FileState {
  path: string;
  size: number;
  hash: Hash;
  /** Bytes hashed so far: the file's prefix [0, pos). */
  pos: number;
  /** Finished byte ranges not yet hashed: start -> end. */
  ready: Map<number, number>;
  pump: Promise<void> | null;
  fh: FileHandle | null;
  /** By start: the members whose CRC-32 this file's ranges feed. */
  crcs: CrcState[];
  /** CRC-32 field offset -> its member, and the offsets in order (the pass meets them in turn). */
  fieldOf: Map<number, CrcState>;
  fields: number[];
  nextField: number;
  /** The member whose bytes the pass waits for (at one of its CRC-32 fields), until they are all written. */
  waiting: CrcState | null;
  /** The pass waits at a CRC-32 field whose last bytes are not written yet. */
  splitField: boolean;
}

/**
 * SHA-256 of every output file, computed while the merge runs: as chunks finish, the finished
 * prefix of each file is read back (from the page cache, usually) and hashed, so that at the end
 * little is left to hash. Hashing is sequential per file; this keeps it off the critical path.
 *
 * A DCP output's zip members whose bytes were averaged get their CRC-32 in the same pass: the
 * bytes are run through CRC-32 as they are hashed, and each CRC field is written before the pass
 * reaches it. A field that comes before its member's bytes (a local header that records the
 * CRC-32) waits for the member to be written, whose bytes are then read once more.
 */
export class OutputHasher {
  private readonly files = new Map<string, FileState>();
  private failure: PmaError | null = null;
  // Once closed, no file is opened again (a handle left to the garbage collector is a leak).
  private closed = false;
  // Read buffers not in use: at most one per file being hashed at once.
  private readonly spare: Buffer[] = [];
  private active = 0;
  /** Seconds spent hashing, and waiting for reads of the output (the merge's breakdown). */
  readonly seconds = { update: 0, read: 0 };

  /** `only`: the files to hash (a part's), else every output file. */
  constructor(
    dir: string,
    plan: MergePlan,
    private readonly dropCache: boolean,
    only?: ReadonlySet<string>,
  ) {
    for (const f of plan.outputs) {
      if (only && !only.has(f.name)) continue;
      const crcs = f.crcs
        .map((c) => ({ ...c, crc: 0, known: false, unwritten: c.end - c.start }))
        .sort((a, b) => a.start - b.start);
      const fieldOf = new Map(crcs.flatMap((c) => c.fields.map((at) => [at, c] as const)));
      // The 8-byte length and the header of a safetensors file were written when it was created.
      const head = f.header === null ? 0 : 8 + Buffer.byteLength(f.header, 'utf8');
      this.files.set(f.name, {
        path: join(dir, f.name),
        size: f.size,
        hash: createHash('sha256'),
        pos: 0,
        ready: new Map(head > 0 ? [[0, head]] : []),
        pump: null,
        fh: null,
        crcs,
        fieldOf,
        fields: [...fieldOf.keys()].sort((a, b) => a - b),
        nextField: 0,
        waiting: null,
        splitField: false,
      });
    }
  }

  /** The chunk's output ranges are on disk (written, or found done by a resume). */
  chunkDone(chunk: PlanChunk): void {
    for (const w of chunk.ops.flatMap(opWrites)) {
      const f = this.files.get(chunk.outputs[w.file] as string);
      if (!f || w.bytes === 0) continue;
      f.ready.set(w.offset, w.offset + w.bytes);
      f.splitField = false;
      if (f.crcs.length > 0) written(f.crcs, w.offset, w.offset + w.bytes);
      this.kick(f);
    }
  }

  private kick(f: FileState): void {
    if (f.pump || !f.ready.has(f.pos) || this.failure || this.closed) return;
    if ((f.waiting && f.waiting.unwritten > 0) || f.splitField) return;
    if (this.active >= MAX_PASSES) return;
    this.active++;
    f.pump = this.advance(f)
      .catch((e: unknown) => {
        this.failure ??= fsError(e, 'cannot hash the output', f.path);
      })
      .finally(() => {
        f.pump = null;
        this.active--;
        this.kick(f);
        for (const g of this.files.values()) this.kick(g);
      });
  }

  /**
   * Hashes forward while the range at the frontier is ready. The read buffers are reused: a pass
   * starts for every range that finishes, and a fresh 8 MiB buffer each time is 2048 page faults.
   */
  private async advance(f: FileState, untilEnd = false): Promise<void> {
    f.fh ??= await open(f.path, f.crcs.length > 0 ? 'r+' : 'r');
    const buf = this.spare.pop() ?? Buffer.allocUnsafe(READ_BLOCK);
    try {
      await this.pass(f, untilEnd, buf);
    } finally {
      this.spare.push(buf);
    }
  }

  private async pass(f: FileState, untilEnd: boolean, buf: Buffer): Promise<void> {
    const fh = f.fh as FileHandle;
    for (;;) {
      let end = f.ready.get(f.pos);
      if (end === undefined) {
        if (!untilEnd || f.pos >= f.size) return;
        end = f.size; // at the end, whatever is left (gaps between tensors, if any) is read too
      }
      f.ready.delete(f.pos);
      // Ranges that follow on are read as one: a file of a million tiny tensors is read in
      // large blocks, not one call per tensor.
      for (let next = f.ready.get(end); next !== undefined; next = f.ready.get(end)) {
        f.ready.delete(end);
        end = next;
      }
      const start = f.pos;
      while (f.pos < end) {
        const field = f.fields[f.nextField];
        if (field === f.pos) {
          // The field's 4 bytes may belong to two chunks: it is written once both are, or a later
          // copy of the original bytes would land over part of it.
          if (end < field + 4 && !untilEnd) {
            f.ready.set(f.pos, end);
            f.splitField = true; // taken up again when the next range is written
            break;
          }
          const c = f.fieldOf.get(field) as CrcState;
          if (!c.known) {
            if (c.unwritten > 0 && !untilEnd) {
              f.ready.set(f.pos, end); // taken up again once the member is written
              f.waiting = c;
              break;
            }
            f.waiting = null;
            await this.crcOf(f, c, buf);
          }
          const v = Buffer.alloc(4);
          v.writeUInt32LE(c.crc >>> 0, 0);
          await fh.write(v, 0, 4, field);
          f.nextField++;
          continue; // the next field may lie within this block
        }
        const upTo = field !== undefined && field > f.pos ? Math.min(end, field) : end;
        const want = Math.min(READ_BLOCK, upTo - f.pos);
        const t0 = performance.now();
        const { bytesRead } = await fh.read(buf, 0, want, f.pos);
        const t1 = performance.now();
        this.seconds.read += (t1 - t0) / 1000;
        if (bytesRead <= 0)
          throw new PmaError(
            'E_IO',
            `cannot hash the output ${f.path}: it ends at ${f.pos}, expected ${f.size} bytes`,
            { file: f.path },
          );
        const got = buf.subarray(0, bytesRead);
        f.hash.update(got);
        if (f.crcs.length > 0) passed(f.crcs, f.pos, got);
        this.seconds.update += (performance.now() - t1) / 1000;
        f.pos += bytesRead;
      }
      if (this.dropCache && f.pos > start) native().dropCache(f.path, start, f.pos - start);
      if (f.pos < end) return; // waiting for a member's bytes
    }
  }

  /** The CRC-32 of a member the pass has not reached yet: its bytes, read once more. */
  private async crcOf(f: FileState, c: CrcState, buf: Buffer): Promise<void> {
    const fh = f.fh as FileHandle;
    let crc = 0;
    for (let at = c.start; at < c.end;) {
      const { bytesRead } = await fh.read(buf, 0, Math.min(READ_BLOCK, c.end - at), at);
      if (bytesRead <= 0)
        throw new PmaError('E_IO', `cannot read back the output ${f.path}: it ends at ${at}`, { file: f.path });
      crc = native().crc32(buf.subarray(0, bytesRead), crc);
      at += bytesRead;
    }
    c.crc = crc;
    c.known = true;
  }

  /** Once every chunk is done: finishes each file's hash; name -> hex digest. */
  async digests(): Promise<Record<string, string>> {
    try {
      for (const f of this.files.values()) {
        while (f.pump) await f.pump;
        if (this.failure) throw this.failure;
        await this.advance(f, true).catch((e: unknown) => {
          throw fsError(e, 'cannot hash the output', f.path);
        });
      }
      return Object.fromEntries([...this.files].map(([name, f]) => [name, f.hash.digest('hex')]));
    } finally {
      await this.close();
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const f of this.files.values()) {
      while (f.pump) await f.pump.catch(() => {});
      await f.fh?.close().catch(() => {});
      f.fh = null;
    }
  }
}

/** The first member (by start) that ends after `at`. */
function firstEndingAfter(crcs: CrcState[], at: number): number {
  let lo = 0;
  let hi = crcs.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if ((crcs[mid] as CrcState).end <= at) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** [a, b) is written: fewer bytes of the members it overlaps remain. */
function written(crcs: CrcState[], a: number, b: number): void {
  for (let i = firstEndingAfter(crcs, a); i < crcs.length; i++) {
    const c = crcs[i] as CrcState;
    if (c.start >= b) break;
    c.unwritten -= Math.min(b, c.end) - Math.max(a, c.start);
  }
}

/** The pass read `bytes` at `at`: they feed the CRC-32 of the members they overlap, in order. */
function passed(crcs: CrcState[], at: number, bytes: Buffer): void {
  const b = at + bytes.length;
  for (let i = firstEndingAfter(crcs, at); i < crcs.length; i++) {
    const c = crcs[i] as CrcState;
    if (c.start >= b) break;
    if (c.known) continue;
    c.crc = native().crc32(bytes.subarray(Math.max(c.start, at) - at, Math.min(c.end, b) - at), c.crc);
    if (b >= c.end) c.known = true;
  }
}
