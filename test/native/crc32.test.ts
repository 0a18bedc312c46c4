import { crc32 as zlibCrc32 } from 'node:zlib';

import { describe, expect, it } from 'vitest';

import { PmaError } from '../../src/errors.js';
import { native } from '../../src/native.js';
import { rng } from '../helpers/safetensors.js';

// The addon's CRC-32 (folded with PCLMULQDQ where the CPU has it) against zlib's, which zip
// readers check: a DCP merge writes it into every zip member whose bytes it replaces.
describe('crc32', () => {
  const rand = rng(7);
  const bytes = (n: number, offset: number) => {
    const b = new Uint8Array(n + offset);
    for (let i = 0; i < b.length; i++) b[i] = Math.floor(rand() * 256);
    return b.subarray(offset);
  };

  it("is zlib's value for every length, alignment and starting CRC", () => {
    for (let n = 0; n < 300; n++) {
      const b = bytes(n, n % 16);
      expect(native().crc32(b, 0), `length ${n}`).toBe(zlibCrc32(b) >>> 0);
      const from = Math.floor(rand() * 2 ** 32);
      // No bytes leave a CRC as it was (Node's zlib.crc32 answers 0 there).
      const want = n === 0 ? from : zlibCrc32(b, from) >>> 0;
      expect(native().crc32(b, from), `length ${n} from ${from}`).toBe(want);
    }
    for (const n of [4096, 65_537, 1 << 20, (1 << 20) + 13]) {
      const b = bytes(n, 3);
      expect(native().crc32(b, 0), `length ${n}`).toBe(zlibCrc32(b) >>> 0);
    }
  });

  it('continues across any split, as the hashing pass feeds it block by block', () => {
    const b = bytes(100_000, 5);
    const whole = zlibCrc32(b) >>> 0;
    for (const cut of [0, 1, 15, 16, 63, 64, 65, 4097, 99_999, 100_000]) {
      expect(native().crc32(b.subarray(cut), native().crc32(b.subarray(0, cut), 0)), `cut at ${cut}`).toBe(whole);
    }
  });

  it('refuses what is not bytes or not a CRC-32', () => {
    expect(() => native().crc32('abc' as unknown as Uint8Array, 0)).toThrow(PmaError);
    expect(() => native().crc32(new Uint8Array(4), 2 ** 32)).toThrow(PmaError);
  });
});
