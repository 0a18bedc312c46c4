import { PmaError } from './errors.js';

/**
 * The one place where option values are checked before any work (and any native code) runs.
 * Every message has the form: `invalid <name>: expected <what>, got <value>`.
 */
export function invalid(name: string, expected: string, got: unknown): PmaError {
  // The CLI names the option by its flag instead (`invalid --total-params: ...`).
  const option = name.replace(/\[.*$/, '');
  return new PmaError('E_USAGE', `invalid ${name}: expected ${expected}, got ${describe(got)}`, { option });
}

function describe(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (v === undefined) return 'nothing';
  if (typeof v === 'number' || typeof v === 'boolean' || v === null) return String(v);
  if (Array.isArray(v)) return `an array of ${v.length}`;
  return typeof v;
}

/** Command-line values arrive as strings: only plain decimal numbers are taken as numbers. */
function numeric(v: unknown, re: RegExp): unknown {
  return typeof v === 'string' && re.test(v.trim()) ? Number(v) : v;
}

export function integer(name: string, v: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const n = numeric(v, /^[-+]?\d+$/);
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < min || n > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `an integer >= ${min}` : `an integer from ${min} to ${max}`;
    throw invalid(name, range, v);
  }
  return n;
}

export function finiteNumber(name: string, v: unknown, check: (n: number) => boolean, expected: string): number {
  const n = numeric(v, /^[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$/i);
  if (typeof n !== 'number' || !Number.isFinite(n) || !check(n)) throw invalid(name, expected, v);
  return n;
}

export function oneOf<T extends string>(name: string, v: unknown, options: readonly T[]): T {
  if (typeof v !== 'string' || !(options as readonly string[]).includes(v)) {
    throw invalid(name, `one of ${options.join(', ')}`, v);
  }
  return v as T;
}

export function nonEmptyString(name: string, v: unknown): string {
  if (typeof v !== 'string' || v === '') throw invalid(name, 'a non-empty string', v);
  return v;
}

export function stringList(name: string, v: unknown, items = 'paths'): string[] {
  if (!Array.isArray(v) || v.length === 0 || !v.every((s) => typeof s === 'string' && s !== '')) {
    throw invalid(name, `a non-empty list of ${items}`, v);
  }
  return v as string[];
}

export function boolean(name: string, v: unknown): boolean {
  if (typeof v !== 'boolean') throw invalid(name, 'true or false', v);
  return v;
}

const SIZE_UNITS: Record<string, number> = {
  '': 1,
  B: 1,
  KB: 1e3,
  MB: 1e6,
  GB: 1e9,
  TB: 1e12,
  KIB: 2 ** 10,
  MIB: 2 ** 20,
  GIB: 2 ** 30,
  TIB: 2 ** 40,
};

/** Byte sizes the way Hugging Face writes them: "5GB" is 5e9 bytes, "5GiB" is 5 * 2^30. */
const COUNT_UNITS: Record<string, number> = { '': 1, K: 1e3, M: 1e6, B: 1e9, G: 1e9, T: 1e12 };

/** A count of tokens or parameters: 8B, 1.3B, 500M, 2T, or a plain number (K, M, B or G, T). */
export function count(name: string, v: unknown): number {
  if (typeof v === 'number') return finiteNumber(name, v, (n) => n > 0, 'a count such as 8B, 500M or 1.3T');
  const m = typeof v === 'string' ? /^\s*(\d+(?:\.\d+)?(?:e\d+)?)\s*([a-zA-Z]?)\s*$/.exec(v) : null;
  const unit = m ? COUNT_UNITS[(m[2] ?? '').toUpperCase()] : undefined;
  const n = m && unit !== undefined ? Number(m[1]) * unit : NaN;
  if (!(n > 0) || !Number.isFinite(n)) throw invalid(name, 'a count such as 8B, 500M or 1.3T', v);
  return n;
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** A duration in milliseconds: 500ms, 30s, 5m, 1h; a plain number is milliseconds. */
export function durationMs(name: string, v: unknown): number {
  if (typeof v === 'number') return integer(name, v, 0);
  const m = typeof v === 'string' ? /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(v) : null;
  if (!m) throw invalid(name, 'a duration such as 30s, 500ms or 5m', v);
  return Math.round(Number(m[1]) * (DURATION_UNITS[m[2] ?? 'ms'] as number));
}

export function byteSize(name: string, v: unknown): number {
  if (typeof v === 'number') return integer(name, v, 1);
  const m = typeof v === 'string' ? /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(v) : null;
  const unit = m ? SIZE_UNITS[(m[2] ?? '').toUpperCase()] : undefined;
  if (!m || unit === undefined) throw invalid(name, 'a size such as 5GB, 500MB or 2GiB', v);
  const bytes = Math.floor(Number(m[1]) * unit);
  if (!Number.isSafeInteger(bytes) || bytes < 1) throw invalid(name, 'a size such as 5GB, 500MB or 2GiB', v);
  return bytes;
}
