import { describe, expect, it } from 'vitest';

import { scanCompactHeader } from '../../src/safetensors/compact-header.js';
import { parseHeader } from '../../src/safetensors/header.js';
import { layoutFile } from '../../src/safetensors/writer.js';

const spec = (name: string, dtype: string, shape: number[]) =>
  ({ name, dtype, shape, bytes: (shape.reduce((a, b) => a * b, 1) * (dtype === 'F32' ? 32 : 16)) / 8 }) as const;

/** The header text of a layout: what a file written by pma (or the Rust library) holds. */
const textOf = (specs: ReturnType<typeof spec>[], metadata?: Record<string, string>) => {
  const h = layoutFile(specs as never, metadata).header;
  return h.subarray(8).toString('utf8');
};

/** What JSON.parse reads from the same text, in the same form. */
function viaJson(text: string) {
  const root = JSON.parse(text) as Record<string, { dtype: string; shape: number[]; data_offsets: number[] }>;
  const entries = Object.keys(root)
    .filter((k) => k !== '__metadata__')
    .map((name) => {
      const v = root[name] as (typeof root)[string];
      const [begin, end] = v.data_offsets as [number, number];
      return { name, dtype: v.dtype, shape: v.shape, begin, end, bytes: end - begin };
    });
  return { metadata: (root.__metadata__ as unknown) ?? null, entries };
}

describe('scanCompactHeader', () => {
  it('reads what the writer writes as JSON.parse does: odd names, empty shapes, zero-size tensors, metadata', () => {
    const specs = [
      spec('model.embed_tokens.weight', 'BF16', [7, 3]),
      spec('__proto__', 'F32', [2]),
      spec('gewichte.über.ä', 'F16', [1]),
      spec('名前 mit leerzeichen', 'F32', []),
      spec('empty', 'F16', [0, 5]),
      spec('also.empty', 'F16', [0]),
      spec('constructor', 'BF16', [1, 1, 1]),
    ];
    for (const metadata of [undefined, { format: 'pt', note: 'a value: with {braces}, [brackets]', __proto__: 'x' }]) {
      const text = textOf(specs, metadata);
      const got = scanCompactHeader(text);
      expect(got).not.toBeNull();
      const want = viaJson(text);
      expect(got?.entries).toEqual(want.entries);
      // The map holds the very entries, by name.
      expect([...(got?.byName ?? [])]).toEqual((got?.entries ?? []).map((e) => [e.name, e]));
      for (const e of got?.entries ?? []) expect(got?.byName.get(e.name)).toBe(e);
      expect(JSON.parse(got?.metadata as string)).toEqual(want.metadata);
    }
  });

  it('gives parseHeader the same header as JSON.parse does, shortcut or not', () => {
    const specs = [spec('b', 'F32', [2, 2]), spec('a', 'BF16', [3]), spec('z.empty', 'F16', [0])];
    const compact = textOf(specs, { format: 'pt' });
    // The same JSON with spaces after the colons: valid, not compact, so JSON.parse reads it.
    const spaced = compact.replace(/":/g, '": ').trimEnd();
    expect(scanCompactHeader(compact)).not.toBeNull();
    expect(scanCompactHeader(spaced)).toBeNull();
    const size = specs.reduce((s, t) => s + t.bytes, 0);
    const read = (text: string) => {
      const json = Buffer.from(text);
      return parseHeader('x.safetensors', json, 8 + json.length + size);
    };
    const a = read(compact);
    const b = read(spaced);
    expect(a.tensors).toEqual(b.tensors);
    expect(a.metadata).toEqual(b.metadata);
  });

  it('leaves names with escapes to JSON.parse', () => {
    expect(scanCompactHeader(textOf([spec('a "quoted" \\ name', 'F32', [1])]))).toBeNull();
  });

  it('reads an empty header and trailing padding', () => {
    const empty = scanCompactHeader('{}');
    expect({ ...empty, byName: [...(empty?.byName ?? [])] }).toEqual({
      metadata: null,
      entries: [],
      byName: [],
      pmaLayout: false,
      padding: 0,
    });
    const padded = scanCompactHeader('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}    ');
    expect(padded?.entries).toHaveLength(1);
    expect(padded?.padding).toBe(4);
  });

  it("says when the text is pma's own layout: its metadata first, entries in data order, widest first", () => {
    const specs = [spec('w', 'F32', [3]), spec('b', 'F32', [1]), spec('h', 'F16', [2]), spec('e', 'F16', [0])];
    expect(scanCompactHeader(textOf(specs))?.pmaLayout).toBe(true);
    expect(scanCompactHeader(textOf([]))?.pmaLayout).toBe(true);
    const text = textOf(specs);
    // The same entries, in another order of the text or of the data, or other metadata.
    expect(scanCompactHeader(textOf(specs, { format: 'pt', by: 'x' }))?.pmaLayout).toBe(false);
    expect(scanCompactHeader(text.replace('{"format":"pt"}', '{"format":"np"}'))?.pmaLayout).toBe(false);
    const swapped = text.replace(
      '"w":{"dtype":"F32","shape":[3],"data_offsets":[0,12]},"b":{"dtype":"F32","shape":[1],"data_offsets":[12,16]}',
      '"b":{"dtype":"F32","shape":[1],"data_offsets":[12,16]},"w":{"dtype":"F32","shape":[3],"data_offsets":[0,12]}',
    );
    expect(swapped).not.toBe(text);
    expect(scanCompactHeader(swapped)?.pmaLayout).toBe(false);
    const narrowFirst =
      '{"__metadata__":{"format":"pt"},"h":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}';
    expect(scanCompactHeader(narrowFirst)?.pmaLayout).toBe(false);
  });

  it.each([
    ['whitespace', '{ "a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'],
    ['another key order', '{"a":{"shape":[1],"dtype":"F32","data_offsets":[0,4]}}'],
    ['an extra key', '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}}'],
    ['a float', '{"a":{"dtype":"F32","shape":[1.0],"data_offsets":[0,4]}}'],
    ['an exponent', '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4e0]}}'],
    ['a leading zero', '{"a":{"dtype":"F32","shape":[01],"data_offsets":[0,4]}}'],
    ['a sign', '{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}'],
    ['16 digits', '{"a":{"dtype":"F32","shape":[1000000000000000],"data_offsets":[0,4]}}'],
    [
      'a name twice',
      '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}',
    ],
    ['a metadata key twice', '{"__metadata__":{"k":"1","k":"2"}}'],
    ['metadata twice', '{"__metadata__":{},"__metadata__":{}}'],
    ['a metadata number', '{"__metadata__":{"k":1}}'],
    ['an unknown dtype', '{"a":{"dtype":"F33","shape":[1],"data_offsets":[0,4]}}'],
    ['a name that starts with a digit', '{"0":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'],
    ['a control character', '{"a\tb":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'],
    ['a bad escape', '{"a\\x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'],
    ['trailing text', '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}} x'],
    ['a cut-off header', '{"a":{"dtype":"F32","shape":[1'],
    ['three offsets', '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}'],
    ['not an object', '[]'],
  ])('leaves %s to JSON.parse (returns null)', (_, text) => {
    expect(scanCompactHeader(text)).toBeNull();
  });
});

describe('scanCompactHeader: shapes', () => {
  it('gives each entry its own shape, one array for equal neighbours', () => {
    // Shapes that repeat in a pattern (a layer's three expert weights), and ones that only look alike.
    const shapes = [[2, 3], [3, 2], [6], [2, 3], [3, 2], [6], [], [1], [], [6, 1], [6], [1, 6], [2, 3]];
    const specs = shapes.map((s, i) => spec(`t.${String(i).padStart(2, '0')}`, 'F32', s));
    const got = scanCompactHeader(textOf(specs))?.entries ?? [];
    expect(got.map((e) => e.shape)).toEqual(shapes);
    const at = (k: number) => (got[k] as { shape: number[] }).shape;
    expect(at(3)).toBe(at(0));
    expect(at(5)).toBe(at(2));
    expect(at(8)).toBe(at(6));
    expect(at(1)).not.toBe(at(0));
  });
});
