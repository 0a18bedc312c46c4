import { discover } from './checkpoints/discover.js';
import { LoadCache, checkConsistent, loadCheckpoint } from './checkpoints/load.js';
import type { DType } from './dtypes.js';
import { PmaError } from './errors.js';
import { stringList } from './validate.js';

export interface InspectedCheckpoint {
  path: string;
  name: string;
  step: number | null;
  layout: 'single' | 'sharded';
  files: number;
  tensors: number;
  bytes: number;
  /** Tensor count per dtype. */
  dtypes: Partial<Record<DType, number>>;
}

export interface InspectResult {
  source: 'run' | 'list';
  checkpoints: InspectedCheckpoint[];
  skipped: { path: string; reason: string }[];
  /** The newest checkpoint's tensors. */
  tensors: { name: string; dtype: DType; shape: number[]; bytes: number }[];
  /** null when every checkpoint holds the same tensors; otherwise the first disagreement. */
  mismatch: string | null;
}

/** Reads every header of a run (or of the named checkpoints); reads no tensor data. *
 * @example
 * ```ts
 * import { inspect } from 'pma';
 * const r = await inspect('runs/exp7');
 * for (const c of r.checkpoints) console.log(c.step, c.tensors, c.bytes);
 * console.log(r.mismatch ?? 'all checkpoints agree');
 * ```
 */
export async function inspect(paths: string | string[]): Promise<InspectResult> {
  const list = typeof paths === 'string' ? [paths] : stringList('paths', paths);
  const found = await discover(list);
  const loaded = [];
  const cache = new LoadCache();
  for (const ref of found.checkpoints) loaded.push(await loadCheckpoint(ref, cache));
  let mismatch: string | null = null;
  try {
    checkConsistent(loaded);
  } catch (e) {
    if (!(e instanceof PmaError) || e.code !== 'E_MISMATCH') throw e;
    mismatch = e.message;
  }
  const newest = loaded[loaded.length - 1];
  return {
    source: found.source,
    skipped: found.skipped,
    mismatch,
    checkpoints: loaded.map((c) => {
      const dtypes: Partial<Record<DType, number>> = {};
      for (const t of c.contents.tensors) dtypes[t.dtype] = (dtypes[t.dtype] ?? 0) + 1;
      return {
        path: c.path,
        name: c.name,
        step: c.step,
        layout: c.layout.kind,
        files: c.files.length,
        tensors: c.contents.tensors.length,
        bytes: c.contents.totalBytes,
        dtypes,
      };
    }),
    tensors: (newest?.contents.tensors ?? []).map((t) => ({
      name: t.name,
      dtype: t.dtype,
      shape: t.shape,
      bytes: t.bytes,
    })),
  };
}
