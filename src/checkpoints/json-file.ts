import { readFile } from 'node:fs/promises';

import { PmaError, fsError } from '../errors.js';

/** A JSON file beside the weights: its value, null when there is none; E_INPUT naming it when it is not JSON. */
export async function readJsonFile(path: string): Promise<{ value: unknown } | null> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw fsError(e, 'cannot read', path);
  }
  try {
    return { value: JSON.parse(text) as unknown };
  } catch (e) {
    throw new PmaError('E_INPUT', `${path} is not valid JSON (${(e as Error).message})`, { file: path });
  }
}

export const isJsonObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);
