// pma bench through the CLI, as a user runs it: a tiny generated series, given inputs, bad options.
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { formatSuiteReport, runSuite } from '../../src/bench/index.js';
import type { MergeBreakdown } from '../../src/index.js';
import { pma } from '../helpers/cli.js';
import { writeCheckpoint, type TensorSpec } from '../helpers/safetensors.js';

let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'pma-bench-cli-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

interface Row {
  threads: number;
  io: string;
  kernel: string;
  medianSeconds: number;
  inputGBps: number;
  ratioToFloor: number;
  ratioToMax: number;
  wallMs: number[];
  breakdowns: MergeBreakdown[];
  breakdown: MergeBreakdown;
}
interface Result {
  tool: string;
  machine: {
    cores: number;
    memoryGiB: number;
    cpuModel: string;
    avx2: boolean;
    avx512f: boolean;
    filesystem: string;
    node: string;
    pmaKernels: string[];
  };
  params: { runs: number; threads: number[]; io: string[]; outDtype: string };
  data: {
    source: string;
    checkpoints: { path: string }[];
    outputFiles: number;
    inputTensorBytes: number;
    inputFileBytes: number;
    outputFileBytes: number;
    series: { inputs: number; sizeBytes: number; dtype: string } | null;
  };
  ceilings: {
    read: { seconds: number; gbPerSecond: number };
    writeFsync: { seconds: number; gbPerSecond: number };
    writeDirect: { seconds: number; gbPerSecond: number; bytes: number } | null;
    floorWrite: 'direct' | 'fsync';
    floorSeconds: number;
    maxSeconds: number;
  };
  merges: Row[];
  keptInputs: boolean;
}

function checkMeasurements(r: Result): void {
  expect(r.tool).toBe('pma bench');
  expect(r.machine.cores).toBeGreaterThan(0);
  expect(r.machine.memoryGiB).toBeGreaterThan(0);
  expect(typeof r.machine.cpuModel).toBe('string');
  expect(typeof r.machine.avx2).toBe('boolean');
  expect(typeof r.machine.avx512f).toBe('boolean');
  expect(r.machine.filesystem).not.toBe('');
  expect(r.machine.node).toBe(process.version);
  expect(r.machine.pmaKernels).toContain('scalar');
  for (const c of [r.ceilings.read, r.ceilings.writeFsync]) {
    expect(c.seconds).toBeGreaterThan(0);
    expect(c.gbPerSecond).toBeGreaterThan(0);
  }
  // The floor's write is the faster of the O_DIRECT write (of whole 4 MiB blocks, scaled to the
  // output's bytes) and the write + fsync.
  const c = r.ceilings;
  const direct = c.writeDirect ? (c.writeDirect.seconds * r.data.outputFileBytes) / c.writeDirect.bytes : Infinity;
  expect(c.floorWrite).toBe(direct < c.writeFsync.seconds ? 'direct' : 'fsync');
  const write = Math.min(direct, c.writeFsync.seconds);
  expect(c.floorSeconds).toBeCloseTo(c.read.seconds + write, 9);
  expect(c.maxSeconds).toBeCloseTo(Math.max(c.read.seconds, write), 9);
  expect(r.merges.length).toBe(r.params.threads.length * r.params.io.length);
  for (const m of r.merges) {
    expect(m.medianSeconds).toBeGreaterThan(0);
    expect(m.inputGBps).toBeGreaterThan(0);
    expect(m.ratioToFloor).toBeCloseTo(m.medianSeconds / r.ceilings.floorSeconds, 9);
    expect(m.ratioToMax).toBeCloseTo(m.medianSeconds / r.ceilings.maxSeconds, 9);
    expect(m.wallMs.length).toBe(r.params.runs);
    expect(m.breakdowns.length).toBe(r.params.runs);
    // The merge's own wall time, within the bench's around it.
    expect(m.breakdown.wall * 1000).toBeLessThanOrEqual(Math.max(...m.wallMs) + 1);
    expect(m.breakdown.engine.total).toBeGreaterThan(0);
    expect(r.machine.pmaKernels).toContain(m.kernel);
  }
}

/** Every file under dir with its size and mtime: what a run must leave alone. */
function snapshot(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .map((e) => join(e.parentPath, e.name))
    .map((p) => `${p} ${statSync(p).size} ${statSync(p).mtimeMs}`)
    .sort();
}

describe('pma bench', () => {
  it('generates a series, measures the ceilings and the merges, and prints JSON', () => {
    const dir = join(tmp, 'gen');
    const r = pma(['bench', '--size', '8MB', '--inputs', '3', '--runs', '1', '--threads', '1', '--json', '--dir', dir]);
    expect(r.stderr).toContain('generating 3 x 8MB bf16');
    expect(r.status, r.stderr).toBe(0);
    const res = JSON.parse(r.stdout) as Result;
    checkMeasurements(res);
    expect(res.params).toMatchObject({ runs: 1, threads: [1], io: ['pread'], outDtype: 'keep' });
    expect(res.data.source).toBe('generated');
    expect(res.data.series).toMatchObject({ inputs: 3, sizeBytes: 8e6, dtype: 'bf16' });
    expect(res.data.checkpoints.length).toBe(3);
    // The model is sized to --size within a few KB per checkpoint.
    expect(Math.abs(res.data.inputTensorBytes - 3 * 8e6)).toBeLessThan(3 * 64e3);
    expect(res.data.outputFileBytes).toBeGreaterThan(8e6 - 64e3);
    // An explicit --dir keeps the series as a cache; the output and the scratch file are gone.
    expect(res.keptInputs).toBe(true);
    expect(readdirSync(dir).sort()).toEqual(['inputs.json', 'run']);
    expect(readdirSync(join(dir, 'run')).sort()).toEqual(['checkpoint-1000', 'checkpoint-2000', 'checkpoint-3000']);
  });

  it('prints a report with the machine, the ceilings and the table', () => {
    const dir = join(tmp, 'gen'); // the cached series of the test above, when it ran
    const r = pma([
      'bench',
      '--size',
      '8MB',
      '--inputs',
      '3',
      '--runs',
      '1',
      '--threads',
      '1',
      '--io',
      'pread,mmap',
      '--out-dtype',
      'f32',
      '--quiet',
      '--dir',
      dir,
    ]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(
      /^machine: .*\d+ cores, .* GiB RAM, avx2 (yes|no), avx512f (yes|no) \(pma kernels: .*\); work dir on \S+/m,
    );
    expect(r.stdout).toMatch(/^ceilings: read \(cat > \/dev\/null\) [\d.]+ s = [\d.]+ GB\/s; write \+ fsync [\d.]+ s/m);
    expect(r.stdout).toMatch(
      /; floor = read \+ (O_DIRECT write|write\+fsync) = [\d.]+ s, the larger of the two [\d.]+ s$/m,
    );
    expect(r.stdout).toContain(
      '| threads | io | engine | median s | min s | max s | input GB/s | x floor | x max(read, write) |',
    );
    // Without --breakdown, no breakdown table.
    expect(r.stdout).not.toContain('where the time went');
    expect(r.stdout).toMatch(/^\| 1 \| pread \| \w+ \| [\d.]+ \|/m);
    expect(r.stdout).toMatch(/^\| 1 \| mmap \| \w+ \| [\d.]+ \|/m);
    expect(r.stdout).toContain('output dtype f32');
  });

  it('prints where the time went with --breakdown', () => {
    const dir = join(tmp, 'gen'); // the cached series of the first test, when it ran
    const args = ['bench', '--size', '8MB', '--inputs', '3', '--runs', '1', '--threads', '1', '--breakdown', '-q'];
    const r = pma([...args, '--dir', dir]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain('where the time went');
    expect(r.stdout).toContain('| threads | io | wall s | plan s | run s | finish s | engine s (threads) | read |');
    const row = /^\| 1 \| pread \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|/m.exec(r.stdout);
    expect(row, r.stdout).not.toBeNull();
    const [wall, plan, run, finish, engine] = row!.slice(1).map(Number) as [number, number, number, number, number];
    expect(plan + run + finish).toBeLessThanOrEqual(wall + 0.003); // rounding of each to 1 ms
    expect(engine).toBeGreaterThan(0);
  });

  it("npm run bench's report: where the time went for every row of its table", async () => {
    // The suite of bench/merge.bench.js, two tiny cases: one with two io modes, one sharded.
    const series = { inputs: 2, sizeBytes: 8e6, dtype: 'bf16' as const };
    const r = await runSuite(
      [
        { series, outDtype: 'keep', threads: [1], io: ['pread', 'mmap'], runs: 1 },
        { series, outDtype: 'keep', threads: [1], io: ['pread'], runs: 1, maxShardSize: 2e6 },
      ],
      { dir: join(tmp, 'suite') },
    );
    const report = formatSuiteReport(r);
    const table = report.slice(report.indexOf('where the time went, row by row'));
    const rows = table.split('\n').filter((l) => l.startsWith('| 2 x 8MB bf16 |'));
    expect(rows.map((l) => l.split(' | ').slice(1, 4).join(' | '))).toEqual([
      'keep (bf16) | 1 | pread',
      'keep (bf16) | 1 | mmap',
      'keep (bf16), 5 files | 1 | pread',
    ]);
    for (const [i, l] of rows.entries()) {
      const wall = Number(l.split(' | ')[4]);
      const m = r.cases.flatMap((c) => c.merges)[i] as { breakdown: MergeBreakdown };
      expect(wall).toBeCloseTo(m.breakdown.wall, 3);
    }
    rmSync(join(tmp, 'suite'), { recursive: true });
  });

  it('benchmarks given checkpoints without writing beside them', () => {
    const run = join(tmp, 'run');
    const specs: TensorSpec[] = [
      { name: 'model.embed_tokens.weight', dtype: 'BF16', shape: [256, 64] },
      { name: 'model.layers.0.mlp.up_proj.weight', dtype: 'F16', shape: [64, 128] },
      { name: 'model.norm.weight', dtype: 'F32', shape: [64] },
      { name: 'model.position_ids', dtype: 'I64', shape: [8] },
    ];
    for (const [i, step] of [100, 200, 300].entries())
      writeCheckpoint(join(run, `checkpoint-${step}`), specs, step, { shards: i === 1 ? 2 : 1 });
    const before = snapshot(run);
    const dir = join(tmp, 'given-out');
    const r = pma(['bench', run, '--last', '2', '--runs', '1', '--threads', '1,2', '--json', '--dir', dir]);
    expect(r.status, r.stderr).toBe(0);
    const res = JSON.parse(r.stdout) as Result;
    checkMeasurements(res);
    expect(res.data.source).toBe('inputs');
    expect(res.data.series).toBeNull();
    expect(res.data.checkpoints.map((c) => c.path)).toEqual([join(run, 'checkpoint-200'), join(run, 'checkpoint-300')]);
    expect(res.merges.map((m) => m.threads)).toEqual([1, 2]);
    expect(res.keptInputs).toBe(false);
    expect(r.stderr).not.toContain('generating');
    expect(res.data.outputFiles).toBe(1);
    // --max-shard-size: the merges write (and hash) several files, as pma merge would.
    const sharded = pma([
      'bench',
      run,
      '--runs',
      '1',
      '--threads',
      '1',
      '--max-shard-size',
      '40000',
      '--json',
      '--dir',
      dir,
    ]);
    expect(sharded.status, sharded.stderr).toBe(0);
    expect((JSON.parse(sharded.stdout) as Result).data.outputFiles).toBe(2);
    // Nothing written in or beside the inputs; nothing left in --dir.
    expect(snapshot(run)).toEqual(before);
    expect(readdirSync(tmp).filter((n) => !['gen', 'given-out', 'run'].includes(n))).toEqual([]);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('--process times whole pma merge processes, with the same options as the merges in process', () => {
    const run = join(tmp, 'process-run');
    const specs: TensorSpec[] = [
      { name: 'model.embed_tokens.weight', dtype: 'BF16', shape: [256, 64] },
      { name: 'model.norm.weight', dtype: 'F32', shape: [64] },
    ];
    for (const step of [100, 200, 300]) writeCheckpoint(join(run, `checkpoint-${step}`), specs, step);
    const args = ['--runs', '1', '--threads', '2', '--max-shard-size', '20000', '--out-dtype', 'f32', '--json'];
    const r = pma(['bench', run, '--last', '2', ...args, '--process', '--write', 'buffered', '--dir', join(tmp, 'p')]);
    expect(r.status, r.stderr).toBe(0);
    const res = JSON.parse(r.stdout) as Result & { params: { process: boolean; write: string } };
    checkMeasurements(res);
    expect(res.params).toMatchObject({ process: true, write: 'buffered' });
    expect(res.data.checkpoints.map((c) => c.path)).toEqual([join(run, 'checkpoint-200'), join(run, 'checkpoint-300')]);
    expect(res.data.outputFiles).toBeGreaterThan(1);
    // The process's wall time holds Node's start and the merge's own time (its --json `seconds`).
    const m = res.merges[0] as Row & { libraryElapsedMs: number[] };
    expect(m.wallMs[0]).toBeGreaterThan(m.libraryElapsedMs[0] as number);
    const report = pma(['bench', run, '--last', '2', '--runs', '1', '--threads', '2', '--process', '-q']);
    expect(report.status, report.stderr).toBe(0);
    expect(report.stdout).toContain('each merge a whole `pma merge --json` process, its start included');
  });

  it('refuses bad options with exit status 2 and the one message format, before any work', () => {
    const dir = join(tmp, 'never');
    const cases: [string[], string][] = [
      [['--runs', '0'], 'invalid --runs: expected an integer from 1 to 1000, got "0"'],
      [['--threads', '1,x'], 'invalid --threads: expected an integer from 1 to 1024, got "x"'],
      [['--io', 'pread,aio'], 'invalid --io: expected one of pread, mmap, got "aio"'],
      [['--write', 'async'], 'invalid --write: expected one of auto, buffered, direct, got "async"'],
      [['--size', 'big'], 'invalid --size: expected a size such as 5GB, 500MB or 2GiB, got "big"'],
      [['--inputs', '1'], 'invalid --inputs: expected an integer from 2 to 1000, got "1"'],
      [['--dtype', 'f8'], 'invalid --dtype: expected one of bf16, f16, f32, got "f8"'],
      [['--out-dtype', 'int8'], 'invalid --out-dtype: expected one of keep, bf16, f16, f32, got "int8"'],
      [
        ['--max-shard-size', 'huge'],
        'invalid --max-shard-size: expected a size such as 5GB, 500MB or 2GiB, got "huge"',
      ],
      [[join(tmp, 'run'), '--size', '1GB'], 'invalid --size: expected no value with explicit inputs'],
      [['--frobnicate'], "Unknown option '--frobnicate'"],
    ];
    for (const [args, message] of cases) {
      const r = pma(['bench', ...args, '--dir', dir]);
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr).toContain('pma: error [E_USAGE]: ');
      expect(r.stderr).toContain(message);
      expect(r.stdout).toBe('');
    }
    expect(existsSync(dir)).toBe(false);
  });

  it('has a help with examples, listed in the main help', () => {
    const h = pma(['bench', '--help']);
    expect(h.status).toBe(0);
    expect(h.stdout).toContain('Usage: pma bench');
    expect(h.stdout).toContain('Examples:');
    expect(h.stdout).toContain('--out-dtype');
    const m = pma(['--help']);
    expect(m.stdout).toContain('pma bench');
  });
});
