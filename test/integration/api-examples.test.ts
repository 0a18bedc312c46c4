import { spawnSync } from 'node:child_process';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

import ts from 'typescript';
import { describe, expect, it } from 'vitest';

import { writeDemoRun } from '../../src/synthetic/demo-run.js';
import { ROOT } from '../helpers/cli.js';
import { scratch } from '../helpers/scratch.js';

// Every function (and class) the library exports documents itself with an @example, and every
// example runs: here, as a user's ES module importing 'pma' (the built dist/), in a directory
// holding the demo run at runs/exp7. The examples are the API docs' (TypeDoc, docs/api).

interface Documented {
  name: string;
  examples: string[];
}

function exportedExamples(): Documented[] {
  const program = ts.createProgram([join(ROOT, 'src', 'index.ts')], {
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    target: ts.ScriptTarget.ES2022,
    strict: true,
  });
  const checker = program.getTypeChecker();
  const index = program.getSourceFile(join(ROOT, 'src', 'index.ts')) as ts.SourceFile;
  const moduleSymbol = checker.getSymbolAtLocation(index) as ts.Symbol;
  const out: Documented[] = [];
  for (const exported of checker.getExportsOfModule(moduleSymbol)) {
    const symbol = exported.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(exported) : exported;
    if (!(symbol.flags & (ts.SymbolFlags.Function | ts.SymbolFlags.Class))) continue;
    const examples = symbol
      .getJsDocTags(checker)
      .filter((t) => t.name === 'example')
      .map((t) => ts.displayPartsToString(t.text))
      .map((text) => /```ts\n([\s\S]*?)```/.exec(text)?.[1] ?? text);
    out.push({ name: exported.name, examples });
  }
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

const documented = exportedExamples();
const { tmp } = scratch('pma-examples-');
const runs = join(tmp, 'runs');
writeDemoRun(join(runs, 'exp7'));
const pmaUrl = pathToFileURL(join(ROOT, 'dist', 'index.js')).href;

describe('the library API', () => {
  it('exports functions and classes, each with an @example', () => {
    expect(documented.map((d) => d.name)).toEqual(
      expect.arrayContaining(['merge', 'plan', 'inspect', 'verify', 'analyze', 'watchRun', 'PmaError']),
    );
    expect(documented.filter((d) => d.examples.length === 0).map((d) => d.name)).toEqual([]);
  });

  for (const { name, examples } of documented) {
    examples.forEach((code, i) => {
      it(`the example of ${name}${examples.length > 1 ? ` (${i + 1})` : ''} runs`, () => {
        const dir = join(tmp, `${name}-${i}`);
        mkdirSync(dir);
        symlinkSync(runs, join(dir, 'runs'));
        writeFileSync(join(dir, 'example.mjs'), code.replaceAll(`from 'pma'`, `from '${pmaUrl}'`));
        const r = spawnSync(process.execPath, ['example.mjs'], { cwd: dir, encoding: 'utf8', timeout: 60_000 });
        expect(r.status, `${code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`).toBe(0);
        expect(r.stdout.trim().length, 'an example shows what it got').toBeGreaterThan(0);
      });
    });
  }
});
