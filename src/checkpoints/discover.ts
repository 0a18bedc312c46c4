import { readFile, readdir, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';

import { PmaError, fsError } from '../errors.js';
import { METADATA_NAME } from '../dcp/metadata.js';
import { INDEX_NAME } from '../safetensors/shard-index.js';
import { isPmaOutput } from './pma-output.js';
import { parseStep } from './step.js';

export interface CheckpointRef {
  /** The checkpoint directory, or the .safetensors file for a single-file checkpoint. */
  path: string;
  /** Where config and tokenizer files live: the directory itself, or the file's directory. */
  dir: string;
  name: string;
  step: number | null;
  /** How its weights are stored: safetensors (one file, or shards and an index), or a PyTorch DCP directory. */
  layout: { kind: 'single'; file: string } | { kind: 'sharded'; index: string } | { kind: 'dcp'; metadata: string };
}

export interface Discovery {
  /** 'run': a directory of checkpoints; 'list': checkpoints named one by one. */
  source: 'run' | 'list';
  checkpoints: CheckpointRef[];
  /** Step-named entries of a run directory that hold no weights (yet), with the reason. */
  skipped: { path: string; reason: string }[];
}

async function statOrNull(p: string) {
  try {
    return await stat(p);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw fsError(e, 'cannot stat', p);
  }
}

/** What kind of weights a directory holds, or why it holds none. */
async function weightsLayout(dir: string): Promise<CheckpointRef['layout'] | string> {
  if (await statOrNull(join(dir, METADATA_NAME))) return { kind: 'dcp', metadata: join(dir, METADATA_NAME) };
  if (await statOrNull(join(dir, INDEX_NAME))) return { kind: 'sharded', index: join(dir, INDEX_NAME) };
  if (await statOrNull(join(dir, 'model.safetensors'))) return { kind: 'single', file: join(dir, 'model.safetensors') };
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (e) {
    throw fsError(e, 'cannot list', dir);
  }
  const st = names.filter((n) => n.endsWith('.safetensors')).sort();
  if (st.length === 1 && st[0] !== undefined) return { kind: 'single', file: join(dir, st[0]) };
  if (st.length > 1) return `${st.length} .safetensors files but no ${INDEX_NAME}`;
  return `no .safetensors file and no DCP ${METADATA_NAME}`;
}

async function checkpointAt(path: string): Promise<CheckpointRef | string> {
  const abs = resolve(path);
  const s = await statOrNull(abs);
  if (!s) return 'does not exist';
  const name = basename(abs);
  if (s.isFile()) {
    if (!abs.endsWith('.safetensors')) return 'is a file but not a .safetensors file';
    // A lone model.safetensors takes its step from its directory (checkpoint-1000/model.safetensors).
    const step = parseStep(name) ?? parseStep(basename(dirname(abs)));
    return { path: abs, dir: dirname(abs), name, step, layout: { kind: 'single', file: abs } };
  }
  if (!s.isDirectory()) return 'is neither a file nor a directory';
  const layout = await weightsLayout(abs);
  if (typeof layout === 'string') return layout;
  return { path: abs, dir: abs, name, step: parseStep(name), layout };
}

function byStep(a: CheckpointRef, b: CheckpointRef): number {
  return (a.step ?? 0) - (b.step ?? 0);
}

function refuseDuplicateSteps(list: CheckpointRef[]): void {
  for (let i = 1; i < list.length; i++) {
    const a = list[i - 1];
    const b = list[i];
    if (a && b && a.step !== null && a.step === b.step) {
      throw new PmaError(
        'E_INPUT',
        `two checkpoints carry step ${a.step}: ${a.path} and ${b.path}; name the ones to merge explicitly`,
        { file: b.path },
      );
    }
  }
}

/**
 * Turns the user's paths into ordered checkpoints (oldest first). One directory holding
 * step-named checkpoints is a run: those (subdirectories or .safetensors files) are the
 * checkpoints, ordered by step numerically; weights at its own top level are the final model a
 * trainer saved beside them, listed among the skipped and left out. Any other single path, and
 * each of several paths, is a checkpoint; several are ordered by step when all carry one,
 * otherwise kept as given.
 */
export async function discover(paths: string[]): Promise<Discovery> {
  if (paths.length === 1 && paths[0] !== undefined) {
    const only = paths[0];
    const ck = await checkpointAt(only);
    const s = await statOrNull(resolve(only));
    if (s?.isDirectory()) {
      const run = await discoverRun(resolve(only), typeof ck === 'string');
      if (run) {
        if (typeof ck !== 'string') run.skipped.unshift({ path: weightsPath(ck), reason: FINAL_MODEL });
        return run;
      }
    }
    if (typeof ck !== 'string') return { source: 'list', checkpoints: [ck], skipped: [] };
    throw new PmaError('E_INPUT', `${only}: ${ck}`, { file: only });
  }
  const checkpoints: CheckpointRef[] = [];
  for (const p of paths) {
    const ck = await checkpointAt(p);
    if (typeof ck === 'string') throw new PmaError('E_INPUT', `${p}: not a checkpoint: ${ck}`, { file: p });
    checkpoints.push(ck);
  }
  if (checkpoints.every((c) => c.step !== null)) {
    checkpoints.sort(byStep);
    refuseDuplicateSteps(checkpoints);
  }
  return { source: 'list', checkpoints, skipped: [] };
}

const FINAL_MODEL =
  "the final model saved at the run's top level (trainer.save_model), not one of its checkpoints; name it to merge it";

/** The file that holds a checkpoint's weights, or its shard index. */
const weightsPath = (ck: CheckpointRef) =>
  ck.layout.kind === 'single' ? ck.layout.file : ck.layout.kind === 'sharded' ? ck.layout.index : ck.layout.metadata;

/** Megatron-LM and NeMo name the newest complete checkpoint of a run here, once it is saved. */
export const MEGATRON_LATEST = 'latest_checkpointed_iteration.txt';

/** The iteration Megatron's tracker file names, or null (none, or "release"). */
async function megatronLatest(dir: string): Promise<number | null> {
  const text = await readFile(join(dir, MEGATRON_LATEST), 'utf8').catch(() => null);
  if (text === null) return null;
  const n = Number(text.trim());
  return /^\d+$/.test(text.trim()) && Number.isSafeInteger(n) ? n : null;
}

/**
 * The step-named checkpoints of a run directory. With `required` false, null when it has none
 * (the directory is then a checkpoint itself); with it true, E_NO_CHECKPOINTS.
 */
async function discoverRun(dir: string, required: boolean): Promise<Discovery | null> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (e) {
    throw fsError(e, 'cannot list run directory', dir);
  }
  const checkpoints: CheckpointRef[] = [];
  const skipped: Discovery['skipped'] = [];
  const latest = await megatronLatest(dir);
  for (const e of entries) {
    const step = parseStep(e.name);
    if (step === null) continue;
    const p = join(dir, e.name);
    if (latest !== null && step > latest) {
      skipped.push({ path: p, reason: `newer than ${MEGATRON_LATEST} (${latest}): still being saved` });
      continue;
    }
    // The Hugging Face Trainer saves into tmp-checkpoint-N and renames it when the save is done.
    if (e.name.startsWith('tmp')) {
      skipped.push({ path: p, reason: 'a temporary directory, still being saved' });
      continue;
    }
    if (!e.isDirectory() && !(e.isFile() && e.name.endsWith('.safetensors'))) {
      if (!e.isSymbolicLink()) continue;
    }
    if (e.isDirectory() && (await isPmaOutput(p))) {
      skipped.push({ path: p, reason: 'a merge written by pma (it has a pma.json), not a checkpoint of the run' });
      continue;
    }
    const ck = await checkpointAt(p);
    if (typeof ck === 'string') skipped.push({ path: p, reason: ck });
    else checkpoints.push(ck);
  }
  if (checkpoints.length === 0) {
    if (!required) return null;
    const why = skipped.length > 0 ? ` (${skipped.map((s) => `${basename(s.path)}: ${s.reason}`).join('; ')})` : '';
    throw new PmaError(
      'E_NO_CHECKPOINTS',
      `${dir}: no checkpoints found: expected step-named subdirectories such as checkpoint-1000 holding model.safetensors or ${INDEX_NAME}${why}`,
      { file: dir },
    );
  }
  checkpoints.sort(byStep);
  refuseDuplicateSteps(checkpoints);
  skipped.sort((a, b) => (parseStep(basename(a.path)) ?? 0) - (parseStep(basename(b.path)) ?? 0));
  return { source: 'run', checkpoints, skipped };
}
