import { join } from 'node:path';

/** The DCP fixtures torch 1.13 wrote (test/fixtures/dcp/make_fixtures.py). */
export const DCP_FIXTURES = join(import.meta.dirname, '..', 'fixtures', 'dcp');
