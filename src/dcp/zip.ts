import type { FileHandle } from 'node:fs/promises';

import { PmaError, fsError } from '../errors.js';

/**
 * The zip archives torch.save writes (one per DCP chunk, inside a .distcp file): members stored,
 * never compressed, with ZIP64 records above 4 GiB. Only the directory and the local headers are
 * read here; a member's bytes are located, not copied.
 */
export interface ZipMember {
  name: string;
  /** CRC-32 the archive records for the member. */
  crc32: number;
  size: number;
  /** Absolute offset of the member's bytes in the file. */
  dataOffset: number;
  /**
   * Absolute offsets of every field that holds the member's CRC-32: in the central directory, in
   * the data descriptor after the bytes (torch writes one) and in the local header when it is
   * filled in there. A writer that replaces the bytes rewrites all of them.
   */
  crcFields: number[];
}

const EOCD = 0x06054b50;
const ZIP64_LOCATOR = 0x07064b50;
const ZIP64_EOCD = 0x06064b50;
const CENTRAL = 0x02014b50;
const LOCAL = 0x04034b50;
const DESCRIPTOR = 0x08074b50;
// General purpose flag bit 3: the CRC-32 and sizes follow the member's bytes, in a data descriptor.
const HAS_DESCRIPTOR = 0x8;
const U32_MAX = 0xffffffff;
// The end record is 22 bytes plus a comment of up to 65535; torch writes none.
const TAIL = 22 + 0xffff + 20;
const SHORT_TAIL = 22 + 20 + 56;
const MAX_MEMBERS = 100_000;

async function readAt(fh: FileHandle, file: string, offset: number, length: number): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(length);
  let done = 0;
  while (done < length) {
    let n: number;
    try {
      ({ bytesRead: n } = await fh.read(buf, done, length - done, offset + done));
    } catch (e) {
      throw fsError(e, 'cannot read', file);
    }
    if (n === 0) throw new PmaError('E_INPUT', `${file} ends at byte ${offset + done}, inside a zip record`, { file });
    done += n;
  }
  return buf;
}

/**
 * Reads of one archive's bytes, served from its first and last few KiB where they fall (a torch.save
 * archive's local headers, data.pkl, directory and end records all do): two reads per archive
 * instead of one per record, which is what planning a checkpoint of thousands of chunks waits on.
 */
export class ArchiveBytes {
  private constructor(
    private readonly fh: FileHandle,
    readonly file: string,
    private readonly head: { at: number; buf: Buffer },
    private readonly tail: { at: number; buf: Buffer },
  ) {}

  static async open(fh: FileHandle, file: string, base: number, length: number): Promise<ArchiveBytes> {
    const n = Math.min(length, WINDOW);
    const [head, tail] = await Promise.all([readAt(fh, file, base, n), readAt(fh, file, base + length - n, n)]);
    return new ArchiveBytes(fh, file, { at: base, buf: head }, { at: base + length - n, buf: tail });
  }

  /** `length` bytes at absolute `offset` of the file. */
  async read(offset: number, length: number): Promise<Buffer> {
    for (const w of [this.head, this.tail])
      if (offset >= w.at && offset + length <= w.at + w.buf.length)
        return w.buf.subarray(offset - w.at, offset - w.at + length);
    return readAt(this.fh, this.file, offset, length);
  }
}

const WINDOW = 4096;

const u64 = (b: Buffer, at: number): number => {
  const v = b.readBigUInt64LE(at);
  return v > BigInt(Number.MAX_SAFE_INTEGER) ? Infinity : Number(v);
};

/**
 * The members of the archive at [base, base + length) of `file`, checked: every record inside the
 * range, every member stored (not compressed) and inside the range. `what` names the archive in
 * errors (the tensor it holds).
 */
export async function readZip(bytes: ArchiveBytes, base: number, length: number, what: string): Promise<ZipMember[]> {
  const file = bytes.file;
  const bad = (why: string): never => {
    throw new PmaError('E_INPUT', `${file}: the archive of ${what} (bytes ${base}+${length}) ${why}`, { file });
  };
  if (length < 22) bad('is too short to be a zip archive');
  // torch writes no archive comment: the end records are the last bytes. Only an archive with a
  // comment needs the longer look back.
  let tail: Buffer = Buffer.alloc(0);
  let e = -1;
  for (const want of [Math.min(length, SHORT_TAIL), Math.min(length, TAIL)]) {
    if (want <= tail.length) break;
    tail = await bytes.read(base + length - want, want);
    for (let i = want - 22; i >= 0; i--) {
      if (tail.readUInt32LE(i) === EOCD) {
        e = i;
        break;
      }
    }
    if (e >= 0) break;
  }
  if (e < 0) bad('has no end-of-directory record (not a zip archive, or cut short)');
  let count = tail.readUInt16LE(e + 10);
  let dirSize = tail.readUInt32LE(e + 12);
  let dirOffset = tail.readUInt32LE(e + 16);
  if (count === 0xffff || dirSize === U32_MAX || dirOffset === U32_MAX) {
    if (e < 20 || tail.readUInt32LE(e - 20) !== ZIP64_LOCATOR) bad('lacks the ZIP64 locator its end record calls for');
    const at = u64(tail, e - 20 + 8);
    if (at + 56 > length) bad('has a ZIP64 end record outside the archive');
    const z = await bytes.read(base + at, 56);
    if (z.readUInt32LE(0) !== ZIP64_EOCD) bad('has no ZIP64 end record where its locator points');
    count = u64(z, 32);
    dirSize = u64(z, 40);
    dirOffset = u64(z, 48);
  }
  if (count > MAX_MEMBERS) bad(`claims ${count} members`);
  if (dirOffset + dirSize > length) bad('has a central directory outside the archive');
  const dir = await bytes.read(base + dirOffset, dirSize);
  const members: ZipMember[] = [];
  let p = 0;
  for (let i = 0; i < count; i++) {
    if (p + 46 > dir.length || dir.readUInt32LE(p) !== CENTRAL) bad(`has a broken central directory (entry ${i})`);
    const method = dir.readUInt16LE(p + 10);
    const crc32 = dir.readUInt32LE(p + 16);
    let compressed = dir.readUInt32LE(p + 20);
    let size = dir.readUInt32LE(p + 24);
    const nameLen = dir.readUInt16LE(p + 28);
    const extraLen = dir.readUInt16LE(p + 30);
    const commentLen = dir.readUInt16LE(p + 32);
    let local = dir.readUInt32LE(p + 42);
    if (p + 46 + nameLen + extraLen + commentLen > dir.length) bad(`has a broken central directory (entry ${i})`);
    const name = dir.toString('utf8', p + 46, p + 46 + nameLen);
    // ZIP64: the 64-bit values, in this order, for the fields that hold 0xffffffff.
    for (let x = p + 46 + nameLen; x + 4 <= p + 46 + nameLen + extraLen;) {
      const id = dir.readUInt16LE(x);
      const len = dir.readUInt16LE(x + 2);
      if (id === 0x0001) {
        let f = x + 4;
        const next = () => {
          if (f + 8 > x + 4 + len) bad(`has a short ZIP64 field for ${name}`);
          const v = u64(dir, f);
          f += 8;
          return v;
        };
        if (size === U32_MAX) size = next();
        if (compressed === U32_MAX) compressed = next();
        if (local === U32_MAX) local = next();
      }
      x += 4 + len;
    }
    if (method !== 0) bad(`stores ${name} compressed (method ${method}); torch.save stores members as they are`);
    if (compressed !== size) bad(`records ${name} as ${compressed} bytes stored but ${size} bytes long`);
    if (local + 30 > length) bad(`puts ${name} outside the archive`);
    const head = await bytes.read(base + local, 30);
    if (head.readUInt32LE(0) !== LOCAL) bad(`has no local header for ${name}`);
    const dataStart = local + 30 + head.readUInt16LE(26) + head.readUInt16LE(28);
    if (dataStart + size > length) bad(`has ${name} (${size} bytes) running past its end`);
    const crcFields = [base + dirOffset + p + 16];
    const descriptor = (head.readUInt16LE(6) & HAS_DESCRIPTOR) !== 0;
    if (!descriptor || head.readUInt32LE(14) !== 0) crcFields.push(base + local + 14);
    if (descriptor) {
      // The descriptor: an optional signature (torch writes it), then the CRC-32. Without the
      // signature, only a CRC-32 that repeats the directory's shows where it is.
      const end = dataStart + size;
      const d = end + 8 <= length ? await bytes.read(base + end, 8) : null;
      if (d?.readUInt32LE(0) === DESCRIPTOR) crcFields.push(base + end + 4);
      else if (d?.readUInt32LE(0) === crc32) crcFields.push(base + end);
    }
    members.push({ name, crc32, size, dataOffset: base + dataStart, crcFields: crcFields.sort((a, b) => a - b) });
    p += 46 + nameLen + extraLen + commentLen;
  }
  return members;
}
