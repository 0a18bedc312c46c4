// A merge that keeps every tensor as it is reuses the newest header's text when that text is pma's
// own layout of its entries (SafetensorsHeader.pmaText); otherwise it lays the header out again.
// Either way the output header must be exactly what the writer makes of the plan's tensors.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import type { DType } from '../../src/dtypes.js';
import { plan } from '../../src/index.js';
import { readHeader } from '../../src/safetensors/header.js';
import { layoutFile } from '../../src/safetensors/writer.js';
import { rng, writeSafetensors, type RawTensor } from '../helpers/safetensors.js';

const root = mkdtempSync(join(tmpdir(), 'pma-unit-same-layout-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const WIDTH: Partial<Record<DType, number>> = { F64: 8, I64: 8, F32: 4, I32: 4, BF16: 2, F16: 2, U8: 1, BOOL: 1 };
const NAMES = ['__proto__', 'gewichte.über.ä', '名前 mit leerzeichen', 'constructor', 'x"y'.replace('"', "'")];

/** Random tensors: odd names, scalars, empty ones, a mix of dtypes. */
function tensors(seed: number): RawTensor[] {
  const rand = rng(seed);
  const dtypes = Object.keys(WIDTH) as DType[];
  return Array.from({ length: 3 + Math.floor(rand() * 12) }, (_, i) => {
    const dtype = dtypes[Math.floor(rand() * dtypes.length)] as DType;
    const shape = [[], [0, 3], [1 + Math.floor(rand() * 5)], [2, 1 + Math.floor(rand() * 3)]][
      Math.floor(rand() * 4)
    ] as number[];
    const n = shape.reduce((a, b) => a * b, 1) * (WIDTH[dtype] as number);
    const name = `${NAMES[i % NAMES.length] as string}.${i}`;
    // Small finite values in every float dtype: zero bytes.
    return { name, dtype, shape, data: new Uint8Array(n) };
  });
}

/** What the writer makes of the plan's tensors: the header the output must have. */
function expected(p: Awaited<ReturnType<typeof plan>>) {
  return layoutFile(p.tensors.map((t) => ({ name: t.name, dtype: t.outDtype, shape: t.shape, bytes: t.bytes })));
}

describe('an output laid out as the newest checkpoint is', () => {
  it.each(Array.from({ length: 24 }, (_, s) => s))(
    'case %d: pma-form headers reused, others laid out again, the same bytes',
    async (seed) => {
      const list = tensors(seed);
      // Widest first, as pma writes, on even cases; as given (usually not widest first) on odd ones.
      const ordered =
        seed % 2 === 0
          ? [...list].sort((a, b) => (WIDTH[b.dtype as DType] as number) - (WIDTH[a.dtype as DType] as number))
          : list;
      const run = join(root, `case-${seed}`);
      for (const step of [1, 2]) writeSafetensors(join(run, `step-${step}`, 'model.safetensors'), ordered);
      const h = await readHeader(join(run, 'step-2', 'model.safetensors'));
      const layout = layoutFile(
        ordered.map((t) => ({ name: t.name, dtype: t.dtype as DType, shape: t.shape, bytes: t.data.length })),
      );
      // pmaText is exactly the writer's text, or null.
      if (h.pmaText !== null) expect(h.pmaText).toBe(layout.json);
      if (seed % 2 === 0) expect(h.pmaText).not.toBeNull();
      for (const dtype of ['keep', 'f32'] as const) {
        const p = await plan({ inputs: run, dtype });
        const want = expected(p);
        expect(p.outputs[0]?.header).toBe(want.json);
        expect(p.outputs[0]?.size).toBe(want.size);
        expect(p.tensors.map((t) => t.offset)).toEqual(want.sequence.map((k) => want.at[k]));
      }
    },
  );

  it('not reused when the header is not pma-form: other metadata, extra padding, narrowest first', async () => {
    const list: RawTensor[] = [
      { name: 'a', dtype: 'BF16', shape: [2], data: new Uint8Array(4) },
      { name: 'b', dtype: 'F32', shape: [1], data: new Uint8Array(4) },
    ];
    const cases: [string, RawTensor[], Record<string, string> | null][] = [
      ['narrowest first', list, { format: 'pt' }],
      ['no metadata', [...list].reverse(), null],
      ['other metadata', [...list].reverse(), { format: 'pt', by: 'x' }],
    ];
    cases.push(['extra padding', [...list].reverse(), { format: 'pt' }]);
    for (const [what, ts, metadata] of cases) {
      const run = join(root, what.replaceAll(' ', '-'));
      for (const step of [1, 2]) {
        const path = join(run, `step-${step}`, 'model.safetensors');
        writeSafetensors(path, ts, metadata);
        if (what !== 'extra padding') continue;
        // Eight more spaces than the fewest: a valid header, not the one pma writes.
        const bytes = readFileSync(path);
        const n = Number(bytes.readBigUInt64LE(0));
        const len = Buffer.alloc(8);
        len.writeBigUInt64LE(BigInt(n + 8));
        writeFileSync(
          path,
          Buffer.concat([len, bytes.subarray(8, 8 + n), Buffer.from(' '.repeat(8)), bytes.subarray(8 + n)]),
        );
      }
      expect((await readHeader(join(run, 'step-2', 'model.safetensors'))).pmaText, what).toBeNull();
      const p = await plan({ inputs: run });
      expect(p.outputs[0]?.header, what).toBe(expected(p).json);
    }
  });
});
