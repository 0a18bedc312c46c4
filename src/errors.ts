/**
 * The one error type of pma. `code` is stable (scripts and services switch on it); `file` and
 * `tensor` say where, when known. The CLI maps codes to exit statuses with exitStatusFor().
 * Native failures carry the same codes (native/errors.h names them); every decision about an
 * error is made on its code, never on its message.
 */
export const ERROR_CODES = {
  E_USAGE: 'bad command-line usage or option value',
  E_INPUT: 'an input path or checkpoint is unusable',
  E_SAFETENSORS: 'a safetensors file or shard index breaks the format',
  E_MISMATCH: 'checkpoints disagree on tensor names, shapes or dtypes',
  E_NONFINITE: 'an input holds NaN or Inf values (--on-nonfinite error)',
  E_QUANTIZED: 'the checkpoints are quantized with a scheme pma cannot average (--copy-quantized)',
  E_NO_CHECKPOINTS: 'no checkpoint found or selected',
  E_OUTPUT: 'the output path is refused (exists, or inside an input)',
  E_CORRUPT: 'a merged output does not match the checksums in its pma.json',
  E_UNSUPPORTED: 'the request needs something this build or machine lacks',
  E_IO: 'reading or writing a file failed',
  E_NOSPACE: 'the output filesystem is full, or too small for the output',
  E_NOMEM: 'out of memory',
  E_DEVICE: 'the GPU or its driver failed during the merge',
  E_ABORTED: 'the merge was aborted',
  E_INCOMPLETE: 'a merge in parts cannot be finalized: parts are missing, running or failed',
  E_INTERNAL: 'a bug in pma',
} as const;

export type PmaErrorCode = keyof typeof ERROR_CODES;

/** Codes that mean "the user asked for something wrong": exit status 2. Every other code exits 1. */
const BAD_INPUT_CODES: ReadonlySet<PmaErrorCode> = new Set<PmaErrorCode>([
  'E_USAGE',
  'E_INPUT',
  'E_SAFETENSORS',
  'E_MISMATCH',
  'E_NONFINITE',
  'E_QUANTIZED',
  'E_NO_CHECKPOINTS',
  'E_OUTPUT',
  'E_CORRUPT',
  'E_UNSUPPORTED',
]);

export interface PmaErrorDetails {
  file?: string;
  tensor?: string;
  /** The option (as the library names it) whose value was refused: E_USAGE from validation. */
  option?: string;
  cause?: unknown;
}

/** A PmaError as plain data: how it crosses between threads (structured clone keeps no class). */
export interface PmaErrorWire {
  code: string;
  message: string;
  file?: string;
  tensor?: string;
  option?: string;
  stack?: string;
}

/**
 * Every failure pma reports: `code` says what kind (ERROR_CODES), `file` and `tensor` where.
 *
 * @example
 * ```ts
 * import { merge, PmaError } from 'pma';
 * try {
 *   await merge({ inputs: 'runs/exp7', last: 2, out: 'runs/exp7/checkpoint-1000' });
 * } catch (e) {
 *   if (!(e instanceof PmaError) || e.code !== 'E_OUTPUT') throw e;
 *   console.log(`refused: ${e.message} (${e.file})`);
 * }
 * ```
 */
export class PmaError extends Error {
  readonly code: PmaErrorCode;
  readonly file: string | undefined;
  readonly tensor: string | undefined;
  readonly option: string | undefined;

  constructor(code: PmaErrorCode, message: string, details: PmaErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'PmaError';
    this.code = code;
    this.file = details.file;
    this.tensor = details.tensor;
    this.option = details.option;
  }

  /** Any thrown value as a PmaError: itself, or E_INTERNAL (a bug) carrying it as the cause. */
  static from(e: unknown): PmaError {
    if (e instanceof PmaError) return e;
    const err = new PmaError('E_INTERNAL', e instanceof Error ? e.message : String(e), { cause: e });
    if (e instanceof Error && e.stack) err.stack = e.stack;
    return err;
  }

  /** Rebuilds an error sent by toWire() (or by the addon), keeping the stack where it was thrown. */
  static fromWire(w: PmaErrorWire): PmaError {
    const details: PmaErrorDetails = {};
    if (w.file) details.file = w.file;
    if (w.tensor) details.tensor = w.tensor;
    if (w.option) details.option = w.option;
    const err = new PmaError(isPmaErrorCode(w.code) ? w.code : 'E_INTERNAL', w.message, details);
    if (w.stack) err.stack = w.stack;
    return err;
  }

  toWire(): PmaErrorWire {
    const w: PmaErrorWire = { code: this.code, message: this.message };
    if (this.file) w.file = this.file;
    if (this.tensor) w.tensor = this.tensor;
    if (this.option) w.option = this.option;
    if (this.stack) w.stack = this.stack;
    return w;
  }

  /** The same error with more words after its message (code, file, tensor and stack kept). */
  withMessage(message: string): PmaError {
    const details: PmaErrorDetails = { cause: this.cause ?? this };
    if (this.file) details.file = this.file;
    if (this.tensor) details.tensor = this.tensor;
    if (this.option) details.option = this.option;
    const err = new PmaError(this.code, message, details);
    if (this.stack) err.stack = this.stack.replace(this.message, message);
    return err;
  }
}

export function isPmaErrorCode(s: unknown): s is PmaErrorCode {
  return typeof s === 'string' && Object.prototype.hasOwnProperty.call(ERROR_CODES, s);
}

export function isAbort(e: unknown): boolean {
  return e instanceof PmaError && e.code === 'E_ABORTED';
}

/**
 * The exit status the CLI gives for an error: 2 for bad input or usage (the codes of
 * BAD_INPUT_CODES), 1 for anything else, a failing machine or a bug.
 *
 * @example
 * ```ts
 * import { exitStatusFor, merge } from 'pma';
 * const status = await merge({ inputs: 'runs/exp7', last: 2, out: 'merged' }).then(() => 0, exitStatusFor);
 * console.log(status);
 * ```
 */
export function exitStatusFor(err: unknown): number {
  return err instanceof PmaError && BAD_INPUT_CODES.has(err.code) ? 2 : 1;
}

// errno codes of a path the user gave that cannot be used: missing, not a directory, a directory
// where a file belongs, no permission, a symlink loop, a name too long. Bad input, not a failure.
const BAD_PATH_ERRNOS = new Set(['ENOENT', 'ENOTDIR', 'EISDIR', 'EACCES', 'EPERM', 'ELOOP', 'ENAMETOOLONG']);
const NO_SPACE_ERRNOS = new Set(['ENOSPC', 'EDQUOT']);

/** The code of a Node fs error: bad input for an unusable path, E_NOSPACE for a full disk, else E_IO. */
export function fsErrorCode(err: unknown): PmaErrorCode {
  const errno = (err as NodeJS.ErrnoException | null)?.code ?? '';
  return BAD_PATH_ERRNOS.has(errno) ? 'E_INPUT' : NO_SPACE_ERRNOS.has(errno) ? 'E_NOSPACE' : 'E_IO';
}

/** Wraps a Node fs error (ENOENT, EACCES, ...) into a PmaError naming the file. */
export function fsError(err: unknown, what: string, file: string): PmaError {
  if (err instanceof PmaError) return err;
  const e = err as NodeJS.ErrnoException | null;
  // Node's messages mostly begin with the errno code already ("ENOENT: no such file ...").
  const reason = e?.code && !e.message.startsWith(e.code) ? `${e.code}: ${e.message}` : (e?.message ?? String(err));
  return new PmaError(fsErrorCode(err), `${what} ${file}: ${reason}`, { file, cause: err });
}
