import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { DTYPE_BITS, type DType } from '../../src/dtypes.js';
import { PmaError } from '../../src/errors.js';
import { rejected } from '../helpers/errors.js';
import { MAX_HEADER_LENGTH, parseHeader, readHeader, type SafetensorsHeader } from '../../src/safetensors/header.js';

const dir = mkdtempSync(join(tmpdir(), 'pma-unit-header-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let counter = 0;
function fresh(name = 'f'): string {
  counter += 1;
  return join(dir, `${name}-${counter}.safetensors`);
}

/** Writes the 8-byte length, the header bytes exactly as given, then `data` (bytes or a count of zero bytes). */
function writeRaw(header: string | Buffer, data: number | Buffer = 0, name?: string): string {
  const h = typeof header === 'string' ? Buffer.from(header, 'utf8') : header;
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  const d = typeof data === 'number' ? Buffer.alloc(data) : data;
  const path = fresh(name);
  writeFileSync(path, Buffer.concat([len, h, d]));
  return path;
}

/** A header object serialised and padded with spaces to a multiple of 8. */
function headerText(obj: unknown): string {
  let s = JSON.stringify(obj);
  while (Buffer.byteLength(s) % 8 !== 0) s += ' ';
  return s;
}

function writeHeader(obj: unknown, data: number | Buffer = 0): string {
  return writeRaw(headerText(obj), data);
}

async function expectBad(path: string, re: RegExp, tensor?: string): Promise<PmaError> {
  const err = await rejected(readHeader(path));
  expect(err.code).toBe('E_SAFETENSORS');
  expect(err.message).toMatch(re);
  expect(err.message).toContain(path);
  expect(err.file).toBe(path);
  if (tensor !== undefined) {
    expect(err.message).toContain(JSON.stringify(tensor));
    expect(err.tensor).toBe(tensor);
  }
  return err;
}

const f32 = (shape: number[], begin: number) => {
  const n = shape.reduce((a, b) => a * b, 1);
  return { dtype: 'F32', shape, data_offsets: [begin, begin + 4 * n] };
};

describe('readHeader: file framing', () => {
  it('rejects a file shorter than 8 bytes', async () => {
    const path = fresh('short');
    writeFileSync(path, Buffer.from([1, 2, 3, 4, 5]));
    const err = await expectBad(path, /5 bytes.*shorter than the 8-byte header length/);
    expect(err.tensor).toBeUndefined();
  });

  it('rejects an empty file', async () => {
    const path = fresh('empty');
    writeFileSync(path, Buffer.alloc(0));
    await expectBad(path, /0 bytes.*shorter than the 8-byte/);
  });

  it('rejects a header length over 100,000,000', async () => {
    const path = fresh('huge-len');
    const buf = Buffer.alloc(64, 0x20);
    buf.writeBigUInt64LE(BigInt(MAX_HEADER_LENGTH + 1), 0);
    writeFileSync(path, buf);
    await expectBad(
      path,
      new RegExp(`header length ${MAX_HEADER_LENGTH + 1} is over the limit of ${MAX_HEADER_LENGTH}`),
    );
  });

  it('rejects a header length of 2^64 - 1 as over the limit', async () => {
    const path = fresh('max-len');
    const buf = Buffer.alloc(16, 0x20);
    buf.writeBigUInt64LE((1n << 64n) - 1n, 0);
    writeFileSync(path, buf);
    await expectBad(path, /header length 18446744073709551615 is over the limit/);
  });

  it('a header length of exactly the limit is not "over the limit" (but here runs past the end)', async () => {
    const path = fresh('limit-len');
    const buf = Buffer.alloc(16, 0x20);
    buf.writeBigUInt64LE(BigInt(MAX_HEADER_LENGTH), 0);
    writeFileSync(path, buf);
    const err = await expectBad(path, /runs past the end of the file \(16 bytes\)/);
    expect(err.message).not.toMatch(/over the limit/);
  });

  it('rejects a header length past the end of the file', async () => {
    const path = fresh('past-end');
    const buf = Buffer.alloc(8 + 50, 0x20);
    buf.writeBigUInt64LE(100n, 0);
    writeFileSync(path, buf);
    await expectBad(path, /header length 100 runs past the end of the file \(58 bytes\)/);
  });

  it('rejects a file that is truncated (data buffer shorter than the header says)', async () => {
    const path = writeHeader({ a: f32([4], 0) }, 10);
    const h = headerText({ a: f32([4], 0) });
    const size = 8 + Buffer.byteLength(h) + 10;
    await expectBad(
      path,
      new RegExp(`file is truncated: the header describes ${size + 6} bytes but the file has ${size}`),
    );
  });

  it('rejects a file with the whole data buffer missing', async () => {
    const path = writeHeader({ a: f32([2, 2], 0) }, 0);
    await expectBad(path, /file is truncated/);
  });

  it('rejects trailing bytes after the data buffer', async () => {
    const path = writeHeader({ a: f32([2], 0) }, 8 + 3);
    await expectBad(path, /3 trailing bytes after the last tensor/);
  });

  it('rejects trailing bytes after an empty ("{}") header', async () => {
    const path = writeRaw('{}      ', 1);
    await expectBad(path, /1 trailing bytes/);
  });

  it('a missing file is an E_INPUT error naming it, not E_SAFETENSORS', async () => {
    const path = join(dir, 'does-not-exist.safetensors');
    const err = await rejected(readHeader(path));
    expect(err.code).toBe('E_INPUT');
    expect(err.message).toContain(path);
    expect(err.message).toMatch(/ENOENT/);
  });
});

describe('parseHeader: the JSON', () => {
  it('rejects a header that is not UTF-8', async () => {
    const h = Buffer.concat([Buffer.from('{"'), Buffer.from([0xff, 0xfe]), Buffer.from('":{}}   ')]);
    const path = writeRaw(h);
    await expectBad(path, /header is not valid UTF-8/);
  });

  it('rejects an overlong UTF-8 encoding', async () => {
    const h = Buffer.concat([Buffer.from('{"a'), Buffer.from([0xc0, 0xaf]), Buffer.from('":1}  ')]);
    await expectBad(writeRaw(h), /not valid UTF-8/);
  });

  it('rejects a header that is not JSON', async () => {
    await expectBad(writeRaw('{not json}      '), /header is not valid JSON/);
  });

  it('rejects a header holding two JSON values', async () => {
    await expectBad(writeRaw('{} {}   '), /not valid JSON/);
  });

  it('rejects a header of NUL padding (only spaces are allowed)', async () => {
    const h = Buffer.concat([Buffer.from('{}'), Buffer.alloc(6)]);
    await expectBad(writeRaw(h), /not valid JSON/);
  });

  it('rejects a header that is a JSON array', async () => {
    await expectBad(writeRaw('[]      '), /header is not a JSON object/);
  });

  it.each([['null    '], ['42      '], ['"str"   '], ['true    ']])(
    'rejects a header that is the JSON scalar %j',
    async (h) => {
      await expectBad(writeRaw(h), /header is not a JSON object/);
    },
  );

  it.each([
    ['a number', 5],
    ['a string', 'F32'],
    ['null', null],
    ['an array', [1, 2]],
  ])('rejects a tensor entry that is %s, not an object', async (_what, entry) => {
    await expectBad(writeHeader({ 'model.w': entry }), /entry is not an object/, 'model.w');
  });

  it('rejects an entry without dtype', async () => {
    await expectBad(
      writeHeader({ 'layer.0': { shape: [1], data_offsets: [0, 4] } }, 4),
      /dtype is missing or not a string/,
      'layer.0',
    );
  });

  it('rejects an entry whose dtype is not a string', async () => {
    await expectBad(
      writeHeader({ x: { dtype: 32, shape: [1], data_offsets: [0, 4] } }, 4),
      /dtype is missing or not a string/,
      'x',
    );
  });

  it.each([['F128'], ['f32'], ['float32'], ['']])('rejects the unknown dtype %j', async (dtype) => {
    await expectBad(
      writeHeader({ w: { dtype, shape: [1], data_offsets: [0, 4] } }, 4),
      new RegExp(`unknown dtype ${JSON.stringify(dtype)}`),
      'w',
    );
  });

  it.each([
    ['a negative dimension', [-1, 4]],
    ['a float dimension', [1.5, 2]],
    ['a string dimension', ['4']],
    ['a null dimension', [null]],
    ['a number, not an array', 4],
    ['missing', undefined],
  ])('rejects a shape with %s', async (_what, shape) => {
    const entry: Record<string, unknown> = { dtype: 'F32', data_offsets: [0, 16] };
    if (shape !== undefined) entry.shape = shape;
    await expectBad(writeHeader({ t: entry }, 16), /shape must be an array of non-negative integers/, 't');
  });

  it.each([
    ['three values', [0, 4, 8]],
    ['one value', [0]],
    ['a negative begin', [-4, 0]],
    ['a negative end', [0, -4]],
    ['a float', [0, 3.5]],
    ['strings', ['0', '4']],
    ['an object', { begin: 0, end: 4 }],
    ['missing', undefined],
  ])('rejects data_offsets with %s', async (_what, off) => {
    const entry: Record<string, unknown> = { dtype: 'F32', shape: [1] };
    if (off !== undefined) entry.data_offsets = off;
    await expectBad(writeHeader({ bias: entry }, 4), /data_offsets must be two non-negative integers/, 'bias');
  });

  it.each([
    ['a number', 1],
    ['a string', 'pt'],
    ['an array', ['pt']],
    ['null', null],
    ['an object with a number value', { format: 'pt', step: 1000 }],
    ['an object with a nested object', { format: { name: 'pt' } }],
  ])('rejects __metadata__ that is %s', async (_what, metadata) => {
    const err = await expectBad(
      writeHeader({ __metadata__: metadata }),
      /__metadata__ must be an object of string values/,
    );
    expect(err.tensor).toBeUndefined();
  });
});

describe('parseHeader: offsets and sizes', () => {
  it('rejects offsets that do not start at 0', async () => {
    await expectBad(
      writeHeader({ a: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, 8),
      /the first tensor does not start at offset 0/,
      'a',
    );
  });

  it('rejects a hole between two tensors', async () => {
    const path = writeHeader({ a: f32([1], 0), b: f32([1], 8) }, 12);
    await expectBad(path, /leaves a hole: starts at 8, previous tensor ends at 4/, 'b');
  });

  it('rejects two overlapping tensors', async () => {
    const path = writeHeader({ a: f32([2], 0), b: f32([2], 4) }, 12);
    await expectBad(path, /overlaps the previous tensor: starts at 4, previous tensor ends at 8/, 'b');
  });

  it('rejects two tensors at the very same range', async () => {
    const path = writeHeader({ a: f32([2], 0), b: f32([2], 0) }, 8);
    const err = await rejected(readHeader(path));
    expect(err.code).toBe('E_SAFETENSORS');
    expect(err.message).toMatch(/overlaps the previous tensor: starts at 0, previous tensor ends at 8/);
    expect(err.message).toContain(path);
  });

  it('rejects a tensor named twice (JSON.parse would keep the last silently)', async () => {
    const a = JSON.stringify(f32([2], 0));
    const path = writeRaw(`{"a":${a},"a":${JSON.stringify(f32([2], 8))}}`, 16);
    await expectBad(path, /header names tensor "a" twice/, 'a');
  });

  it('rejects a key given twice inside __metadata__', async () => {
    const path = writeRaw(`{"__metadata__":{"format":"pt","format":"np"},"a":${JSON.stringify(f32([1], 0))}}`, 4);
    await expectBad(path, /header names key in __metadata__ "format" twice/);
  });

  it('finds a name given twice whatever the spacing, and none where a name holds an escaped quote and colon', async () => {
    // The check counts `":` against the keys parsed; these texts defeat the count, not the check.
    const a = JSON.stringify(f32([2], 0));
    const b = JSON.stringify(f32([2], 8));
    await expectBad(writeRaw(`{"a" :${a}, "a"\t:${b}}`, 16), /header names tensor "a" twice/, 'a');
    await expectBad(writeRaw(`{"x\\":y":${a},"x\\":y":${b}}`, 16), /header names tensor "x\\":y" twice/, 'x":y');
    const h = await readHeader(writeRaw(`{"x\\":y":${a},"z":${b}}`, 16));
    expect(h.tensors.map((t) => t.name)).toEqual(['x":y', 'z']);
    // A repeat inside an entry is found too, below the tensor it belongs to.
    const inner = `{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}`;
    await expectBad(writeRaw(`{"a":${inner}}`, 8), /header names key in a "dtype" twice/, 'a');
  });

  it('rejects data_offsets whose end is before their begin', async () => {
    const path = writeHeader({ a: f32([1], 0), b: { dtype: 'F32', shape: [0], data_offsets: [8, 4] } }, 8);
    await expectBad(path, /data_offsets \[8, 4\] end before they begin/, 'b');
  });

  it('rejects end before begin even for the only tensor', async () => {
    await expectBad(
      writeHeader({ z: { dtype: 'U8', shape: [0], data_offsets: [4, 0] } }, 4),
      /end before they begin/,
      'z',
    );
  });

  it('rejects an element count that overflows 64 bits', async () => {
    const shape = [2 ** 40, 2 ** 40, 2 ** 40];
    const path = writeHeader({ big: { dtype: 'F32', shape, data_offsets: [0, 0] } });
    await expectBad(
      path,
      /shape \[1099511627776, 1099511627776, 1099511627776\] has more elements than fit in 64 bits/,
      'big',
    );
  });

  it('rejects an overflow on the way even when a later dimension is 0, as the reference does', async () => {
    const path = writeHeader({ big: { dtype: 'F32', shape: [2 ** 40, 2 ** 40, 2 ** 40, 0], data_offsets: [0, 0] } });
    await expectBad(path, /has more elements than fit in 64 bits/, 'big');
  });

  it('rejects a size that fits 64 bits but no file, naming the exact byte count', async () => {
    const path = writeHeader({ big: { dtype: 'U8', shape: [2 ** 31, 2 ** 31], data_offsets: [0, 0] } });
    await expectBad(path, /hold 0 bytes but shape \[2147483648, 2147483648\] x U8 needs 4611686018427387904/, 'big');
  });

  it('rejects a byte size (elements x dtype width) that overflows 64 bits', async () => {
    const path = writeHeader({ big: { dtype: 'F64', shape: [2 ** 62], data_offsets: [0, 0] } });
    await expectBad(path, /x F64 overflows 64 bits/, 'big');
  });

  it('rejects a byte length that does not match shape x dtype (too few)', async () => {
    const path = writeHeader({ w: { dtype: 'F32', shape: [2], data_offsets: [0, 4] } }, 4);
    await expectBad(path, /data_offsets \[0, 4\] hold 4 bytes but shape \[2\] x F32 needs 8/, 'w');
  });

  it('rejects a byte length that does not match shape x dtype (too many)', async () => {
    const path = writeHeader({ w: { dtype: 'BF16', shape: [3, 2], data_offsets: [0, 24] } }, 24);
    await expectBad(path, /hold 24 bytes but shape \[3, 2\] x BF16 needs 12/, 'w');
  });

  it('rejects F4 with an odd element count (bits do not fill whole bytes)', async () => {
    const path = writeHeader({ q: { dtype: 'F4', shape: [3], data_offsets: [0, 2] } }, 2);
    await expectBad(path, /3 elements of F4 do not fill whole bytes/, 'q');
  });

  it('rejects F6 with an element count whose bits do not fill whole bytes', async () => {
    const path = writeHeader({ q: { dtype: 'F6_E2M3', shape: [5], data_offsets: [0, 4] } }, 4);
    await expectBad(path, /5 elements of F6_E2M3 do not fill whole bytes/, 'q');
  });
});

describe('parseHeader: accepted headers', () => {
  async function accept(path: string): Promise<SafetensorsHeader> {
    const h = await readHeader(path);
    expect(h.path).toBe(path);
    return h;
  }

  it('accepts leading and trailing whitespace (spaces, \\n, \\t) around the JSON', async () => {
    const json = ` \n\t ${JSON.stringify({ a: f32([2], 0) })} \t\n  `;
    const path = writeRaw(json, 8);
    const h = await accept(path);
    expect(h.tensors).toEqual([{ name: 'a', dtype: 'F32', shape: [2], begin: 0, end: 8, bytes: 8 }]);
    expect(h.dataStart).toBe(8 + Buffer.byteLength(json));
    expect(h.fileSize).toBe(8 + Buffer.byteLength(json) + 8);
  });

  it('gives the entries by name too, read either way (compact, or through JSON.parse)', async () => {
    const obj = { b: f32([2], 0), a: f32([1], 8) };
    for (const json of [JSON.stringify(obj), JSON.stringify(obj, null, 1)]) {
      const h = await accept(writeRaw(json, 12));
      expect([...h.byName.keys()].sort()).toEqual(['a', 'b']);
      for (const t of h.tensors) expect(h.byName.get(t.name)).toBe(t);
    }
  });

  it('accepts a header not padded to a multiple of 8', async () => {
    const json = JSON.stringify({ ab: f32([1], 0) });
    expect(Buffer.byteLength(json) % 8).not.toBe(0);
    const h = await accept(writeRaw(json, 4));
    expect(h.dataStart).toBe(8 + Buffer.byteLength(json));
  });

  it('returns __metadata__ when present', async () => {
    const h = await accept(writeHeader({ __metadata__: { format: 'pt', note: 'x' }, a: f32([1], 0) }, 4));
    expect(h.metadata).toEqual({ format: 'pt', note: 'x' });
    expect(h.tensors.map((t) => t.name)).toEqual(['a']);
  });

  it('accepts an empty __metadata__ object', async () => {
    const h = await accept(writeHeader({ __metadata__: {} }));
    expect(h.metadata).toEqual({});
  });

  it('returns null metadata when __metadata__ is absent', async () => {
    const h = await accept(writeHeader({ a: f32([1], 0) }, 4));
    expect(h.metadata).toBeNull();
  });

  it('accepts a 0-dim scalar (shape [])', async () => {
    const h = await accept(writeHeader({ s: { dtype: 'F32', shape: [], data_offsets: [0, 4] } }, 4));
    expect(h.tensors).toEqual([{ name: 's', dtype: 'F32', shape: [], begin: 0, end: 4, bytes: 4 }]);
  });

  it('accepts an empty tensor (shape [0, 16])', async () => {
    const h = await accept(writeHeader({ e: { dtype: 'BF16', shape: [0, 16], data_offsets: [0, 0] } }));
    expect(h.tensors).toEqual([{ name: 'e', dtype: 'BF16', shape: [0, 16], begin: 0, end: 0, bytes: 0 }]);
  });

  it('accepts empty tensors among non-empty ones', async () => {
    const h = await accept(
      writeHeader({ a: f32([1], 0), e: { dtype: 'F16', shape: [4, 0], data_offsets: [4, 4] }, b: f32([1], 4) }, 8),
    );
    expect(h.tensors.map((t) => [t.name, t.begin, t.end])).toEqual([
      ['a', 0, 4],
      ['e', 4, 4],
      ['b', 4, 8],
    ]);
  });

  it('accepts a file with no tensors at all ("{}" padded)', async () => {
    const path = writeRaw('{}      ');
    const h = await accept(path);
    expect(h.tensors).toEqual([]);
    expect(h.metadata).toBeNull();
    expect(h.dataStart).toBe(16);
    expect(h.fileSize).toBe(16);
  });

  it('returns tensors in offset order whatever their order in the JSON', async () => {
    const path = writeHeader({ c: f32([1], 12), a: f32([2], 4), b: f32([1], 0) }, 16);
    const h = await accept(path);
    expect(h.tensors.map((t) => [t.name, t.begin, t.end])).toEqual([
      ['b', 0, 4],
      ['a', 4, 12],
      ['c', 12, 16],
    ]);
  });

  const dtypes = Object.keys(DTYPE_BITS) as DType[];
  it.each(dtypes)('accepts dtype %s', async (dtype) => {
    const shape = [2, 4];
    const bytes = (8 * DTYPE_BITS[dtype]) / 8;
    const path = writeHeader({ t: { dtype, shape, data_offsets: [0, bytes] } }, bytes);
    const h = await accept(path);
    expect(h.tensors).toEqual([{ name: 't', dtype, shape, begin: 0, end: bytes, bytes }]);
  });

  it('accepts every dtype together in one file', async () => {
    const entries: Record<string, unknown> = {};
    let pos = 0;
    for (const dtype of dtypes) {
      const bytes = (4 * DTYPE_BITS[dtype]) / 8;
      entries[`t.${dtype}`] = { dtype, shape: [4], data_offsets: [pos, pos + bytes] };
      pos += bytes;
    }
    const h = await accept(writeHeader(entries, pos));
    expect(h.tensors.map((t) => t.dtype)).toEqual(dtypes);
    expect(h.tensors.at(-1)?.end).toBe(pos);
  });

  it('accepts F4 with an even number of elements', async () => {
    const h = await accept(writeHeader({ q: { dtype: 'F4', shape: [3, 2], data_offsets: [0, 3] } }, 3));
    expect(h.tensors[0]).toMatchObject({ dtype: 'F4', shape: [3, 2], begin: 0, end: 3 });
  });
});

describe('parseHeader called directly', () => {
  const enc = (s: string) => new Uint8Array(Buffer.from(s, 'utf8'));

  it('checks the data buffer against the fileSize it is given', () => {
    const json = enc('{"a":{"dtype":"U8","shape":[3],"data_offsets":[0,3]}}');
    const ok = parseHeader('/x/a.safetensors', json, 8 + json.length + 3);
    expect(ok.tensors).toEqual([{ name: 'a', dtype: 'U8', shape: [3], begin: 0, end: 3, bytes: 3 }]);
    expect(ok.dataStart).toBe(8 + json.length);

    let err: unknown;
    try {
      parseHeader('/x/a.safetensors', json, 8 + json.length + 2);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PmaError);
    expect((err as PmaError).code).toBe('E_SAFETENSORS');
    expect((err as PmaError).message).toMatch(/^\/x\/a\.safetensors: file is truncated/);
  });

  it('prefixes errors with the path and the tensor name', () => {
    const json = enc('{"model.embed":{"dtype":"X","shape":[1],"data_offsets":[0,1]}}');
    expect(() => parseHeader('/p/q.safetensors', json, 100)).toThrow(
      '/p/q.safetensors: tensor "model.embed": unknown dtype "X"',
    );
  });
});

describe('readHeader with a cache: large headers', () => {
  // Over 4 MiB: hashed a block at a time first, so that a repeat needs no buffer of its size.
  const COUNT = 70_000;
  const large = (prefix: string, hole = false) =>
    headerText(
      Object.fromEntries(
        Array.from({ length: COUNT }, (_, i) => {
          const begin = 4 * i + (hole && i === COUNT - 1 ? 4 : 0);
          return [
            `${prefix}.${String(i).padStart(6, '0')}`,
            { dtype: 'F32', shape: [1], data_offsets: [begin, begin + 4] },
          ];
        }),
      ),
    );
  const a = large('a');
  const data = 4 * COUNT;

  it('parses the same bytes once, read one after the other or at the same time', async () => {
    expect(Buffer.byteLength(a)).toBeGreaterThan(4 * 2 ** 20);
    const [p1, p2, p3] = [writeRaw(a, data), writeRaw(a, data), writeRaw(a, data)];
    const cache = new Map();
    const [h1, h2] = await Promise.all([readHeader(p1, cache), readHeader(p2, cache)]);
    const h3 = await readHeader(p3, cache);
    expect(h1.tensors).toHaveLength(COUNT);
    expect(h2.tensors).toBe(h1.tensors);
    expect(h3.tensors).toBe(h1.tensors);
    expect([h1.path, h2.path, h3.path]).toEqual([p1, p2, p3]);
    expect(cache.size).toBe(1);
  });

  it('tells apart headers of one length and other bytes', async () => {
    const b = large('b');
    expect(Buffer.byteLength(b)).toBe(Buffer.byteLength(a));
    const cache = new Map();
    const [ha, hb] = await Promise.all([readHeader(writeRaw(a, data), cache), readHeader(writeRaw(b, data), cache)]);
    expect(ha.tensors[0]?.name).toBe('a.000000');
    expect(hb.tensors[0]?.name).toBe('b.000000');
  });

  it("checks each file's size against the shared header, and words each error with its own path", async () => {
    const cache = new Map();
    const short = writeRaw(a, data - 4);
    await readHeader(writeRaw(a, data), cache);
    const err = await rejected(readHeader(short, cache));
    expect(err.message).toBe(
      `${short}: file is truncated: the header describes ${8 + Buffer.byteLength(a) + data} bytes but the file has ${8 + Buffer.byteLength(a) + data - 4}`,
    );

    // The same bad bytes in two files read at once: each error names its own file.
    const holed = large('a', true);
    const [q1, q2] = [writeRaw(holed, data + 4), writeRaw(holed, data + 4)];
    const [e1, e2] = await Promise.all([rejected(readHeader(q1, cache)), rejected(readHeader(q2, cache))]);
    const last = `a.${String(COUNT - 1).padStart(6, '0')}`;
    expect(e1.message).toBe(
      `${q1}: tensor "${last}": leaves a hole: starts at ${4 * COUNT}, previous tensor ends at ${4 * COUNT - 4}`,
    );
    expect(e2.file).toBe(q2);
    expect(e2.message.startsWith(`${q2}: `)).toBe(true);
  });
});
