#!/usr/bin/env node
// Writes docs/cli.md from the CLI's command tables (the build in dist/: run npm run build:ts first).
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { allCommands } from '../dist/cli/main.js';
import { cliReference } from '../dist/cli/reference.js';

const out = join(dirname(fileURLToPath(import.meta.url)), '..', 'docs', 'cli.md');
writeFileSync(out, cliReference(await allCommands()));
console.log(`wrote ${out}`);
