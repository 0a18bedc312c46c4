import { DTYPE_BITS, type DType, isDType } from '../dtypes.js';
import { NameIndex } from './name-index.js';

/** A tensor entry as the header gives it, before the checks every header gets (header.ts). */
export interface RawEntry {
  name: string;
  dtype: DType;
  shape: number[];
  begin: number;
  end: number;
  bytes: number;
}

const QUOTE = 34;
const OPEN_BRACE = 123;
const COMMA = 44;
const CLOSE_BRACKET = 93;
const CLOSE_BRACE = 125;
const ZERO = 48;
const NINE = 57;
const SPACE = 32;
const RECENT_SHAPES = 4;
/** How pma's writer begins every header: its metadata, then the tensors. */
const PMA_METADATA = '"__metadata__":{"format":"pt"}';

// eslint-disable-next-line no-control-regex -- the control characters JSON forbids in strings
const CONTROL = /[\u0000-\u001f]/;

/**
 * Reads a header written in the compact form every common writer uses (the reference Rust
 * library, and pma): no whitespace, no escapes, each entry's keys in the order dtype, shape,
 * data_offsets, plain integers. It makes the entries directly, where JSON.parse would first build
 * an object of every tensor (a million-key dictionary for a million tensors) and an object and two
 * arrays per entry. Anything else, valid or not (whitespace, a backslash or a control character
 * anywhere, another key order, floats, a name given twice, an unknown dtype), returns null and is
 * read by JSON.parse, which gives the same result or the error it words: a shortcut, never a
 * second judge of validity.
 */
export function scanCompactHeader(text: string): {
  metadata: string | null;
  entries: RawEntry[];
  byName: NameIndex<RawEntry>;
  /**
   * The text is pma's own layout of these entries (src/safetensors/writer.ts), up to its
   * padding: `__metadata__` {"format": "pt"} first, then the entries in data order, contiguous
   * from 0 and widest dtype first.
   */
  pmaLayout: boolean;
  /** Spaces after the closing brace. */
  padding: number;
} | null {
  const n = text.length;
  // No escapes and no control characters: every string ends at the next quote.
  if (text.charCodeAt(0) !== OPEN_BRACE || text.includes('\\') || CONTROL.test(text)) return null;
  let i = 1;
  let metadata: string | null = null;
  const entries: RawEntry[] = [];
  // The entries by name, which also finds a name given twice.
  // An entry takes at least 52 characters ("a":{"dtype":"F32","shape":[],"data_offsets":[0,4]},).
  const byName = new NameIndex<RawEntry>(Math.ceil(n / 52));
  // Neighbours usually share a shape (a layer's experts, a million scalars): the entries share
  // one array per shape among the last few seen, not one each. Shapes are never modified.
  const recent: number[][] = [];
  const dims: number[] = [];
  let lastDtype: DType | null = null;
  let lastQuoted = '';
  // Whether the text is laid out as pma writes it (pmaLayout above), so far.
  let pmaLayout = text.startsWith(PMA_METADATA, 1);
  let lastEnd = 0;
  let lastBits = Infinity;
  const shared = (): number[] => {
    for (const r of recent) if (r.length === dims.length && r.every((d, k) => d === dims[k])) return r;
    const shape = dims.slice();
    if (recent.unshift(shape) > RECENT_SHAPES) recent.pop();
    return shape;
  };

  /** The string whose opening quote is at i, or null; i moves past its closing quote. */
  const str = (): string | null => {
    if (text.charCodeAt(i) !== QUOTE) return null;
    const end = text.indexOf('"', i + 1);
    if (end < 0) return null;
    const v = text.slice(i + 1, end);
    i = end + 1;
    return v;
  };
  /** A non-negative integer written plainly (no sign, fraction, exponent or leading zero), or -1. */
  const uint = (): number => {
    const start = i;
    let v = 0;
    for (let c = text.charCodeAt(i); c >= ZERO && c <= NINE; c = text.charCodeAt(++i)) v = v * 10 + (c - ZERO);
    const len = i - start;
    return len === 0 || len > 15 || (len > 1 && text.charCodeAt(start) === ZERO) ? -1 : v;
  };
  const literal = (s: string): boolean => {
    if (!text.startsWith(s, i)) return false;
    i += s.length;
    return true;
  };

  if (text.charCodeAt(i) !== CLOSE_BRACE) {
    for (;;) {
      const name = str();
      if (name === null || !literal(':')) return null;
      if (name === '__metadata__') {
        if (metadata !== null) return null;
        // Its text, for JSON.parse: an object of strings, scanned to its closing brace.
        const start = i;
        const keys = new Set<string>();
        if (!literal('{')) return null;
        if (text.charCodeAt(i) !== CLOSE_BRACE) {
          for (;;) {
            const key = str();
            if (key === null || keys.has(key) || !literal(':') || str() === null) return null;
            keys.add(key);
            if (text.charCodeAt(i) !== COMMA) break;
            i++;
          }
        }
        if (!literal('}')) return null;
        metadata = text.slice(start, i);
      } else {
        // Names that are array indices come first in an object's key order, so JSON.parse's
        // reading would put them first: a header with such names goes that way, to keep one order.
        const first = name.charCodeAt(0);
        if ((first >= ZERO && first <= NINE) || !literal('{"dtype":')) return null;
        // Usually the previous entry's dtype: matched in place, without a string of its own.
        let dtype: DType | null;
        if (lastDtype !== null && text.startsWith(lastQuoted, i)) {
          dtype = lastDtype;
          i += lastQuoted.length;
        } else {
          const d = str();
          if (d === null || !isDType(d)) return null;
          dtype = lastDtype = d;
          lastQuoted = `"${d}"`;
        }
        if (!literal(',"shape":[')) return null;
        dims.length = 0;
        if (text.charCodeAt(i) === CLOSE_BRACKET) i++;
        else {
          for (;;) {
            const d = uint();
            if (d < 0) return null;
            dims.push(d);
            const c = text.charCodeAt(i++);
            if (c === CLOSE_BRACKET) break;
            if (c !== COMMA) return null;
          }
        }
        if (!literal(',"data_offsets":[')) return null;
        const begin = uint();
        if (begin < 0 || !literal(',')) return null;
        const end = uint();
        if (end < 0 || !literal(']}')) return null;
        const bits = DTYPE_BITS[dtype];
        if (begin !== lastEnd || bits > lastBits) pmaLayout = false;
        lastEnd = end;
        lastBits = bits;
        const entry = { name, dtype, shape: shared(), begin, end, bytes: end - begin };
        if (!byName.add(entry)) return null;
        entries.push(entry);
      }
      const c = text.charCodeAt(i);
      if (c === CLOSE_BRACE) break;
      if (c !== COMMA) return null;
      i++;
    }
  }
  i++;
  const padding = n - i;
  // The padding the format allows after the JSON: spaces only.
  for (; i < n; i++) if (text.charCodeAt(i) !== SPACE) return null;
  return { metadata, entries, byName, pmaLayout, padding };
}
