import { createHash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';

/**
 * JSON.parse keeps the last of two equal keys without a word; a header or an index that names one
 * tensor twice is ambiguous, so it is refused. This scans valid JSON text (call it after
 * JSON.parse has accepted it) and returns the first key repeated within one object, with the
 * keys of the objects around it, or null.
 */
export function duplicateKey(text: string): { key: string; path: string[] } | null {
  const stack: { keys: Set<string>; name: string }[] = [];
  let pendingKey: string | null = null;
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === '"') {
      let j = i + 1;
      while (text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      const raw = text.slice(i, j + 1);
      i = j + 1;
      while (text[i] === ' ' || text[i] === '\n' || text[i] === '\r' || text[i] === '\t') i++;
      const top = stack[stack.length - 1];
      // A string directly followed by ':' inside an object is a key.
      if (text[i] === ':' && top) {
        const key = JSON.parse(raw) as string;
        if (top.keys.has(key)) return { key, path: stack.slice(1).map((s) => s.name) };
        top.keys.add(key);
        pendingKey = key;
      }
      continue;
    }
    if (c === '{') {
      stack.push({ keys: new Set(), name: pendingKey ?? '' });
      pendingKey = null;
    } else if (c === '}') {
      stack.pop();
    } else if (c === '[') {
      // Arrays hold no keys of their own; a placeholder keeps the nesting right.
      stack.push({ keys: new Set(), name: pendingKey ?? '' });
      pendingKey = null;
    } else if (c === ']') {
      stack.pop();
    } else if (c === ',') {
      pendingKey = null;
    }
    i++;
  }
  return null;
}

/** Every object's own keys in parsed JSON, nested ones included. */
function keyCount(v: unknown): number {
  if (typeof v !== 'object' || v === null) return 0;
  let n = 0;
  if (Array.isArray(v)) {
    for (const x of v) if (typeof x === 'object' && x !== null) n += keyCount(x);
    return n;
  }
  for (const k in v) {
    n++;
    const x = (v as Record<string, unknown>)[k];
    if (typeof x === 'object' && x !== null) n += keyCount(x);
  }
  return n;
}

/**
 * duplicateKey(text), answered without scanning the text character by character when it has
 * none, which is almost always: `parsed` is JSON.parse(text). Every key of the text ends in `":`
 * (canonical JSON, as safetensors and Hugging Face write it: no space before the colon), and
 * only a key does, bar an escaped quote inside a string; so the occurrences of `":` are at least
 * the keys written, and the parsed objects hold the keys written less the repeated ones. When the
 * two counts agree no key repeats; otherwise, or when a colon follows a quote after a space, the
 * full scan says.
 */
export function duplicateKeyOf(text: string, parsed: unknown): { key: string; path: string[] } | null {
  if (/"[ \t\n\r]+:/.test(text)) return duplicateKey(text);
  let marks = 0;
  for (let i = text.indexOf('":'); i !== -1; i = text.indexOf('":', i + 2)) marks++;
  return marks === keyCount(parsed) ? null : duplicateKey(text);
}

/**
 * A cache key for a header's or an index's bytes: their SHA-256. Hashing (SHA-NI, about 1 GB/s)
 * costs less than decoding the bytes into the string a cache keyed by text would need.
 */
export function bytesKey(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('base64');
}

/**
 * bytesKey of bytes [from, to) of an open file (to Infinity: to its end), read through `block`
 * a piece at a time, so that bytes found in a cache are never held whole; and how many bytes it
 * read (fewer than asked when the file ends first).
 */
export async function bytesKeyOfFile(
  fh: FileHandle,
  block: Buffer,
  from: number,
  to = Infinity,
): Promise<{ key: string; bytes: number }> {
  const hash = createHash('sha256');
  let at = from;
  while (at < to) {
    const { bytesRead } = await fh.read(block, 0, Math.min(block.length, to - at), at);
    if (bytesRead === 0) break;
    hash.update(block.subarray(0, bytesRead));
    at += bytesRead;
  }
  return { key: hash.digest('base64'), bytes: at - from };
}
