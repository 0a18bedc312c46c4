import { describe, expect, it } from 'vitest';

import { NameIndex } from '../../src/safetensors/name-index.js';
import { rng } from '../helpers/safetensors.js';

describe('NameIndex', () => {
  it('answers as a Map of the same entries does, through growth and colliding names', () => {
    const rand = rng(5);
    const names = new Set<string>();
    // Short names of few letters collide often; long shared prefixes as real models have.
    while (names.size < 5000)
      names.add(
        Math.floor(rand() * 3) === 0
          ? `model.layers.${names.size}.mlp.up_proj.weight`
          : Math.floor(rand() * 20000).toString(36),
      );
    const index = new NameIndex<{ name: string; i: number }>();
    const map = new Map<string, { name: string; i: number }>();
    let i = 0;
    for (const name of names) {
      const e = { name, i: i++ };
      expect(index.add(e)).toBe(true);
      map.set(name, e);
      // A second entry of a name is refused and changes nothing.
      expect(index.add({ name, i: -1 })).toBe(false);
    }
    expect(index.size).toBe(map.size);
    for (const name of names) expect(index.get(name)).toBe(map.get(name));
    for (const absent of ['', 'model.layers.x', 'zzzzzzzz', 'model.layers.0.mlp.up_proj.weigh']) {
      expect(index.has(absent)).toBe(map.has(absent));
      expect(index.get(absent)).toBe(map.get(absent));
    }
    expect([...index.keys()]).toEqual([...map.keys()]);
    expect([...index.values()]).toEqual([...map.values()]);
    expect([...index]).toEqual([...map]);
    const seen: string[] = [];
    index.forEach((v, k, m) => {
      expect(m).toBe(index);
      expect(v.name).toBe(k);
      seen.push(k);
    });
    expect(seen).toEqual([...names]);
  });

  it('made for many entries at once, holds as many as it is given', () => {
    const index = new NameIndex<{ name: string }>(3);
    for (let i = 0; i < 3000; i++) expect(index.add({ name: `w.${i}` })).toBe(true);
    expect(index.get('w.2999')?.name).toBe('w.2999');
    expect(index.size).toBe(3000);
  });
});
