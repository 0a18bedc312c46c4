import { join } from 'node:path';

import { PmaError, fsError } from '../errors.js';
import { opWrites, type Checksum, type MergePlan, type PlanChunk, type PlanCrcPatch } from '../plan/types.js';
import { HashThreads, hashThreadCount, type MemberCrc } from './hash-threads.js';

/** A zip member whose CRC-32 is rewritten: its running CRC, and how many of its bytes are still to be written. */
interface CrcState extends PlanCrcPatch {
  crc: number;
  /** The CRC-32 of [start, end) is complete. */
  known: boolean;
  unwritten: number;
}

interface FileState {
  /** The file's number for the hash threads. */
  id: number;
  path: string;
  size: number;
  /** Bytes hashed so far: the file's prefix [0, pos). */
  pos: number;
  /** Finished byte ranges not yet hashed: start -> end. */
  ready: Map<number, number>;
  pump: Promise<void> | null;
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
 * The checksum (plan.checksum) of every output file, computed while the merge runs: as chunks finish, the finished
 * prefix of each file is read back (from the page cache, usually) and hashed, so that at the end
 * little is left to hash. Hashing a file is sequential; it runs on the addon's threads, the same
 * as the chunks' (hash-threads.ts), never on the JS main thread, several files at once on a
 * machine with the cores for it. This object only decides what is ready to hash, on the main
 * thread.
 *
 * A DCP output's zip members whose bytes were averaged get their CRC-32 in the same pass: the
 * bytes are run through CRC-32 as they are hashed, and each CRC field is written before the pass
 * reaches it. A field that comes before its member's bytes (a local header that records the
 * CRC-32) waits for the member to be written, whose bytes are then read once more.
 */
export class OutputHasher {
  private readonly files = new Map<string, FileState>();
  private failure: PmaError | null = null;
  // Once closed, nothing is sent to the threads again.
  private closed = false;
  private readonly threads: HashThreads;
  /** Passes at once (files hashed at the same time): hashThreadCount(files). */
  private readonly passes: number;
  private readonly checksum: Checksum;
  private active = 0;
  /** Thread-seconds spent hashing and reading the output back (the merge's breakdown). */
  readonly seconds = { update: 0, read: 0 };

  /**
   * `only`: the files to hash (a part's), else every output file. `threads`: where to hash (the
   * engine's, the merge's own threads), else on threads of its own; close() closes the files it
   * hashes, and the threads if they are its own.
   */
  constructor(
    dir: string,
    plan: MergePlan,
    private readonly dropCache: boolean,
    only?: ReadonlySet<string>,
    threads?: HashThreads,
  ) {
    this.checksum = plan.checksum;
    for (const f of plan.outputs) {
      if (only && !only.has(f.name)) continue;
      const crcs = f.crcs
        .map((c) => ({ ...c, crc: 0, known: false, unwritten: c.end - c.start }))
        .sort((a, b) => a.start - b.start);
      const fieldOf = new Map(crcs.flatMap((c) => c.fields.map((at) => [at, c] as const)));
      // The 8-byte length and the header of a safetensors file were written when it was created.
      const head = f.header === null ? 0 : 8 + Buffer.byteLength(f.header, 'utf8');
      this.files.set(f.name, {
        id: this.files.size,
        path: join(dir, f.name),
        size: f.size,
        pos: 0,
        ready: new Map(head > 0 ? [[0, head]] : []),
        pump: null,
        crcs,
        fieldOf,
        fields: [...fieldOf.keys()].sort((a, b) => a - b),
        nextField: 0,
        waiting: null,
        splitField: false,
      });
    }
    this.passes = hashThreadCount(this.files.size);
    this.threads = threads ?? new HashThreads(this.passes);
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
    if (this.active >= this.passes) return;
    this.active++;
    f.pump = this.pass(f, false)
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

  /** What every request about `f` carries. */
  private about(f: FileState): { file: number; path: string; writable: boolean; checksum: Checksum } {
    return { file: f.id, path: f.path, writable: f.crcs.length > 0, checksum: this.checksum };
  }

  /** Hashes forward while the range at the frontier is ready; `untilEnd`: to the file's end. */
  private async pass(f: FileState, untilEnd: boolean): Promise<void> {
    for (;;) {
      let end = f.ready.get(f.pos);
      if (end === undefined) {
        if (!untilEnd || f.pos >= f.size) return;
        end = f.size; // at the end, whatever is left (gaps between tensors, if any) is read too
      }
      f.ready.delete(f.pos);
      // Ranges that follow on are hashed as one: a file of a million tiny tensors is read in
      // large blocks, not one request per tensor.
      for (let next = f.ready.get(end); next !== undefined; next = f.ready.get(end)) {
        f.ready.delete(end);
        end = next;
      }
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
            const r = await this.threads.request({ ...this.about(f), op: 'crc', start: c.start, end: c.end });
            c.crc = r.crc as number;
            c.known = true;
          }
          await this.threads.request({ ...this.about(f), op: 'put', at: field, value: c.crc });
          f.nextField++;
          continue; // the next field may lie within this block
        }
        const upTo = field !== undefined && field > f.pos ? Math.min(end, field) : end;
        const feeds = f.crcs.length > 0 ? feeding(f.crcs, f.pos, upTo) : [];
        const members: MemberCrc[] = feeds.map((c) => ({ start: c.start, end: c.end, crc: c.crc }));
        const r = await this.threads.request({
          ...this.about(f),
          op: 'update',
          from: f.pos,
          to: upTo,
          crcs: members,
          drop: this.dropCache,
        });
        this.seconds.read += r.read as number;
        this.seconds.update += r.update as number;
        for (const [i, c] of feeds.entries()) {
          c.crc = (r.crcs as number[])[i] as number;
          if (upTo >= c.end) c.known = true;
        }
        f.pos = upTo;
      }
      if (f.pos < end) return; // waiting for a member's bytes
    }
  }

  /**
   * Once every chunk is done: finishes each file's hash; name -> hex digest. The threads stay for
   * hashFile() until close(); a failure closes them.
   */
  async digests(): Promise<Record<string, string>> {
    try {
      const sums: Record<string, string> = {};
      for (const [name, f] of this.files) {
        while (f.pump) await f.pump;
        if (this.failure) throw this.failure;
        try {
          await this.pass(f, true);
          sums[name] = (await this.threads.request({ ...this.about(f), op: 'digest' })).hex as string;
        } catch (e) {
          throw fsError(e, 'cannot hash the output', f.path);
        }
      }
      return sums;
    } catch (e) {
      await this.close();
      throw e;
    }
  }

  /** The checksum of a whole file (a companion file of the output) on the hash threads. */
  hashFile(path: string): Promise<string> {
    return this.threads.hashFile(path, this.checksum);
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const f of this.files.values()) {
      while (f.pump) await f.pump.catch(() => {});
    }
    await this.threads.close();
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

/** The members not yet known that bytes [a, b) feed, in order. */
function feeding(crcs: CrcState[], a: number, b: number): CrcState[] {
  const out: CrcState[] = [];
  for (let i = firstEndingAfter(crcs, a); i < crcs.length; i++) {
    const c = crcs[i] as CrcState;
    if (c.start >= b) break;
    if (!c.known) out.push(c);
  }
  return out;
}
