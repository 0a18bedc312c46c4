/**
 * The one error type of pma. `code` is stable (scripts and services switch on it); `file` and
 * `tensor` say where, when known. The CLI maps codes to exit statuses with exitStatusFor().
 */
export const ERROR_CODES = {
  E_USAGE: 'bad command-line usage or option value',
  E_INPUT: 'an input path or checkpoint is unusable',
  E_SAFETENSORS: 'a safetensors file or shard index breaks the format',
  E_MISMATCH: 'checkpoints disagree on tensor names, shapes or dtypes',
  E_NONFINITE: 'an input holds NaN or Inf values (--on-nonfinite error)',
  E_NO_CHECKPOINTS: 'no checkpoint found or selected',
  E_OUTPUT: 'the output path is refused (exists, or inside an input)',
  E_CORRUPT: 'a merged output does not match the checksums in its pma.json',
  E_UNSUPPORTED: 'the request needs something this build or machine lacks',
  E_IO: 'reading or writing a file failed',
  E_NOMEM: 'out of memory',
  E_DEVICE: 'the GPU or its driver failed during the merge',
  E_ABORTED: 'the merge was aborted',
  E_INTERNAL: 'a bug in pma',
} as const;

export type PmaErrorCode = keyof typeof ERROR_CODES;

/** Codes that mean "the user asked for something wrong": exit status 2. */
const BAD_INPUT_CODES: ReadonlySet<PmaErrorCode> = new Set<PmaErrorCode>([
  'E_USAGE',
  'E_INPUT',
  'E_SAFETENSORS',
  'E_MISMATCH',
  'E_NONFINITE',
  'E_NO_CHECKPOINTS',
  'E_OUTPUT',
  'E_CORRUPT',
  'E_UNSUPPORTED',
]);

export interface PmaErrorDetails {
  file?: string;
  tensor?: string;
  cause?: unknown;
}

export class PmaError extends Error {
  readonly code: PmaErrorCode;
  readonly file: string | undefined;
  readonly tensor: string | undefined;

  constructor(code: PmaErrorCode, message: string, details: PmaErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'PmaError';
    this.code = code;
    this.file = details.file;
    this.tensor = details.tensor;
  }
}

export function isPmaErrorCode(s: unknown): s is PmaErrorCode {
  return typeof s === 'string' && Object.prototype.hasOwnProperty.call(ERROR_CODES, s);
}

export function exitStatusFor(err: unknown): number {
  return err instanceof PmaError && BAD_INPUT_CODES.has(err.code) ? 2 : 1;
}

/** Wraps a Node fs error (ENOENT, EACCES, ...) into a PmaError naming the file. */
export function fsError(err: unknown, what: string, file: string): PmaError {
  if (err instanceof PmaError) return err;
  const e = err as NodeJS.ErrnoException;
  const reason = e?.code ? `${e.code}: ${e.message}` : String(err);
  // Paths the user gave that cannot be used (missing, not a directory, no permission, a symlink
  // loop) are bad input; anything else is the machine failing.
  const code = e?.code === 'ENOENT' || e?.code === 'ENOTDIR' || e?.code === 'EACCES' || e?.code === 'ELOOP' ? 'E_INPUT' : 'E_IO';
  return new PmaError(code, `${what} ${file}: ${reason}`, { file, cause: err });
}
