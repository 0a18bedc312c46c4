import { readFileSync } from 'node:fs';
import { crc32 } from 'node:zlib';

import { readDcpMetadata } from '../../src/dcp/metadata.js';

// An independent check of the zip archives in a DCP checkpoint's .distcp files: every member's
// CRC-32, computed here from its bytes, against each place the archive records it (central
// directory, local header, data descriptor). Written apart from src/dcp/zip.ts on purpose.

const u64 = (b: Buffer, at: number) => Number(b.readBigUInt64LE(at));

interface Member {
  name: string;
  data: Buffer;
  /** Where the archive records the CRC-32, and what. */
  recorded: { where: string; crc: number }[];
}

/** The members of the zip archive `a`, by its central directory. */
export function zipMembers(a: Buffer): Member[] {
  let e = a.length - 22;
  while (e >= 0 && a.readUInt32LE(e) !== 0x06054b50) e--;
  if (e < 0) throw new Error('no end of central directory');
  let count = a.readUInt16LE(e + 10);
  let dir = a.readUInt32LE(e + 16);
  if (count === 0xffff || dir === 0xffffffff) {
    const z = u64(a, e - 20 + 8);
    count = u64(a, z + 32);
    dir = u64(a, z + 48);
  }
  const members: Member[] = [];
  for (let i = 0, p = dir; i < count; i++) {
    if (a.readUInt32LE(p) !== 0x02014b50) throw new Error(`central entry ${i} missing`);
    let size = a.readUInt32LE(p + 24);
    const nameLen = a.readUInt16LE(p + 28);
    const extraLen = a.readUInt16LE(p + 30);
    const commentLen = a.readUInt16LE(p + 32);
    let local = a.readUInt32LE(p + 42);
    const name = a.toString('utf8', p + 46, p + 46 + nameLen);
    for (let x = p + 46 + nameLen; x < p + 46 + nameLen + extraLen; x += 4 + a.readUInt16LE(x + 2)) {
      if (a.readUInt16LE(x) !== 1) continue;
      let f = x + 4;
      if (size === 0xffffffff) size = u64(a, (f += 8) - 8);
      if (a.readUInt32LE(p + 20) === 0xffffffff) f += 8;
      if (local === 0xffffffff) local = u64(a, f);
    }
    const flags = a.readUInt16LE(local + 6);
    const start = local + 30 + a.readUInt16LE(local + 26) + a.readUInt16LE(local + 28);
    const recorded = [{ where: 'the central directory', crc: a.readUInt32LE(p + 16) }];
    const inLocal = a.readUInt32LE(local + 14);
    if ((flags & 8) === 0 || inLocal !== 0) recorded.push({ where: 'the local header', crc: inLocal });
    if (flags & 8) {
      const d = start + size;
      recorded.push({
        where: 'the data descriptor',
        crc: a.readUInt32LE(a.readUInt32LE(d) === 0x08074b50 ? d + 4 : d),
      });
    }
    members.push({ name, data: a.subarray(start, start + size), recorded });
    p += 46 + nameLen + extraLen + commentLen;
  }
  return members;
}

/** What is wrong with the CRC-32s of the zip archive `a` (empty: every member checks out). */
export function archiveProblems(a: Buffer, what: string): string[] {
  const problems: string[] = [];
  let members: Member[];
  try {
    members = zipMembers(a);
  } catch (e) {
    return [`${what}: not a readable zip archive (${(e as Error).message})`];
  }
  for (const m of members) {
    const actual = crc32(m.data) >>> 0;
    for (const r of m.recorded)
      if (r.crc !== actual)
        problems.push(`${what}: ${m.name}: ${r.where} records CRC-32 ${r.crc}, its bytes have ${actual}`);
  }
  return problems;
}

/** The CRC-32 problems of every tensor chunk's archive in the DCP checkpoint `dir`. */
export async function dcpCrcProblems(dir: string): Promise<string[]> {
  const meta = await readDcpMetadata(dir);
  const files = new Map<string, Buffer>();
  const problems: string[] = [];
  for (const item of meta.items) {
    if (item.kind !== 'tensor') continue;
    for (const c of item.chunks) {
      let f = files.get(c.file);
      if (!f) files.set(c.file, (f = readFileSync(c.file)));
      problems.push(
        ...archiveProblems(f.subarray(c.offset, c.offset + c.length), `${item.fqn} [${c.offsets.join(',')}]`),
      );
    }
  }
  return problems;
}
