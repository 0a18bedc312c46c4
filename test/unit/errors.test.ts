import { describe, expect, it } from 'vitest';

import { ERROR_CODES, PmaError, exitStatusFor, fsError, fsErrorCode } from '../../src/errors.js';
import { ChunkPool } from '../../src/run/pool.js';
import { rejected } from '../helpers/errors.js';
import { cpuChunk } from '../helpers/native-chunk.js';

const errno = (code: string) => Object.assign(new Error(`${code}: something`), { code });

describe('PmaError', () => {
  it('crosses threads as a plain object and comes back whole: code, message, file, tensor, stack', () => {
    const e = new PmaError('E_SAFETENSORS', 'bad header', { file: '/a/model.safetensors', tensor: 'w' });
    const wire = structuredClone(e.toWire());
    expect(Object.getPrototypeOf(wire)).toBe(Object.prototype);
    const back = PmaError.fromWire(wire);
    expect(back).toBeInstanceOf(PmaError);
    expect([back.code, back.message, back.file, back.tensor, back.stack]).toEqual([
      e.code,
      e.message,
      e.file,
      e.tensor,
      e.stack,
    ]);
  });

  it('takes an unknown code on the wire as E_INTERNAL, and anything thrown that is not a PmaError as a bug', () => {
    expect(PmaError.fromWire({ code: 'E_NOPE', message: 'x' }).code).toBe('E_INTERNAL');
    const bug = new TypeError('undefined is not a function');
    const e = PmaError.from(bug);
    expect([e.code, e.message, e.cause, e.stack]).toEqual(['E_INTERNAL', bug.message, bug, bug.stack]);
    expect(PmaError.from('a string').message).toBe('a string');
  });

  it('adds to a message and keeps the rest', () => {
    const e = new PmaError('E_NOSPACE', 'disk full', { file: 'f', tensor: 't' }).withMessage('disk full; resume later');
    expect([e.code, e.message, e.file, e.tensor]).toEqual(['E_NOSPACE', 'disk full; resume later', 'f', 't']);
    expect(e.stack).toContain('disk full; resume later');
  });

  it('maps fs errors by errno: unusable paths are bad input, a full disk E_NOSPACE, the rest E_IO', () => {
    for (const c of ['ENOENT', 'ENOTDIR', 'EISDIR', 'EACCES', 'EPERM', 'ELOOP', 'ENAMETOOLONG'])
      expect(fsErrorCode(errno(c)), c).toBe('E_INPUT');
    for (const c of ['ENOSPC', 'EDQUOT']) expect(fsErrorCode(errno(c)), c).toBe('E_NOSPACE');
    for (const c of ['EIO', 'EBADF', undefined])
      expect(fsErrorCode(c ? errno(c) : new Error('x')), String(c)).toBe('E_IO');
    const e = fsError(errno('EISDIR'), 'cannot read', '/x');
    expect([e.code, e.message, e.file]).toEqual(['E_INPUT', 'cannot read /x: EISDIR: something', '/x']);
  });

  it('maps codes to exit statuses: bad input 2, the machine or pma failing 1', () => {
    const two = [
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
    ];
    for (const code of Object.keys(ERROR_CODES) as (keyof typeof ERROR_CODES)[]) {
      expect(exitStatusFor(new PmaError(code, 'x')), code).toBe(two.includes(code) ? 2 : 1);
    }
    expect(exitStatusFor(new Error('x'))).toBe(1);
  });

  it('a native failure on a chunk thread arrives as a PmaError with its code, file, tensor and stack', async () => {
    const pool = new ChunkPool(1);
    try {
      const ops = [
        {
          kind: 'copy' as const,
          tensor: 't',
          outFile: 0,
          outOffset: 0,
          bytes: 4,
          inputs: [{ file: 0, offset: 0 }] as [{ file: number; offset: number }],
        },
      ];
      const err = await rejected(
        pool.merge(
          cpuChunk({
            inputs: ['/nonexistent/pma/input.safetensors'],
            outputs: ['/nonexistent/pma/output.safetensors'],
            ops,
          }),
        ),
      );
      expect(err.code).toMatch(/^E_(INPUT|IO)$/);
      expect(err.file).toMatch(/^\/nonexistent\/pma\//);
      expect(err.stack).toContain(err.message);
    } finally {
      await pool.close();
    }
  });
});
