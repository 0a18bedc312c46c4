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
