import { PmaError } from '../errors.js';

/** A format error, worded `<file>: tensor "<name>": <reason>` (the tensor part when known). */
export function formatError(path: string, reason: string, tensor?: string): PmaError {
  const where = tensor === undefined ? path : `${path}: tensor ${JSON.stringify(tensor)}`;
  return new PmaError(
    'E_SAFETENSORS',
    `${where}: ${reason}`,
    tensor === undefined ? { file: path } : { file: path, tensor },
  );
}
