import { discover } from './checkpoints/discover.js';
import { LoadCache, checkConsistent, loadCheckpoint } from './checkpoints/load.js';
import { readQuantization, type Fp8Scaling } from './checkpoints/quantization.js';
import type { DType } from './dtypes.js';
import { PmaError } from './errors.js';
import { stringList } from './validate.js';

export interface InspectedCheckpoint {
  path: string;
  name: string;
  step: number | null;
  /** safetensors in one file or in shards, or a PyTorch Distributed Checkpoint. */
  layout: 'single' | 'sharded' | 'dcp';
  files: number;
  tensors: number;
  bytes: number;
  /** Tensor count per dtype. */
  dtypes: Partial<Record<DType, number>>;
  /** DCP: items that are not averaged (training state, byte blobs). */
  others: number;
  /** Why its headers cannot be read (a truncated file, a broken index), or null. */
  problem: string | null;
}

export interface InspectResult {
  source: 'run' | 'list';
  checkpoints: InspectedCheckpoint[];
  skipped: { path: string; reason: string }[];
  /** The newest checkpoint's tensors. */
  tensors: { name: string; dtype: DType; shape: number[]; bytes: number }[];
  /** null when every checkpoint holds the same tensors; otherwise the first disagreement. */
  mismatch: string | null;
  /** The newest checkpoint's quantization; null when it is not quantized. */
  quantization: InspectedQuantization | null;
  /**
   * No checkpoint has a problem, they all agree, and no quantization pma cannot average is found:
   * what a merge of them needs (without --copy-quantized).
   */
  ok: boolean;
}

export interface InspectedQuantization {
  /** config.json's quantization_config.quant_method, or null. */
  method: string | null;
  /** FP8 tensors pma averages, with the scale tensor each is paired with and its block. */
  fp8: {
    name: string;
    dtype: string;
    scale: string | null;
    scaleDtype: string | null;
    scaling: Fp8Scaling;
    block: [number, number];
  }[];
  /** A scheme pma cannot average: a merge is refused unless --copy-quantized. */
  unknown: { scheme: string; why: string; tensors: string[] } | null;
}

// Codes of a checkpoint whose headers cannot be read: reported on it, the others still listed.
const UNREADABLE = new Set(['E_SAFETENSORS', 'E_INPUT', 'E_IO']);

/**
 * Reads every header of a run (or of the named checkpoints); reads no tensor data. A checkpoint
 * that cannot be read is listed with its problem; `ok` says whether a merge of them all would
 * pass its checks.
 *
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
  const problems = new Map<string, string>();
  const cache = new LoadCache();
  for (const ref of found.checkpoints) {
    try {
      loaded.push(await loadCheckpoint(ref, cache));
    } catch (e) {
      // One damaged checkpoint is reported among the others, not instead of them.
      if (!(e instanceof PmaError) || !UNREADABLE.has(e.code)) throw e;
      problems.set(ref.path, e.message);
    }
  }
  let mismatch: string | null = null;
  try {
    checkConsistent(loaded);
  } catch (e) {
    if (!(e instanceof PmaError) || e.code !== 'E_MISMATCH') throw e;
    mismatch = e.message;
  }
  const newest = loaded[loaded.length - 1];
  const byPath = new Map(loaded.map((c) => [c.path, c]));
  const q = newest ? await readQuantization(newest) : null;
  const quantization: InspectedQuantization | null =
    q && (q.method !== null || q.fp8.size > 0 || q.unknown)
      ? {
          method: q.method,
          fp8: [...q.fp8.values()].map((f) => ({
            name: f.name,
            dtype: f.dtype,
            scale: f.scale,
            scaleDtype: f.scaleDtype,
            scaling: f.scaling,
            block: [f.blockRows, f.blockCols],
          })),
          unknown: q.unknown,
        }
      : null;
  return {
    source: found.source,
    skipped: found.skipped,
    mismatch,
    quantization,
    ok: mismatch === null && problems.size === 0 && !quantization?.unknown,
    checkpoints: found.checkpoints.map((ref) => {
      const c = byPath.get(ref.path);
      const dtypes: Partial<Record<DType, number>> = {};
      for (const t of c?.contents.tensors ?? []) dtypes[t.dtype] = (dtypes[t.dtype] ?? 0) + 1;
      return {
        path: ref.path,
        name: ref.name,
        step: ref.step,
        layout: ref.layout.kind,
        files: c?.files.length ?? 0,
        tensors: c?.contents.tensors.length ?? 0,
        bytes: c?.contents.totalBytes ?? 0,
        dtypes,
        others: c?.others.length ?? 0,
        problem: problems.get(ref.path) ?? null,
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
