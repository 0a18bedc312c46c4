import { describe, expect, it } from 'vitest';

import { utf8Pieces } from '../../src/util/utf8-pieces.js';

/** The pieces copied as they come: each is valid only until the next. */
function pieces(text: string, chars: number): Buffer[] {
  const out: Buffer[] = [];
  for (const p of utf8Pieces(text, chars)) out.push(Buffer.from(p));
  return out;
}

const joined = (text: string, chars: number) => Buffer.concat(pieces(text, chars));

describe('utf8Pieces', () => {
  it("joins to exactly the string's UTF-8 bytes, whatever the piece size and wherever a pair falls", () => {
    const texts = [
      '',
      'a',
      '{"w.0":{"dtype":"BF16","shape":[1],"data_offsets":[0,2]}}',
      'pré-entraînement 模型 \u{1F600}\u{1F601}x\u{10FFFF}',
      '\u{1F600}'.repeat(9),
      // Lone halves encode as U+FFFD, in pieces as whole.
      'a\ud800b\udc00c',
    ];
    for (const text of texts) {
      for (const chars of [2, 3, 4, 5, 7, 1024]) {
        expect(
          joined(text, chars).equals(Buffer.from(text, 'utf8')),
          `${JSON.stringify(text)} in pieces of ${chars}`,
        ).toBe(true);
      }
    }
  });

  it('cuts a long string into pieces of at most the size asked, never more than 3 bytes a unit', () => {
    const text = 'x'.repeat(10_000) + '\u{1F600}'.repeat(500);
    const sizes = pieces(text, 1000).map((p) => p.length);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(3000);
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(Buffer.byteLength(text));
  });
});
