import { expect } from 'vitest';

import { PmaError } from '../../src/errors.js';

/** The PmaError a call throws; fails the test when it throws nothing or something else. */
export function thrownSync(f: () => unknown): PmaError {
  let err: unknown = null;
  try {
    f();
  } catch (e) {
    err = e;
  }
  expect(err, 'should have thrown').toBeInstanceOf(PmaError);
  return err as PmaError;
}

/** The PmaError a promise rejects with; fails the test when it resolves or rejects otherwise. */
export async function rejected(p: Promise<unknown>): Promise<PmaError> {
  const err: unknown = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err, 'should have rejected').toBeInstanceOf(PmaError);
  return err as PmaError;
}
