import { PmaError } from '../errors.js';

/**
 * A pickle reader that never executes anything. Python's unpickler calls whatever a pickle names;
 * this one only builds plain values: a global becomes a PyGlobal (refused unless its
 * `module.name` is on the caller's allow-list), and calling one (REDUCE, NEWOBJ) or setting its
 * state (BUILD) becomes a PyObject that the caller interprets by class name. Protocols 0 to 5,
 * without out-of-band buffers and extension codes. Every length is checked against the bytes
 * that are there, and the work is bounded (ops, memo, stack), so a hostile file costs little and
 * ends in an error naming it.
 */

/** A Python tuple (lists are JS arrays). */
export class PyTuple {
  constructor(readonly items: PyValue[]) {}
}

/** A Python dict or OrderedDict: keys may be any value (DCP keys its storage by dataclasses). */
export class PyDict {
  readonly entries: [PyValue, PyValue][] = [];
}

/** A Python set or frozenset. */
export class PySet {
  readonly items: PyValue[] = [];
}

/** A module-level name the pickle refers to: a class, a function, or a constant such as torch.float32. */
export class PyGlobal {
  constructor(
    readonly module: string,
    readonly name: string,
  ) {}

  get fullName(): string {
    return `${this.module}.${this.name}`;
  }
}

/** What calling an allowed global would have made: its arguments and the state BUILD gave it. */
export class PyObject {
  state: PyValue | undefined = undefined;

  constructor(
    readonly cls: PyGlobal,
    readonly args: PyValue[],
    readonly kwargs: PyDict | null = null,
  ) {}
}

/** A persistent id (torch.save's storages): left to the caller. */
export class PyPersistent {
  constructor(readonly id: PyValue) {}
}

export type PyValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | PyValue[]
  | PyTuple
  | PyDict
  | PySet
  | PyGlobal
  | PyObject
  | PyPersistent;

export interface UnpickleOptions {
  /** The file the pickle came from, named in every error. */
  file: string;
  /** What is being read ("the DCP metadata"), named in errors. */
  what: string;
  /** `module.name` of every global the pickle may refer to. */
  allow: ReadonlySet<string>;
  /** Whether persistent ids are expected (torch.save's data.pkl); refused otherwise. */
  persistent?: boolean;
}

const MAX_OPS = 50_000_000;
const MAX_STACK = 1_000_000;

/** Reads one pickle from `buf` (the whole buffer must be the pickle, up to STOP). */
export function unpickle(buf: Uint8Array, o: UnpickleOptions): PyValue {
  const bytes = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const fail = (why: string, at: number): never => {
    throw new PmaError('E_INPUT', `${o.file}: ${o.what} is not a pickle pma can read: ${why} (at byte ${at})`, {
      file: o.file,
    });
  };
  let pos = 0;
  const stack: PyValue[] = [];
  const marks: number[] = [];
  const memo = new Map<number, PyValue>();

  const need = (n: number | bigint, at: number): number => {
    if (typeof n === 'bigint') n = n > BigInt(Number.MAX_SAFE_INTEGER) ? Infinity : Number(n);
    if (n < 0 || pos + n > bytes.length) fail(`a length of ${n} runs past the end (${bytes.length} bytes)`, at);
    return n;
  };
  const take = (n: number | bigint, at: number): Buffer => {
    const len = need(n, at);
    const b = bytes.subarray(pos, pos + len);
    pos += len;
    return b;
  };
  const line = (at: number): string => {
    const end = bytes.indexOf(0x0a, pos);
    if (end < 0) fail('a text argument has no end of line', at);
    const s = bytes.toString('latin1', pos, end);
    pos = end + 1;
    return s;
  };
  const pop = (at: number): PyValue => {
    if (stack.length === 0 || (marks.length > 0 && stack.length <= (marks[marks.length - 1] as number)))
      fail('the stack is empty', at);
    return stack.pop() as PyValue;
  };
  const top = (at: number): PyValue => {
    if (stack.length === 0) fail('the stack is empty', at);
    return stack[stack.length - 1] as PyValue;
  };
  const popMark = (at: number): PyValue[] => {
    const m = marks.pop();
    if (m === undefined) fail('no mark to pop to', at);
    return stack.splice(m as number);
  };
  const push = (v: PyValue, at: number) => {
    if (stack.length >= MAX_STACK) fail('the stack grows past a million values', at);
    stack.push(v);
  };
  const global = (module: string, name: string): PyGlobal => {
    const full = `${module}.${name}`;
    if (!o.allow.has(full)) {
      throw new PmaError(
        'E_INPUT',
        `${o.file}: ${o.what} refers to ${full}, which pma does not read (nothing in a pickle is ever run; only the classes DCP itself writes are known)`,
        { file: o.file },
      );
    }
    return new PyGlobal(module, name);
  };
  const call = (callee: PyValue, args: PyValue, at: number, kwargs: PyDict | null = null): PyValue => {
    if (!(callee instanceof PyGlobal)) return fail('a call of something that is not a class or function', at);
    if (!(args instanceof PyTuple)) return fail(`${callee.fullName} called without an argument tuple`, at);
    // An OrderedDict is a dict; its items follow as SETITEMS.
    if (callee.fullName === 'collections.OrderedDict' && args.items.length === 0) return new PyDict();
    return new PyObject(callee, args.items, kwargs);
  };
  const setItems = (target: PyValue, kv: PyValue[], at: number) => {
    if (!(target instanceof PyDict)) return fail('items set on something that is not a dict', at);
    if (kv.length % 2 !== 0) return fail('an odd number of dict items', at);
    for (let i = 0; i < kv.length; i += 2) target.entries.push([kv[i] as PyValue, kv[i + 1] as PyValue]);
  };
  const appendItems = (target: PyValue, items: PyValue[], at: number) => {
    if (Array.isArray(target)) target.push(...items);
    else if (target instanceof PySet) target.items.push(...items);
    else fail('items appended to something that is not a list', at);
  };
  const int = (b: Buffer): number | bigint => {
    if (b.length === 0) return 0;
    let v = 0n;
    for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i] as number);
    if ((b[b.length - 1] as number) & 0x80) v -= 1n << BigInt(8 * b.length);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  };
  const textInt = (s: string, at: number): number | bigint => {
    const t = s.endsWith('L') ? s.slice(0, -1) : s;
    if (!/^[-+]?\d+$/.test(t)) fail(`${JSON.stringify(s)} is not an integer`, at);
    const v = BigInt(t);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  };
  const memoKey = (v: number | bigint, at: number): number =>
    typeof v === 'number' && v >= 0 ? v : fail(`memo index ${v}`, at);

  for (let ops = 0; ; ops++) {
    if (ops > MAX_OPS) fail('more than fifty million operations', pos);
    const at = pos;
    if (pos >= bytes.length) fail('it ends before its STOP', at);
    const op = bytes[pos++] as number;
    switch (op) {
      case 0x80: // PROTO
        if ((take(1, at)[0] as number) > 5) fail('a protocol above 5', at);
        break;
      case 0x95: // FRAME: a length hint; the frame's ops follow inline
        take(8, at);
        break;
      case 0x2e: // STOP
        if (stack.length !== 1 || marks.length > 0) fail('STOP with other than one value on the stack', at);
        return stack[0] as PyValue;
      case 0x28: // MARK
        marks.push(stack.length);
        break;
      case 0x4e: // NONE
        push(null, at);
        break;
      case 0x88: // NEWTRUE
        push(true, at);
        break;
      case 0x89: // NEWFALSE
        push(false, at);
        break;
      case 0x49: {
        // INT: text; "01" and "00" are True and False
        const s = line(at);
        push(s === '01' ? true : s === '00' ? false : textInt(s, at), at);
        break;
      }
      case 0x4a: // BININT
        push(take(4, at).readInt32LE(0), at);
        break;
      case 0x4b: // BININT1
        push(take(1, at)[0] as number, at);
        break;
      case 0x4d: // BININT2
        push(take(2, at).readUInt16LE(0), at);
        break;
      case 0x4c: // LONG: text
        push(textInt(line(at), at), at);
        break;
      case 0x8a: // LONG1
        push(int(take(take(1, at)[0] as number, at)), at);
        break;
      case 0x8b: // LONG4
        push(int(take(take(4, at).readInt32LE(0), at)), at);
        break;
      case 0x46: {
        // FLOAT: text
        const s = line(at);
        const f = Number(s);
        if (Number.isNaN(f) && !/nan/i.test(s)) fail(`${JSON.stringify(s)} is not a float`, at);
        push(f, at);
        break;
      }
      case 0x47: // BINFLOAT: big-endian double
        push(take(8, at).readDoubleBE(0), at);
        break;
      case 0x53: {
        // STRING: a quoted repr (Python 2)
        const s = line(at);
        const m = /^(['"])(.*)\1$/s.exec(s);
        if (!m) fail('a STRING that is not quoted', at);
        push((m as RegExpExecArray)[2] as string, at);
        break;
      }
      case 0x54: // BINSTRING
        push(take(take(4, at).readInt32LE(0), at).toString('latin1'), at);
        break;
      case 0x55: // SHORT_BINSTRING
        push(take(take(1, at)[0] as number, at).toString('latin1'), at);
        break;
      case 0x56: // UNICODE: raw-unicode-escape text
        push(
          line(at).replace(/\\u([0-9a-fA-F]{4})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16))),
          at,
        );
        break;
      case 0x58: // BINUNICODE
        push(take(take(4, at).readUInt32LE(0), at).toString('utf8'), at);
        break;
      case 0x8c: // SHORT_BINUNICODE
        push(take(take(1, at)[0] as number, at).toString('utf8'), at);
        break;
      case 0x8d: // BINUNICODE8
        push(take(take(8, at).readBigUInt64LE(0), at).toString('utf8'), at);
        break;
      case 0x42: // BINBYTES
        push(Uint8Array.from(take(take(4, at).readUInt32LE(0), at)), at);
        break;
      case 0x43: // SHORT_BINBYTES
        push(Uint8Array.from(take(take(1, at)[0] as number, at)), at);
        break;
      case 0x8e: // BINBYTES8
      case 0x96: // BYTEARRAY8
        push(Uint8Array.from(take(take(8, at).readBigUInt64LE(0), at)), at);
        break;
      case 0x29: // EMPTY_TUPLE
        push(new PyTuple([]), at);
        break;
      case 0x85: // TUPLE1
        push(new PyTuple([pop(at)]), at);
        break;
      case 0x86: {
        // TUPLE2
        const b = pop(at);
        push(new PyTuple([pop(at), b]), at);
        break;
      }
      case 0x87: {
        // TUPLE3
        const c = pop(at);
        const b = pop(at);
        push(new PyTuple([pop(at), b, c]), at);
        break;
      }
      case 0x74: // TUPLE
        push(new PyTuple(popMark(at)), at);
        break;
      case 0x5d: // EMPTY_LIST
        push([], at);
        break;
      case 0x6c: // LIST
        push(popMark(at), at);
        break;
      case 0x7d: // EMPTY_DICT
        push(new PyDict(), at);
        break;
      case 0x64: {
        // DICT
        const d = new PyDict();
        setItems(d, popMark(at), at);
        push(d, at);
        break;
      }
      case 0x8f: // EMPTY_SET
        push(new PySet(), at);
        break;
      case 0x91: {
        // FROZENSET
        const s = new PySet();
        s.items.push(...popMark(at));
        push(s, at);
        break;
      }
      case 0x90: // ADDITEMS
      case 0x65: {
        // APPENDS
        const items = popMark(at);
        appendItems(top(at), items, at);
        break;
      }
      case 0x61: {
        // APPEND
        const v = pop(at);
        appendItems(top(at), [v], at);
        break;
      }
      case 0x73: {
        // SETITEM
        const v = pop(at);
        const k = pop(at);
        setItems(top(at), [k, v], at);
        break;
      }
      case 0x75: {
        // SETITEMS
        const kv = popMark(at);
        setItems(top(at), kv, at);
        break;
      }
      case 0x63: {
        // GLOBAL: module\nname\n
        const module = line(at);
        push(global(module, line(at)), at);
        break;
      }
      case 0x93: {
        // STACK_GLOBAL
        const name = pop(at);
        const module = pop(at);
        if (typeof module !== 'string' || typeof name !== 'string') fail('STACK_GLOBAL of non-strings', at);
        push(global(module as string, name as string), at);
        break;
      }
      case 0x52: {
        // REDUCE
        const args = pop(at);
        push(call(pop(at), args, at), at);
        break;
      }
      case 0x81: {
        // NEWOBJ
        const args = pop(at);
        push(call(pop(at), args, at), at);
        break;
      }
      case 0x92: {
        // NEWOBJ_EX
        const kwargs = pop(at);
        const args = pop(at);
        if (!(kwargs instanceof PyDict)) fail('NEWOBJ_EX without a keyword dict', at);
        push(call(pop(at), args, at, kwargs as PyDict), at);
        break;
      }
      case 0x62: {
        // BUILD
        const state = pop(at);
        const obj = top(at);
        if (!(obj instanceof PyObject)) fail('BUILD on something that is not an object', at);
        (obj as PyObject).state = state;
        break;
      }
      case 0x51: // BINPERSID
      case 0x50: {
        // PERSID
        if (!o.persistent) fail('a persistent id, which this file does not use', at);
        push(new PyPersistent(op === 0x51 ? pop(at) : line(at)), at);
        break;
      }
      case 0x70: // PUT
        memo.set(memoKey(textInt(line(at), at), at), top(at));
        break;
      case 0x71: // BINPUT
        memo.set(take(1, at)[0] as number, top(at));
        break;
      case 0x72: // LONG_BINPUT
        memo.set(take(4, at).readUInt32LE(0), top(at));
        break;
      case 0x94: // MEMOIZE
        memo.set(memo.size, top(at));
        break;
      case 0x67: // GET
      case 0x68: // BINGET
      case 0x6a: {
        // LONG_BINGET
        const key =
          op === 0x67
            ? memoKey(textInt(line(at), at), at)
            : op === 0x68
              ? (take(1, at)[0] as number)
              : take(4, at).readUInt32LE(0);
        if (!memo.has(key)) fail(`memo ${key} was never stored`, at);
        push(memo.get(key) as PyValue, at);
        break;
      }
      case 0x30: // POP: the value on top, or a mark set just before
        if (marks.length > 0 && marks[marks.length - 1] === stack.length) marks.pop();
        else pop(at);
        break;
      case 0x31: // POP_MARK
        popMark(at);
        break;
      case 0x32: // DUP
        push(top(at), at);
        break;
      default:
        fail(`opcode 0x${op.toString(16).padStart(2, '0')} is not one pma reads`, at);
    }
  }
}
