import { describe, expect, it } from 'vitest';

import { PyDict, PyObject, PyTuple, unpickle } from '../../src/dcp/pickle.js';
import { thrownSync } from '../helpers/errors.js';
import { dataclass, pickle, size } from '../../src/dcp/pickler.js';

const opts = { file: '/ck/.metadata', what: 'the DCP metadata', allow: new Set(['torch.Size', 'pkg.Thing']) };

describe('the pickle reader', () => {
  it('builds plain values: ints, floats, strings, bytes, lists, tuples, dicts, objects', () => {
    const v = unpickle(
      pickle({
        dict: [
          ['n', [1, -2, 2 ** 40, 1.5, null, true, 'é', new Uint8Array([1, 2])]],
          ['size', size([3, 4])],
          ['thing', dataclass('pkg.Thing', { a: { tuple: [1] } })],
        ],
      }),
      opts,
    );
    expect(v).toBeInstanceOf(PyDict);
    const [list, sz, thing] = (v as PyDict).entries.map(([, x]) => x);
    expect(list).toEqual([1, -2, 2 ** 40, 1.5, null, true, 'é', new Uint8Array([1, 2])]);
    expect((sz as PyObject).cls.fullName).toBe('torch.Size');
    expect(((sz as PyObject).args[0] as PyTuple).items).toEqual([3, 4]);
    expect(((thing as PyObject).state as PyDict).entries[0]?.[0]).toBe('a');
  });

  it('refuses any global it was not told of, naming it, and runs nothing', () => {
    const e = thrownSync(() => unpickle(pickle({ call: 'os.system', args: ['touch /tmp/pwned'] }), opts));
    expect(e.code).toBe('E_INPUT');
    expect(e.message).toBe(
      '/ck/.metadata: the DCP metadata refers to os.system, which pma does not read (nothing in a pickle is ever run; only the classes DCP itself writes are known)',
    );
    expect(thrownSync(() => unpickle(pickle({ global: 'builtins.eval' }), opts)).message).toContain('builtins.eval');
  });

  it('refuses lengths past the end, truncation, unknown opcodes, persistent ids and a broken stack', () => {
    const cases: [Buffer, RegExp][] = [
      [Buffer.from([0x80, 2, 0x58, 0xff, 0xff, 0xff, 0x7f, 0x41]), /a length of 2147483647 runs past the end/],
      [Buffer.from([0x80, 4, 0x8d, 0, 0, 0, 0, 0, 0, 0, 0x40]), /runs past the end/],
      [pickle([1, 2, 3]).subarray(0, 8), /ends before its STOP|runs past the end/],
      [Buffer.from([0x80, 2, 0xff]), /opcode 0xff is not one pma reads/],
      [Buffer.from([0x80, 2, 0x4e, 0x51, 0x2e]), /a persistent id/],
      [Buffer.from([0x80, 2, 0x61, 0x2e]), /the stack is empty/],
      [Buffer.from([0x80, 2, 0x68, 9, 0x2e]), /memo 9 was never stored/],
      [Buffer.from([0x80, 2, 0x4e, 0x4e, 0x2e]), /STOP with other than one value/],
      [Buffer.from([0x80, 9]), /a protocol above 5/],
    ];
    for (const [buf, re] of cases) {
      const e = thrownSync(() => unpickle(buf, opts));
      expect(e.code).toBe('E_INPUT');
      expect(e.message).toMatch(/^\/ck\/\.metadata: the DCP metadata is not a pickle pma can read: /);
      expect(e.message).toMatch(re);
    }
  });

  it('handles deep nesting without recursion', () => {
    const depth = 200_000;
    const buf = Buffer.concat([
      Buffer.from([0x80, 2]),
      Buffer.alloc(depth, 0x5d),
      Buffer.alloc(depth - 1, 0x61),
      Buffer.from('.'),
    ]);
    let v = unpickle(buf, opts) as unknown[];
    let n = 1;
    while (Array.isArray(v[0])) {
      v = v[0] as unknown[];
      n++;
    }
    expect(n).toBe(depth);
  });
});
