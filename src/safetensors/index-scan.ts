const QUOTE = 34;
const COMMA = 44;
const COLON = 58;
const OPEN_BRACKET = 91;
const CLOSE_BRACKET = 93;
const OPEN_BRACE = 123;
const CLOSE_BRACE = 125;

// Names that are array indices come first in a parsed object's key order: an index with such
// names is read by JSON.parse, to keep one order.
const STARTS_WITH_DIGIT = /^[0-9]/;
// eslint-disable-next-line no-control-regex -- the control characters JSON forbids in strings
const CONTROL = /[\u0000-\u001f]/;

const isSpace = (c: number): boolean => c === 32 || c === 10 || c === 13 || c === 9;

/**
 * The weight_map of a model.safetensors.index.json, read straight into a Map where JSON.parse
 * would first build an object of every tensor (36,757 keys for a 200B MoE) to be copied out. It
 * takes the form writers use (any whitespace between tokens, strings without escapes); anything
 * else, valid or not (an escape, a control character in a string, a name given twice, a
 * weight_map that is not an object of strings, no weight_map), returns null and is read by
 * JSON.parse, which gives the same map or words the error: a shortcut, never a second judge of
 * validity. Values other than weight_map (metadata) are handed to JSON.parse as they stand, so
 * the text is valid JSON whenever a map is returned. Shard names are one string per shard.
 */
export function scanWeightMap(text: string): Map<string, string> | null {
  if (text.includes('\\')) return null;
  const n = text.length;
  let i = 0;
  const space = (): void => {
    while (i < n && isSpace(text.charCodeAt(i))) i++;
  };
  /** The string whose opening quote is at i (after any space), or null; i moves past it. */
  const str = (): string | null => {
    space();
    if (text.charCodeAt(i) !== QUOTE) return null;
    const end = text.indexOf('"', i + 1);
    if (end < 0) return null;
    const v = text.slice(i + 1, end);
    i = end + 1;
    return CONTROL.test(v) ? null : v;
  };
  /** Consumes `code` after any space. */
  const take = (code: number): boolean => {
    space();
    if (text.charCodeAt(i) !== code) return false;
    i++;
    return true;
  };
  /** Moves past any JSON value (not checked: JSON.parse checks the slice). */
  const skipValue = (): boolean => {
    space();
    const c = text.charCodeAt(i);
    if (c === QUOTE) return str() !== null;
    if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      let depth = 0;
      for (; i < n; i++) {
        const d = text.charCodeAt(i);
        if (d === QUOTE) {
          const end = text.indexOf('"', i + 1);
          if (end < 0) return false;
          i = end;
        } else if (d === OPEN_BRACE || d === OPEN_BRACKET) depth++;
        else if ((d === CLOSE_BRACE || d === CLOSE_BRACKET) && --depth === 0) {
          i++;
          return true;
        }
      }
      return false;
    }
    while (i < n && !isSpace(text.charCodeAt(i)) && ![COMMA, CLOSE_BRACE, CLOSE_BRACKET].includes(text.charCodeAt(i)))
      i++;
    return true;
  };

  let map: Map<string, string> | null = null;
  const keys = new Set<string>();
  if (!take(OPEN_BRACE)) return null;
  space();
  if (text.charCodeAt(i) === CLOSE_BRACE) return null; // no weight_map
  for (;;) {
    const key = str();
    if (key === null || keys.has(key) || !take(COLON)) return null;
    keys.add(key);
    if (key === 'weight_map') {
      map = new Map();
      const files = new Map<string, string>();
      if (!take(OPEN_BRACE)) return null;
      space();
      if (text.charCodeAt(i) === CLOSE_BRACE) i++;
      else {
        for (;;) {
          const name = str();
          if (name === null || map.has(name) || STARTS_WITH_DIGIT.test(name) || !take(COLON)) return null;
          const file = str();
          if (file === null) return null;
          let shared = files.get(file);
          if (shared === undefined) files.set(file, (shared = file));
          map.set(name, shared);
          if (take(COMMA)) continue;
          if (take(CLOSE_BRACE)) break;
          return null;
        }
      }
    } else {
      space();
      const start = i;
      if (!skipValue()) return null;
      try {
        JSON.parse(text.slice(start, i));
      } catch {
        return null;
      }
    }
    if (take(COMMA)) continue;
    if (take(CLOSE_BRACE)) break;
    return null;
  }
  space();
  return i === n ? map : null;
}
