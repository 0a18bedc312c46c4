/**
 * A pickle writer for the pickles DCP needs: `.metadata` and the data.pkl of torch.save's archives,
 * from plain values (protocol 2 opcodes only). The tests also build torch 2.x metadata and hostile
 * pickles with it.
 */
export type P =
  | null
  | boolean
  | number
  | string
  | Uint8Array
  | P[]
  | { tuple: P[] }
  | { dict: [P, P][] }
  | { global: string }
  | { call: string; args: P[]; state?: P; newobj?: boolean }
  | { persistent: P };

const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
};

function enc(v: P, out: Buffer[]): void {
  if (v === null) out.push(Buffer.from('N'));
  else if (v === true) out.push(Buffer.from([0x88]));
  else if (v === false) out.push(Buffer.from([0x89]));
  else if (typeof v === 'number') {
    if (Number.isInteger(v) && v >= -(2 ** 31) && v < 2 ** 31) {
      const b = Buffer.alloc(5);
      b[0] = 0x4a;
      b.writeInt32LE(v, 1);
      out.push(b);
    } else if (Number.isInteger(v)) {
      const b = Buffer.alloc(10);
      b[0] = 0x8a;
      b[1] = 8;
      b.writeBigInt64LE(BigInt(v), 2);
      out.push(b);
    } else {
      const b = Buffer.alloc(9);
      b[0] = 0x47;
      b.writeDoubleBE(v, 1);
      out.push(b);
    }
  } else if (typeof v === 'string') {
    const s = Buffer.from(v, 'utf8');
    out.push(Buffer.from('X'), u32(s.length), s);
  } else if (v instanceof Uint8Array) out.push(Buffer.from('B'), u32(v.length), Buffer.from(v));
  else if (Array.isArray(v)) {
    out.push(Buffer.from(']('));
    for (const x of v) enc(x, out);
    out.push(Buffer.from('e'));
  } else if ('tuple' in v) {
    out.push(Buffer.from('('));
    for (const x of v.tuple) enc(x, out);
    out.push(Buffer.from('t'));
  } else if ('dict' in v) {
    out.push(Buffer.from('}('));
    for (const [k, x] of v.dict) {
      enc(k, out);
      enc(x, out);
    }
    out.push(Buffer.from('u'));
  } else if ('persistent' in v) {
    enc(v.persistent, out);
    out.push(Buffer.from('Q'));
  } else if ('global' in v) {
    const i = v.global.lastIndexOf('.');
    out.push(Buffer.from(`c${v.global.slice(0, i)}\n${v.global.slice(i + 1)}\n`));
  } else {
    enc({ global: v.call }, out);
    enc({ tuple: v.args }, out);
    out.push(Buffer.from([v.newobj ? 0x81 : 0x52]));
    if (v.state !== undefined) {
      enc(v.state, out);
      out.push(Buffer.from('b'));
    }
  }
}

/** The pickle of `v`, protocol 2. */
export function pickle(v: P): Buffer {
  const out: Buffer[] = [Buffer.from([0x80, 2])];
  enc(v, out);
  out.push(Buffer.from('.'));
  return Buffer.concat(out);
}

/** A dataclass instance as pickle writes one: NEWOBJ of the class, then BUILD with its __dict__. */
export const dataclass = (cls: string, fields: Record<string, P>): P => ({
  call: cls,
  args: [],
  newobj: true,
  state: { dict: Object.entries(fields) },
});

/** A torch.Size. */
export const size = (dims: number[]): P => ({ call: 'torch.Size', args: [{ tuple: dims }] });
