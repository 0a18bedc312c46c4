#!/usr/bin/env node
// This checkout's merge against the same merge at another commit, interleaved round by round on
// the same inputs, so a slow spell of the machine hits both alike. Builds the other commit (CPU
// variant) in a temporary git worktree that shares this checkout's node_modules (or installs its
// own when its package.json asks for other packages).
//
//   node bench/against-commit.bench.js <commit> [--inputs RUN_DIR] [--runs 7] [--threads 2] [--plan | --analyze]
//     [--write direct]
//
// --plan compares plan() instead of merge(): the planning of a series with many tensors;
// --analyze compares analyze(). --process runs each as a whole `pma` process (pma merge, pma merge
// --dry-run, pma analyze), as a user does: the process's start, and a fresh process's memory.
//
// Inputs default to the series `npm run bench` or `pma bench --dir .bench-data` left in .bench-data/run.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const ROOT = join(import.meta.dirname, '..');
const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    runs: { type: 'string', default: '7' },
    threads: { type: 'string', default: '2' },
    inputs: { type: 'string' },
    plan: { type: 'boolean', default: false },
    analyze: { type: 'boolean', default: false },
    process: { type: 'boolean', default: false },
    write: { type: 'string' },
  },
});
const commit = positionals[0];
if (!commit) {
  console.error('usage: node bench/against-commit.bench.js <commit> [--inputs RUN_DIR] [--runs 7] [--threads 2]');
  process.exit(2);
}
const inputs = values.inputs ?? join(ROOT, '.bench-data', 'run');
if (!existsSync(inputs)) {
  console.error(`no inputs at ${inputs}: run pma bench --dir .bench-data --keep first, or pass --inputs`);
  process.exit(2);
}
const tree = join(mkdtempSync(join(tmpdir(), 'pma-against-')), 'tree');
const out = join(ROOT, '.bench-data', 'against-out');
const run = (cmd, args, cwd, env = {}) =>
  execFileSync(cmd, args, { cwd, stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, ...env } });
try {
  run('git', ['worktree', 'add', '--detach', tree, commit], ROOT);
  // This checkout's node_modules where the other commit needs the same packages; its own (npm ci,
  // from the registry) where not, e.g. before the chunk threads replaced piscina.
  const deps = (root) => {
    const p = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
    return JSON.stringify([p.dependencies, p.devDependencies]);
  };
  if (deps(tree) === deps(ROOT)) symlinkSync(join(ROOT, 'node_modules'), join(tree, 'node_modules'));
  else run('npm', ['ci', '--ignore-scripts', '--no-audit', '--no-fund'], tree);
  const build = existsSync(join(tree, 'scripts', 'build-native.mjs'))
    ? () =>
        run(process.execPath, ['scripts/build-native.mjs'], tree, {
          PMA_CUDA: '0',
          npm_config_nodedir: process.env.npm_config_nodedir ?? '/usr',
        })
    : () => run('npm', ['run', 'install'], tree);
  build();
  run('npx', ['tsc', '-p', 'tsconfig.json'], tree);
  if (existsSync(join(tree, 'scripts', 'bundle-cli.mjs'))) run(process.execPath, ['scripts/bundle-cli.mjs'], tree);
  const other = await import(join(tree, 'dist', 'index.js'));
  const here = await import(join(ROOT, 'dist', 'index.js'));
  const what = values.plan ? 'plan' : values.analyze ? 'analyze' : 'merge';
  const opts = what === 'merge' ? { inputs, out, threads: Number(values.threads) } : { inputs };
  if (what === 'analyze') opts.threads = Number(values.threads);
  if (what === 'merge' && values.write) opts.write = values.write;
  const threads = String(values.threads);
  const cliArgs = {
    merge: [
      ...['merge', inputs, '--out', out, '--threads', threads, '--on-nonfinite', 'warn', '-q'],
      ...(values.write ? ['--write', values.write] : []),
    ],
    plan: ['merge', inputs, '--dry-run', '-q'],
    analyze: ['analyze', inputs, '--threads', threads],
  }[what];
  /** A whole pma process of the build in `root`: its `pma` command (package.json's bin). */
  const bin = (root) => join(root, JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).bin.pma);
  const cli = (root) => async () =>
    execFileSync(process.execPath, [bin(root), ...cliArgs], {
      stdio: ['ignore', 'ignore', 'inherit'],
      maxBuffer: 1 << 30,
    });
  const variants = [
    [`${commit}`, values.process ? cli(tree) : other[what]],
    ['this checkout', values.process ? cli(ROOT) : here[what]],
  ];
  const times = variants.map(() => []);
  for (let r = 0; r < Number(values.runs); r++) {
    for (const [i, [, merge]] of variants.entries()) {
      rmSync(out, { recursive: true, force: true });
      const t = performance.now();
      // Inputs with NaN/Inf (none in a generated series) are merged by both.
      await merge(what === 'merge' ? { ...opts, onNonfinite: 'warn' } : opts);
      times[i].push((performance.now() - t) / 1000);
    }
  }
  const median = (a) => [...a].sort((x, y) => x - y)[a.length >> 1];
  console.log(
    `${values.process ? `pma ${cliArgs.join(' ')}` : `${what}() of ${inputs}`}${values.plan ? '' : `, ${values.threads} threads`}, ${values.runs} interleaved rounds\n`,
  );
  console.log('| build | median s | min s | max s |');
  console.log('|:--|--:|--:|--:|');
  for (const [i, [name]] of variants.entries()) {
    console.log(
      `| ${name} | ${median(times[i]).toFixed(3)} | ${Math.min(...times[i]).toFixed(3)} | ${Math.max(...times[i]).toFixed(3)} |`,
    );
  }
  console.log(`\nthis checkout / ${commit}: ${(median(times[1]) / median(times[0])).toFixed(2)}x`);
} finally {
  rmSync(out, { recursive: true, force: true });
  try {
    run('git', ['worktree', 'remove', '--force', tree], ROOT);
  } catch {
    rmSync(tree, { recursive: true, force: true });
  }
}
