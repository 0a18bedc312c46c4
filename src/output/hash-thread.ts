/**
 * A thread that hashes output files for the OutputHasher (hash-threads.ts starts it). Each file is
 * hashed by one thread from its first byte to its last, so its SHA-256 state never crosses threads;
 * several files hash at once on several threads, and none of it runs on the JS main thread.
 * Requests arrive in order and are answered in order, one at a time.
 */
import { createHash, type Hash } from 'node:crypto';
import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import { parentPort } from 'node:worker_threads';

import { PmaError, fsError } from '../errors.js';
import { native } from '../native.js';
import { HASH_BLOCK, hashRange } from './hash-range.js';
import type { FileOp, HashReply, HashRequest, HashValue, MemberCrc } from './hash-threads.js';

interface Open {
  fd: number;
  hash: Hash;
}

const files = new Map<number, Open>();
// One read buffer for every request: they run one at a time.
const buf = Buffer.allocUnsafe(HASH_BLOCK);

function opened(r: FileOp): Open {
  let f = files.get(r.file);
  if (!f) {
    f = { fd: openSync(r.path, r.writable ? 'r+' : 'r'), hash: createHash('sha256') };
    files.set(r.file, f);
  }
  return f;
}

/** The bytes at `at` feed the CRC-32 of the members they overlap (members in order, not overlapping). */
function crcFeed(members: MemberCrc[]): (at: number, bytes: Buffer) => void {
  return (at, bytes) => {
    const end = at + bytes.length;
    for (const m of members) {
      if (m.end <= at || m.start >= end) continue;
      m.crc = native().crc32(bytes.subarray(Math.max(m.start, at) - at, Math.min(m.end, end) - at), m.crc);
    }
  };
}

function handle(r: HashRequest): HashValue {
  switch (r.op) {
    case 'update': {
      const f = opened(r);
      const feed = r.crcs.length > 0 ? crcFeed(r.crcs) : undefined;
      const seconds = hashRange(f.fd, r.path, r.from, r.to, f.hash, buf, feed);
      if (r.drop && r.to > r.from) native().dropCache(r.path, r.from, r.to - r.from);
      return { ...seconds, crcs: r.crcs.map((m) => m.crc) };
    }
    case 'crc': {
      // A member's CRC-32 needed before the pass reaches its bytes: read once more.
      const f = opened(r);
      let crc = 0;
      for (let at = r.start; at < r.end;) {
        const n = readSync(f.fd, buf, 0, Math.min(buf.length, r.end - at), at);
        if (n <= 0)
          throw new PmaError('E_IO', `cannot read back the output ${r.path}: it ends at ${at}`, { file: r.path });
        crc = native().crc32(buf.subarray(0, n), crc);
        at += n;
      }
      return { crc };
    }
    case 'put': {
      const v = Buffer.alloc(4);
      v.writeUInt32LE(r.value >>> 0, 0);
      writeSync(opened(r).fd, v, 0, 4, r.at);
      return {};
    }
    case 'digest': {
      const f = opened(r);
      files.delete(r.file);
      closeSync(f.fd);
      return { hex: f.hash.digest('hex') };
    }
    case 'file': {
      let fd = -1;
      try {
        fd = openSync(r.path, 'r');
        const h = createHash('sha256');
        hashRange(fd, r.path, 0, Infinity, h, buf);
        return { hex: h.digest('hex') };
      } catch (e) {
        throw fsError(e, 'cannot read', r.path);
      } finally {
        if (fd >= 0) closeSync(fd);
      }
    }
    case 'close': {
      for (const f of files.values()) closeSync(f.fd);
      files.clear();
      return {};
    }
  }
}

parentPort?.on('message', (r: HashRequest) => {
  let reply: HashReply;
  try {
    reply = { id: r.id, ok: true, value: handle(r) };
  } catch (e) {
    const path = 'path' in r ? r.path : '';
    reply = { id: r.id, ok: false, error: fsError(e, 'cannot hash the output', path).toWire() };
  }
  parentPort?.postMessage(reply);
});
