import { stat } from 'node:fs/promises';
import { join } from 'node:path';

/** The record every merge pma writes carries (provenance and checksums): what marks pma's outputs. */
export const PMA_RECORD = 'pma.json';

/** Whether `dir` is an output pma wrote: it holds a pma.json. */
export async function isPmaOutput(dir: string): Promise<boolean> {
  const s = await stat(join(dir, PMA_RECORD)).catch(() => null);
  return s?.isFile() === true;
}
