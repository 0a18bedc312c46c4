/**
 * The UTF-8 bytes of a string, a piece at a time, through one buffer reused from piece to piece
 * (each piece is valid until the next is asked for). A header of a million tensors is a string of
 * 75 MB: encoded whole it would be a fresh buffer of that size, whose pages cost a page fault each
 * (15-18 us on a VM that traps them). A piece never ends inside a surrogate pair, so the pieces
 * join to exactly the bytes of Buffer.from(text, 'utf8').
 */
export function* utf8Pieces(text: string, chars = 2 ** 20): Generator<Buffer> {
  // At most 3 bytes per UTF-16 unit (a pair, 2 units, is 4 bytes).
  const buf = Buffer.allocUnsafe(Math.min(text.length, chars) * 3);
  for (let at = 0; at < text.length;) {
    let end = Math.min(text.length, at + chars);
    const c = text.charCodeAt(end);
    // A low surrogate after the cut: the pair's high half goes with it into the next piece.
    if (end < text.length && end - 1 > at && c >= 0xdc00 && c <= 0xdfff) end--;
    yield buf.subarray(0, buf.write(text.slice(at, end), 0, 'utf8'));
    at = end;
  }
}
