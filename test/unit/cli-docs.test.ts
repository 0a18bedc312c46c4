import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { expect, it } from 'vitest';

import { allCommands } from '../../src/cli/main.js';
import { cliReference } from '../../src/cli/reference.js';
import { ROOT } from '../helpers/cli.js';

it('docs/cli.md is the help of every command as the tables make it (node scripts/cli-docs.mjs rewrites it)', async () => {
  expect(readFileSync(join(ROOT, 'docs', 'cli.md'), 'utf8')).toBe(cliReference(await allCommands()));
});
