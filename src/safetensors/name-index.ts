/**
 * Entries by name, as a ReadonlyMap, for headers of up to millions of tensors: an open-addressing
 * table of positions in the entry list (an Int32Array) instead of a Map. A Map of a million names
 * cost the header scanner about as much as the rest of its work (its hash table grows by copying,
 * an entry at a time, and each copy is fresh memory, a page fault per 4 KiB on a VM that traps
 * them); this table is one typed array, doubled rarely, and the entries stay in their own list.
 */
export class NameIndex<T extends { readonly name: string }> implements ReadonlyMap<string, T> {
  private readonly list: T[] = [];
  // Position in `list` + 1 of the entry in each slot; 0: empty. Never more than half full.
  private slots: Int32Array;

  /** `expected`: about how many entries will be added (the table is made that large at once). */
  constructor(expected = 0) {
    let n = 1024;
    while (n < 2 * expected) n *= 2;
    this.slots = new Int32Array(n);
  }

  /** Adds an entry; false, and nothing added, when an entry of that name is there already. */
  add(entry: T): boolean {
    const at = this.find(entry.name);
    if ((this.slots[at] as number) !== 0) return false;
    this.list.push(entry);
    this.slots[at] = this.list.length;
    if (this.list.length * 2 > this.slots.length) this.grow();
    return true;
  }

  get(name: string): T | undefined {
    const i = this.slots[this.find(name)] as number;
    return i === 0 ? undefined : this.list[i - 1];
  }

  has(name: string): boolean {
    return (this.slots[this.find(name)] as number) !== 0;
  }

  get size(): number {
    return this.list.length;
  }

  forEach(fn: (value: T, key: string, map: ReadonlyMap<string, T>) => void, thisArg?: unknown): void {
    for (const e of this.list) fn.call(thisArg, e, e.name, this);
  }

  *entries(): MapIterator<[string, T]> {
    for (const e of this.list) yield [e.name, e];
  }

  *keys(): MapIterator<string> {
    for (const e of this.list) yield e.name;
  }

  values(): MapIterator<T> {
    return this.list.values();
  }

  [Symbol.iterator](): MapIterator<[string, T]> {
    return this.entries();
  }

  /** The slot holding `name`, or the empty slot where it would go (linear probing). */
  private find(name: string): number {
    const mask = this.slots.length - 1;
    for (let s = hash(name) & mask; ; s = (s + 1) & mask) {
      const i = this.slots[s] as number;
      if (i === 0 || (this.list[i - 1] as T).name === name) return s;
    }
  }

  private grow(): void {
    const old = this.slots;
    this.slots = new Int32Array(old.length * 2);
    const mask = this.slots.length - 1;
    for (let k = 0; k < old.length; k++) {
      const i = old[k] as number;
      if (i === 0) continue;
      let s = hash((this.list[i - 1] as T).name) & mask;
      while ((this.slots[s] as number) !== 0) s = (s + 1) & mask;
      this.slots[s] = i;
    }
  }
}

/** FNV-1a over the UTF-16 code units: names that share long prefixes (layers.N.mlp...) spread. */
function hash(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}
