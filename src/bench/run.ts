/**
 * The merge benchmark behind `pma bench` and `npm run bench`: merge time against this machine's
 * own floor (read the inputs once with cat, write the output once with write + fsync), all
 * measured in the same run, interleaved round by round.
 */
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, realpathSync, rmdirSync, statSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { availableParallelism, loadavg, totalmem } from 'node:os';
import { join, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import { combineBreakdowns, type MergeBreakdown } from '../run/breakdown.js';
import { parseDevice, resolveDevice } from '../run/devices.js';
import type { WriteChoice } from '../run/options.js';
import type { OutputDTypeOption } from '../dtypes.js';
import type { Checksum } from '../plan/types.js';
import { PmaError } from '../errors.js';
import { merge, plan as makePlan } from '../merge/merge.js';
import { native, type CpuInfo, type IoMode, type KernelChoice } from '../native.js';
import * as v from '../validate.js';
import { makeDirs } from '../util/fs.js';
import { PACKAGE_ROOT, VERSION } from '../util/package.js';
import {
  catFiles,
  freeBytes,
  machineInfo,
  syncAll,
  timedDirectWrite,
  timedWrite,
  type MachineInfo,
  type WriteTiming,
} from './ceilings.js';
import { resolveBenchOptions, type BenchOptions, type ResolvedBenchOptions } from './options.js';
import {
  ELEMENT_BYTES,
  SHARDS,
  cachedSeries,
  cachedSeriesParams,
  describeSeries,
  generateSeries,
  removeSeries,
  seriesBytes,
  type Series,
  type SeriesArch,
  type SeriesParams,
} from './series.js';

const GB = 1e9;
const WRITE_BUFFER_BYTES = 64 * 2 ** 20;

export interface CeilingsResult {
  /** cat of every input file into /dev/null. */
  read: { seconds: number; bytes: number; gbPerSecond: number; runsMs: number[] };
  /** write() of an output-sized file, then fsync. */
  writeFsync: {
    seconds: number;
    bytes: number;
    gbPerSecond: number;
    runsMs: number[];
    writePartMs: number[];
    fsyncPartMs: number[];
  };
  /** The same write without fsync (page cache only), for reference. */
  writePageCache: { seconds: number; bytes: number; gbPerSecond: number; runsMs: number[] };
  /**
   * An output-sized file written with O_DIRECT and fdatasync'ed (`dd oflag=direct conv=fdatasync`):
   * the disk's write rate; null where the filesystem refuses O_DIRECT.
   */
  writeDirect: { seconds: number; bytes: number; gbPerSecond: number; runsMs: number[] } | null;
  /** The write the floor counts: the faster of writeDirect and writeFsync. */
  floorWrite: 'direct' | 'fsync';
  /** read + that write: the machine's time to read the inputs once and then write the output once. */
  floorSeconds: number;
  /** The larger of the two: what a merge that overlaps its reads and writes perfectly could take. */
  maxSeconds: number;
}

export interface MergeRow {
  threads: number;
  io: IoMode;
  /** The device asked for ('cpu', 'cuda', 'auto', ...). */
  device: string;
  /** The CPU kernel, or the GPUs ('cuda:0') when the merge ran on them. */
  kernel: string;
  medianSeconds: number;
  minSeconds: number;
  maxSeconds: number;
  /** Tensor bytes read (plan.totals.inputBytes) / median seconds, 1 GB = 1e9 bytes. */
  inputGBps: number;
  /** median / floor. */
  ratioToFloor: number;
  /** median / the larger of reading and writing. */
  ratioToMax: number;
  /** Where the time went, every run (MergeResult.breakdown), and the median of each figure. */
  breakdowns: MergeBreakdown[];
  breakdown: MergeBreakdown;
  /** Wall time around merge() (or the whole `pma merge` process, with `process`), every run. */
  wallMs: number[];
  /** The library's own elapsedMs, every run. */
  libraryElapsedMs: number[];
  /** Whether the merge dropped its pages from the page cache (null when the library does not say). */
  droppedCache: boolean | null;
}

export interface CaseData {
  source: 'generated' | 'inputs';
  /** The generated series (null for explicit inputs). */
  series:
    | (SeriesParams & {
        description: string;
        arch: SeriesArch;
        tensorsPerCheckpoint: number;
        shardsPerCheckpoint: number;
        generatedNow: boolean;
        generateSeconds: number | null;
      })
    | null;
  checkpoints: { path: string; step: number | null }[];
  inputFiles: number;
  /** Tensor bytes the merge reads. */
  inputTensorBytes: number;
  /** Bytes of the input files (what cat reads). */
  inputFileBytes: number;
  /** Bytes of the output safetensors files (what the write ceiling writes). */
  outputFileBytes: number;
  outputFiles: number;
  tensors: number;
  outDtype: OutputDTypeOption;
}

/** What one case measures: the merge options of every row, and how many rounds. */
export type CaseParams = Pick<
  ResolvedBenchOptions,
  | 'runs'
  | 'threads'
  | 'io'
  | 'kernel'
  | 'write'
  | 'checksum'
  | 'devices'
  | 'outDtype'
  | 'last'
  | 'maxShardSize'
  | 'process'
>;

export interface CaseResult {
  params: CaseParams;
  data: CaseData;
  loadAverage: { before: number[]; after: number[] };
  ceilings: CeilingsResult;
  merges: MergeRow[];
  /** pread against mmap at each thread count where both were measured. */
  ioComparison: { threads: number; faster: IoMode; percent: number }[];
  notes: string[];
}

export interface BenchResult extends CaseResult {
  tool: 'pma bench';
  version: string;
  date: string;
  command: string | null;
  machine: MachineInfo;
  dir: string;
  /** Whether the generated inputs were kept in dir (a cache for the next run). */
  keptInputs: boolean;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n === 0 ? NaN : n % 2 ? s[(n - 1) / 2]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
};
const secs = (ms: number): number => ms / 1000;

function aborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new PmaError('E_ABORTED', 'the benchmark was aborted');
}

function realOrResolved(p: string): string {
  try {
    return realpathSync(p);
  } catch {
    return p;
  }
}

function inside(child: string, parent: string): boolean {
  return child === parent || child.startsWith(parent.endsWith(sep) ? parent : parent + sep);
}

/** The merge output and the write-ceiling file live in `dir`: refuse a dir in (or holding our paths over) the inputs. */
function checkDirAgainstInputs(dir: string, dirRaw: string, paths: string[]): void {
  const d = realOrResolved(dir);
  const ours = [join(d, 'out'), join(d, 'write-ceiling.tmp')];
  for (const p of paths) {
    const r = realOrResolved(p);
    if (inside(d, r))
      throw v.invalid('dir', `a directory outside the inputs (${p} holds it; the merge output goes there)`, dirRaw);
    if (ours.some((o) => inside(r, o)))
      throw v.invalid('dir', `a directory whose out/ and write-ceiling.tmp are not inputs (${p})`, dirRaw);
  }
}

/** `dir/out` is deleted before every merge: refuse one that is not a pma output (or an empty directory). */
function checkOutDir(outDir: string): void {
  if (!existsSync(outDir)) return;
  let entries: string[] = [];
  try {
    entries = readdirSync(outDir);
  } catch {
    entries = ['?'];
  }
  if (entries.length > 0 && !entries.includes('pma.json')) {
    throw new PmaError(
      'E_OUTPUT',
      `${outDir} exists and is not a pma output; pma bench would delete it (choose another --dir or remove it)`,
      { file: outDir },
    );
  }
}

function checkFreeSpace(dir: string, needBytes: number, what: string): void {
  const free = freeBytes(dir);
  if (free !== null && free < needBytes) {
    throw new PmaError(
      'E_NOSPACE',
      `pma bench needs about ${(needBytes / GB).toFixed(1)} GB free in ${dir} (${what}), only ${(free / GB).toFixed(1)} GB are free; choose another --dir or a smaller --size / --inputs`,
    );
  }
}

interface Ctx {
  dir: string;
  cpu: CpuInfo;
  log: (msg: string) => void;
  signal: AbortSignal | undefined;
}

/** Generates (or reuses) a series in ctx.dir, after checking the disk has room for it and the output. */
async function prepareSeries(
  ctx: Ctx,
  p: SeriesParams,
  outDtype: OutputDTypeOption,
  regenerate: boolean,
): Promise<Series> {
  const bytes = seriesBytes(p);
  const outWidth = outDtype === 'keep' ? ELEMENT_BYTES[p.dtype] : ELEMENT_BYTES[outDtype];
  const outputBytes = (bytes.tensorBytesPerCheckpoint * outWidth) / ELEMENT_BYTES[p.dtype];
  const cached = regenerate ? null : await cachedSeries(ctx.dir, p);
  if (!cached) {
    // The series there now (another one) is deleted first.
    const old = cachedSeriesParams(ctx.dir);
    const freed = old ? seriesBytes(old).fileBytes : 0;
    checkFreeSpace(
      ctx.dir,
      bytes.fileBytes + outputBytes + 2 * WRITE_BUFFER_BYTES - freed,
      `${describeSeries(p)} inputs and a ${(outputBytes / GB).toFixed(2)} GB output`,
    );
  }
  return (
    cached ?? generateSeries(ctx.dir, p, { regenerate, log: ctx.log, ...(ctx.signal ? { signal: ctx.signal } : {}) })
  );
}

/**
 * Measures one case: plans the merge of `inputs` to read its files and sizes, then `runs` rounds
 * of: cat of the inputs, a write (page cache) and a write + fsync of an output-sized file, and one
 * merge per threads x io combination. The output and the scratch file are deleted at the end.
 */
async function measureCase(
  ctx: Ctx,
  inputs: string | string[],
  params: CaseParams,
  series: Series | null,
): Promise<CaseResult> {
  const { dir, log } = ctx;
  const outDir = join(dir, 'out');
  const scratch = join(dir, 'write-ceiling.tmp');
  checkOutDir(outDir);
  await rm(outDir, { recursive: true, force: true });
  await rm(scratch, { force: true });
  const notes: string[] = [];
  try {
    const planOpts = {
      inputs,
      dtype: params.outDtype,
      ...(params.last !== null ? { last: params.last } : {}),
      ...(params.maxShardSize !== null ? { maxShardSize: params.maxShardSize } : {}),
    };
    const p = await makePlan(planOpts);
    const inputPaths = [...new Set(p.chunks.flatMap((c) => c.inputs))];
    const inputFileBytes = inputPaths.reduce((s, f) => s + statSync(f).size, 0);
    const inputBytes = p.totals.inputBytes;
    const outputFileBytes = p.outputs.reduce((s, f) => s + f.size, 0);
    if (!series)
      checkFreeSpace(dir, outputFileBytes + 2 * WRITE_BUFFER_BYTES, `a ${(outputFileBytes / GB).toFixed(2)} GB output`);
    const mem = totalmem();
    if (inputFileBytes + outputFileBytes > 0.8 * mem) {
      notes.push(
        `the inputs and output (${((inputFileBytes + outputFileBytes) / GB).toFixed(1)} GB) do not fit in the page cache ` +
          `(${(mem / 2 ** 30).toFixed(1)} GiB of memory): reads come from the disk, for cat as for the merges`,
      );
    }
    const data: CaseData = {
      source: series ? 'generated' : 'inputs',
      series: series
        ? {
            ...series.params,
            description: describeSeries(series.params),
            arch: series.arch,
            tensorsPerCheckpoint: series.tensors,
            shardsPerCheckpoint: SHARDS,
            generatedNow: series.generatedNow,
            generateSeconds: series.generatedNow ? series.generateSeconds : null,
          }
        : null,
      checkpoints: p.checkpoints.map((c) => ({ path: c.path, step: c.step })),
      inputFiles: inputPaths.length,
      inputTensorBytes: inputBytes,
      inputFileBytes,
      outputFileBytes,
      outputFiles: p.outputs.length,
      tensors: p.totals.tensors,
      outDtype: params.outDtype,
    };
    aborted(ctx.signal);

    // Warm the page cache (untimed) so that every measurement reads from memory where it fits;
    // one untimed output-sized write + fsync too: the first one after a while is slow on some disks.
    const buf = Buffer.alloc(Math.min(WRITE_BUFFER_BYTES, Math.max(1, outputFileBytes)), 0x3c);
    log(`warming up: one untimed read of every input, one untimed write + fsync ...`);
    catFiles(inputPaths);
    syncAll();
    timedWrite(scratch, outputFileBytes, buf, true);
    syncAll();

    // Interleaved, one round of everything at a time, so that a slow spell of the machine (other
    // load, writeback, a noisy neighbour) falls on all of them alike.
    const combos = params.devices.flatMap((device) =>
      params.threads.flatMap((threads) =>
        params.io.map((io) => ({
          threads,
          io,
          device,
          wallMs: [] as number[],
          libraryElapsedMs: [] as number[],
          kernel: '',
          droppedCache: null as boolean | null,
          breakdowns: [] as MergeBreakdown[],
        })),
      ),
    );
    const label = (c: (typeof combos)[number]) =>
      `${c.threads}t/${c.io}${params.devices.length > 1 ? `/${c.device}` : ''}`;
    const readMs: number[] = [];
    const writeFsync: WriteTiming[] = [];
    const writeCache: WriteTiming[] = [];
    const writeDirect: number[] = [];
    let direct = true;
    const loadBefore = loadavg();
    log(
      `measuring ${params.runs} round(s) of: cat ${inputPaths.length} files (${(inputFileBytes / GB).toFixed(2)} GB) > /dev/null; ` +
        `write ${(outputFileBytes / GB).toFixed(2)} GB with O_DIRECT + fdatasync (dd), and + fsync; the same write without fsync; ` +
        `merge with ${combos.map(label).join(', ')} ...`,
    );
    for (let round = 0; round < params.runs; round++) {
      aborted(ctx.signal);
      readMs.push(catFiles(inputPaths));
      // Memory that has stayed free for a second or two can be slow to touch again (in a VM whose
      // free pages go back to the host): an untimed write first, so that the timed ones, like
      // every merge, write into memory freed a moment before.
      timedWrite(scratch, outputFileBytes, buf, false);
      syncAll(); // also flushes the unsynced file's deletion
      writeCache.push(timedWrite(scratch, outputFileBytes, buf, false));
      syncAll();
      writeFsync.push(timedWrite(scratch, outputFileBytes, buf, true));
      syncAll();
      if (direct) {
        const ms = timedDirectWrite(scratch, outputFileBytes);
        if (ms === null) direct = false;
        else writeDirect.push(ms);
        syncAll();
      }
      for (const c of combos) {
        aborted(ctx.signal);
        await rm(outDir, { recursive: true, force: true });
        syncAll(); // the previous output's deletion is flushed outside the timing
        const t0 = performance.now();
        const mergeOpts = {
          ...planOpts,
          out: outDir,
          threads: c.threads,
          io: c.io,
          kernel: params.kernel,
          write: params.write,
          checksum: params.checksum,
          device: c.device,
          ...(ctx.signal ? { signal: ctx.signal } : {}),
        };
        const r = params.process ? await mergeProcess(mergeOpts) : await merge(mergeOpts);
        c.wallMs.push(performance.now() - t0);
        c.libraryElapsedMs.push(r.elapsedMs);
        c.breakdowns.push(r.breakdown);
        c.kernel = r.device === 'cpu' ? r.kernel : r.device;
        const dropped = (r as { droppedCache?: unknown }).droppedCache;
        if (typeof dropped === 'boolean') c.droppedCache = dropped;
        for (const f of p.outputs) {
          const size = statSync(join(outDir, f.name)).size;
          if (size !== f.size)
            throw new PmaError('E_INTERNAL', `${join(outDir, f.name)} is ${size} bytes, the plan says ${f.size}`);
        }
      }
      await rm(outDir, { recursive: true, force: true });
      const last = (xs: number[]) => secs(xs[xs.length - 1]!).toFixed(2);
      log(
        `  round ${round + 1}/${params.runs}: read ${last(readMs)} s, write+fsync ${secs(writeFsync[writeFsync.length - 1]!.ms).toFixed(2)} s, ` +
          combos.map((c) => `${label(c)} ${last(c.wallMs)} s`).join(', '),
      );
    }
    const loadAfter = loadavg();

    const readS = secs(median(readMs));
    const writeS = secs(median(writeFsync.map((x) => x.ms)));
    const writeCacheS = secs(median(writeCache.map((x) => x.ms)));
    // dd writes whole 4 MiB blocks: its rate is of the bytes it wrote.
    const ddBytes = Math.max(1, Math.ceil(outputFileBytes / 2 ** 22)) * 2 ** 22;
    const directS = direct && writeDirect.length > 0 ? secs(median(writeDirect)) : null;
    // The floor's write is the machine's faster way to put an output-sized file on its disk: the
    // O_DIRECT write measures the disk without the page cache, which some VMs are slow to
    // allocate; the write + fsync lets the kernel keep several writes in flight.
    const directOfOutput = directS === null ? null : (directS * outputFileBytes) / ddBytes;
    const floorWrite = directOfOutput !== null && directOfOutput < writeS ? 'direct' : 'fsync';
    const floorWriteS = floorWrite === 'direct' ? (directOfOutput as number) : writeS;
    const floorS = readS + floorWriteS;
    const maxS = Math.max(readS, floorWriteS);
    if (directS === null) notes.push('O_DIRECT is refused in the work directory: the floor counts write + fsync');
    const ceilings: CeilingsResult = {
      read: { seconds: readS, bytes: inputFileBytes, gbPerSecond: inputFileBytes / GB / readS, runsMs: readMs },
      writeFsync: {
        seconds: writeS,
        bytes: outputFileBytes,
        gbPerSecond: outputFileBytes / GB / writeS,
        runsMs: writeFsync.map((x) => x.ms),
        writePartMs: writeFsync.map((x) => x.writeMs),
        fsyncPartMs: writeFsync.map((x) => x.fsyncMs),
      },
      writePageCache: {
        seconds: writeCacheS,
        bytes: outputFileBytes,
        gbPerSecond: outputFileBytes / GB / writeCacheS,
        runsMs: writeCache.map((x) => x.ms),
      },
      writeDirect:
        directS === null
          ? null
          : { seconds: directS, bytes: ddBytes, gbPerSecond: ddBytes / GB / directS, runsMs: writeDirect },
      floorWrite,
      floorSeconds: floorS,
      maxSeconds: maxS,
    };
    const merges: MergeRow[] = combos.map((c) => {
      const s = secs(median(c.wallMs));
      return {
        threads: c.threads,
        io: c.io,
        device: c.device,
        kernel: c.kernel,
        medianSeconds: s,
        minSeconds: secs(Math.min(...c.wallMs)),
        maxSeconds: secs(Math.max(...c.wallMs)),
        inputGBps: inputBytes / GB / s,
        ratioToFloor: s / floorS,
        ratioToMax: s / maxS,
        breakdowns: c.breakdowns,
        breakdown: combineBreakdowns(c.breakdowns, median),
        wallMs: c.wallMs,
        libraryElapsedMs: c.libraryElapsedMs,
        droppedCache: c.droppedCache,
      };
    });
    if (merges.some((m) => m.droppedCache))
      notes.push(
        'the merge dropped its inputs and output from the page cache (pma page-cache auto: the inputs exceed half of the memory)',
      );
    const ioComparison: CaseResult['ioComparison'] = [];
    for (const threads of params.threads) {
      const pr = merges.find((m) => m.threads === threads && m.io === 'pread' && m.device === 'cpu');
      const mm = merges.find((m) => m.threads === threads && m.io === 'mmap' && m.device === 'cpu');
      if (pr && mm) {
        const faster: IoMode = pr.medianSeconds <= mm.medianSeconds ? 'pread' : 'mmap';
        const [fast, slow] = faster === 'pread' ? [pr, mm] : [mm, pr];
        ioComparison.push({ threads, faster, percent: (slow.medianSeconds / fast.medianSeconds - 1) * 100 });
      }
    }
    return {
      params,
      data,
      loadAverage: { before: loadBefore, after: loadAfter },
      ceilings,
      merges,
      ioComparison,
      notes,
    };
  } finally {
    await rm(outDir, { recursive: true, force: true }).catch(() => {});
    await rm(scratch, { force: true }).catch(() => {});
  }
}

/** What the report needs of a merge, from a whole `pma merge --json` process. */
interface ProcessMerge {
  elapsedMs: number;
  breakdown: MergeBreakdown;
  device: string;
  kernel: string;
}

const execFileAsync = promisify(execFile);
/** The `pma` command as installed (package.json's bin: the bundle of scripts/bundle-cli.mjs). */
function installedCli(): string {
  const bin = join(PACKAGE_ROOT, 'dist', 'bin', 'pma.js');
  const built = fileURLToPath(new URL('../cli/main.js', import.meta.url));
  // A bundle older than the modules it was made from would time other code than this build's.
  if (!existsSync(bin) || statSync(bin).mtimeMs < statSync(built).mtimeMs)
    throw new PmaError('E_INTERNAL', `${bin} is missing or older than ${built}: run npm run build:ts`);
  return bin;
}

/** Runs the merge as a user does: `pma merge ... --json` in a process of its own. */
async function mergeProcess(o: {
  inputs: string | string[];
  out: string;
  dtype: OutputDTypeOption;
  last?: number;
  maxShardSize?: number;
  threads: number;
  io: IoMode;
  kernel: KernelChoice;
  write: WriteChoice;
  checksum: Checksum;
  device: string;
  signal?: AbortSignal;
}): Promise<ProcessMerge> {
  const args = [
    installedCli(),
    'merge',
    ...(Array.isArray(o.inputs) ? o.inputs : [o.inputs]),
    ...['--out', o.out, '--dtype', o.dtype, '--threads', String(o.threads), '--io', o.io],
    ...['--kernel', o.kernel, '--write', o.write, '--checksum', o.checksum, '--device', o.device, '--json', '--quiet'],
    ...(o.last !== undefined ? ['--last', String(o.last)] : []),
    ...(o.maxShardSize !== undefined ? ['--max-shard-size', String(o.maxShardSize)] : []),
  ];
  let stdout: string;
  try {
    ({ stdout } = await execFileAsync(process.execPath, args, {
      maxBuffer: 1 << 30,
      ...(o.signal ? { signal: o.signal } : {}),
    }));
  } catch (e) {
    if (o.signal?.aborted) throw new PmaError('E_ABORTED', 'the benchmark was aborted');
    const stderr = (e as { stderr?: string }).stderr ?? String(e);
    throw new PmaError('E_INTERNAL', `pma merge failed in the benchmark: ${stderr.trim()}`);
  }
  const j = JSON.parse(stdout) as { seconds: number; breakdown: MergeBreakdown; device: string; kernel: string };
  return { elapsedMs: j.seconds * 1000, breakdown: j.breakdown, device: j.device, kernel: j.kernel };
}

function checkKernel(cpu: CpuInfo, kernel: KernelChoice): void {
  if (kernel !== 'auto' && !cpu.kernels.includes(kernel)) {
    throw new PmaError(
      'E_UNSUPPORTED',
      `kernel ${kernel} is not supported by this CPU (available: ${cpu.kernels.join(', ')})`,
    );
  }
}

/**
 * `pma bench`: generates a series (or takes the given inputs), measures the read and write
 * ceilings and the merges, and returns the result. Deletes the merge output; deletes the generated
 * inputs unless `keep` or an explicit `dir` (a cache then). Never writes beside explicit inputs.
 *
 * @example
 * ```ts
 * import { formatBenchReport, runBench } from 'pma';
 * const r = await runBench({ size: '4MB', inputs: 2, runs: 1, threads: '1', dir: 'pma-bench' });
 * console.log(formatBenchReport(r));
 * ```
 */
export async function runBench(options: BenchOptions): Promise<BenchResult> {
  const o = resolveBenchOptions(options, availableParallelism());
  const cpu = native().cpuFeatures();
  checkKernel(cpu, o.kernel);
  // A GPU that is not there fails now, not after minutes of generating inputs.
  for (const d of o.devices) resolveDevice(parseDevice(d), undefined, d);
  if (o.paths) {
    for (const p of o.paths)
      if (!existsSync(p)) throw new PmaError('E_INPUT', `input ${p} does not exist`, { file: p });
    checkDirAgainstInputs(o.dir, options.dir ?? o.dir, o.paths);
  }
  const log = options.log ?? (() => {});
  await makeDirs(o.dir);
  const ctx: Ctx = { dir: o.dir, cpu, log, signal: options.signal };
  const machine = machineInfo(o.dir, cpu);
  const keepInputs = o.keep || o.dirGiven;
  try {
    const series = o.series ? await prepareSeries(ctx, o.series, o.outDtype, o.regenerate) : null;
    aborted(options.signal);
    const params: CaseParams = {
      runs: o.runs,
      threads: o.threads,
      io: o.io,
      kernel: o.kernel,
      write: o.write,
      checksum: o.checksum,
      devices: o.devices,
      outDtype: o.outDtype,
      last: o.last,
      maxShardSize: o.maxShardSize,
      process: o.process,
    };
    const c = await measureCase(ctx, series ? series.runDir : o.paths!, params, series);
    return {
      tool: 'pma bench',
      version: VERSION,
      date: new Date().toISOString(),
      command: options.command ?? null,
      machine,
      dir: o.dir,
      keptInputs: series !== null && keepInputs,
      ...c,
    };
  } finally {
    if (o.series && !keepInputs) {
      // Whether it completed or not: a series the run made or reused, in a directory nobody named.
      await removeSeries(o.dir).catch(() => {});
    }
    if (!o.dirGiven) {
      try {
        if (readdirSync(o.dir).length === 0) rmdirSync(o.dir);
      } catch {
        /* gone or not empty */
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Suites: several cases in one run (npm run bench)

export interface SuiteCase {
  series: SeriesParams;
  outDtype: OutputDTypeOption;
  /** Shard the output above this many bytes (several files hashed); null or absent: one file. */
  maxShardSize?: number | null;
  threads: number[];
  io: IoMode[];
  runs: number;
  kernel?: KernelChoice;
  /** Whole `pma merge` processes instead of merge() in this process. */
  process?: boolean;
  /** The checksum of the output (default blake3). */
  checksum?: Checksum;
  /** Printed under the table (e.g. why the size was reduced). */
  note?: string;
}

export interface SuiteCaseResult extends CaseResult {
  note: string | null;
}

export interface SuiteResult {
  tool: 'pma bench suite';
  version: string;
  date: string;
  command: string | null;
  machine: MachineInfo;
  dir: string;
  cases: SuiteCaseResult[];
  notes: string[];
  totalSeconds: number;
}

export interface SuiteOptions {
  /** Where the series (one at a time, kept as a cache), the output and the scratch file go. */
  dir: string;
  regenerate?: boolean;
  log?: (msg: string) => void;
  signal?: AbortSignal;
  command?: string;
  notes?: string[];
}

const seriesKey = (p: SeriesParams) => `${p.inputs}/${p.sizeBytes}/${p.dtype}`;

/**
 * Runs every case with its own inputs and its own floor. Cases sharing a series run together, the
 * series already cached first (one series is on disk at a time); results are in the given order.
 */
export async function runSuite(cases: SuiteCase[], o: SuiteOptions): Promise<SuiteResult> {
  const t0 = performance.now();
  const dir = v.nonEmptyString('dir', o.dir);
  const cpu = native().cpuFeatures();
  for (const c of cases) checkKernel(cpu, c.kernel ?? 'auto');
  await makeDirs(dir);
  const log = o.log ?? (() => {});
  const ctx: Ctx = { dir, cpu, log, signal: o.signal };
  const machine = machineInfo(dir, cpu);
  const groups = new Map<string, number[]>();
  for (const [i, c] of cases.entries()) {
    const k = seriesKey(c.series);
    groups.set(k, [...(groups.get(k) ?? []), i]);
  }
  const cached = cachedSeriesParams(dir);
  const order = [...groups.entries()].sort(
    ([a], [b]) =>
      Number(cached !== null && b === seriesKey(cached)) - Number(cached !== null && a === seriesKey(cached)),
  );
  const results: (SuiteCaseResult | undefined)[] = cases.map(() => undefined);
  let regenerate = o.regenerate ?? false;
  for (const [, idx] of order) {
    for (const i of idx) {
      const c = cases[i]!;
      aborted(o.signal);
      log(
        `\n[${i + 1}/${cases.length}] ${describeSeries(c.series)}, output ${c.outDtype}${c.maxShardSize ? ` in shards of ${c.maxShardSize} bytes` : ''}, threads ${c.threads.join(',')}, io ${c.io.join(',')}, ${c.runs} run(s)`,
      );
      const series = await prepareSeries(ctx, c.series, c.outDtype, regenerate);
      if (series.generatedNow) regenerate = false;
      const params: CaseParams = {
        runs: c.runs,
        threads: c.threads,
        io: c.io,
        kernel: c.kernel ?? 'auto',
        write: 'auto',
        checksum: c.checksum ?? 'blake3',
        devices: ['cpu'],
        outDtype: c.outDtype,
        last: null,
        maxShardSize: c.maxShardSize ?? null,
        process: c.process ?? false,
      };
      results[i] = { ...(await measureCase(ctx, series.runDir, params, series)), note: c.note ?? null };
    }
    regenerate = o.regenerate ?? false;
  }
  return {
    tool: 'pma bench suite',
    version: VERSION,
    date: new Date().toISOString(),
    command: o.command ?? null,
    machine,
    dir,
    cases: results as SuiteCaseResult[],
    notes: o.notes ?? [],
    totalSeconds: secs(performance.now() - t0),
  };
}

// ---------------------------------------------------------------------------------------------
// Reports (Markdown)

const f3 = (x: number) => x.toFixed(3);
const f2 = (x: number) => x.toFixed(2);
const gb = (bytes: number) => `${(bytes / GB).toFixed(bytes >= 10 * GB ? 1 : 2)} GB`;

function machineLine(m: MachineInfo): string {
  return (
    `machine: ${m.cpuModel}, ${m.cores} cores, ${m.memoryGiB} GiB RAM, avx2 ${m.avx2 ? 'yes' : 'no'}, avx512f ${m.avx512f ? 'yes' : 'no'} ` +
    `(pma kernels: ${m.pmaKernels.join(', ')}; best ${m.pmaBestKernel}); work dir on ${m.filesystem} (${m.device}); ${m.platform}; node ${m.node}`
  );
}

function ceilingsLine(c: CeilingsResult): string {
  return (
    `ceilings: read (cat > /dev/null) ${f3(c.read.seconds)} s = ${f2(c.read.gbPerSecond)} GB/s; ` +
    `write + fsync ${f3(c.writeFsync.seconds)} s = ${f2(c.writeFsync.gbPerSecond)} GB/s ` +
    `(write ${f3(secs(median(c.writeFsync.writePartMs)))} s + fsync ${f3(secs(median(c.writeFsync.fsyncPartMs)))} s; ` +
    `page cache only, no fsync: ${f3(c.writePageCache.seconds)} s = ${f2(c.writePageCache.gbPerSecond)} GB/s); ` +
    (c.writeDirect
      ? `O_DIRECT write + fdatasync (dd) ${f3(c.writeDirect.seconds)} s = ${f2(c.writeDirect.gbPerSecond)} GB/s; `
      : 'O_DIRECT refused here; ') +
    `floor = read + ${floorWriteName(c)} = ${f3(c.floorSeconds)} s, the larger of the two ${f3(c.maxSeconds)} s`
  );
}

function floorWriteName(c: CeilingsResult): string {
  return c.floorWrite === 'direct' ? 'O_DIRECT write' : 'write+fsync';
}

/**
 * Where the merges' time went (medians of the runs): the phases' wall seconds, and the seconds
 * of the threads' work, which run side by side.
 */
function breakdownTable(merges: MergeRow[], labels?: string[]): string[] {
  const head = labels ? '| inputs | output ' : '';
  const rule = labels ? '|:--|:--' : '';
  const L = [
    `${head}| threads | io | wall s | plan s | run s | finish s | engine s (threads) | read | scan | compute | write | disk busy s | hash s (threads) | hash read-back | hash wait | fsync s |`,
    `${rule}|--:|:--|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|`,
  ];
  for (const [i, x] of merges.entries()) {
    const b = x.breakdown;
    const e = b.engine;
    L.push(
      `${labels ? `| ${labels[i] ?? ''} ` : ''}| ${x.threads} | ${x.io} | ${f3(b.wall)} | ${f3(b.plan)} | ${f3(b.run)} | ${f3(b.finish)} | ${f3(e.total)} | ` +
        `${f3(e.read)} | ${f3(e.scan)} | ${f3(e.compute)} | ${f3(e.write)} | ${f3(b.disk)} | ${f3(b.hash.update)} | ${f3(b.hash.read)} | ` +
        `${f3(b.hash.wait)} | ${f3(b.fsync)} |`,
    );
  }
  return L;
}

function inputsLine(r: CaseResult): string {
  const d = r.data;
  const what = d.series
    ? `${d.series.description} generated (${d.series.generatedNow ? `now, in ${d.series.generateSeconds?.toFixed(1)} s` : 'cached'}), ` +
      `${d.series.shardsPerCheckpoint} shards and ${d.series.tensorsPerCheckpoint} tensors each (hidden ${d.series.arch.hidden}, ` +
      `${d.series.arch.layers} layers x ${d.series.arch.experts} experts, vocab ${d.series.arch.vocab})`
    : `${d.checkpoints.length} checkpoints given (${d.checkpoints[0]?.path ?? ''} ... ${d.checkpoints[d.checkpoints.length - 1]?.path ?? ''}), ` +
      `${d.inputFiles} files, ${d.tensors} tensors each`;
  return (
    `inputs: ${what}; the merge reads ${gb(d.inputTensorBytes)} and writes ${gb(d.outputFileBytes)} ` +
    `(output dtype ${d.outDtype}, ${d.outputFiles} file(s), --write ${r.params.write}, --checksum ${r.params.checksum}); ${r.params.runs} run(s) each, medians`
  );
}

/** What a report shows besides the table. */
export interface BenchReportOptions {
  /** Where the merges' time went (`pma bench --breakdown`). */
  breakdown?: boolean;
}

/** The report of one `pma bench` run. *
 * @example
 * ```ts
 * import { formatBenchReport, runBench } from 'pma';
 * console.log(formatBenchReport(await runBench({ size: '4MB', inputs: 2, runs: 1, threads: '1', dir: 'pma-bench' })));
 * ```
 */
export function formatBenchReport(r: BenchResult, options: BenchReportOptions = {}): string {
  const c = r.ceilings;
  const d = r.data;
  const L: string[] = [];
  L.push('## pma merge benchmark');
  L.push('');
  if (r.command) L.push(`command: \`${r.command}\` (${r.date}, pma ${r.version})`);
  L.push(machineLine(r.machine));
  L.push(inputsLine(r));
  L.push(
    `load average (1/5/15 min) before ${r.loadAverage.before.map(f2).join('/')}, after ${r.loadAverage.after.map(f2).join('/')}; ` +
      `measurements interleaved round by round; work dir ${r.dir}; ` +
      (r.params.process
        ? 'each merge a whole `pma merge --json` process, its start included'
        : 'each merge a merge() call in this process (--process: whole `pma merge` processes)'),
  );
  L.push('');
  L.push(ceilingsLine(c));
  L.push('');
  L.push('| threads | io | engine | median s | min s | max s | input GB/s | x floor | x max(read, write) |');
  L.push('|--:|:--|:--|--:|--:|--:|--:|--:|--:|');
  for (const x of r.merges) {
    L.push(
      `| ${x.threads} | ${x.io} | ${x.kernel} | ${f3(x.medianSeconds)} | ${f3(x.minSeconds)} | ${f3(x.maxSeconds)} | ${f2(x.inputGBps)} | ${f2(x.ratioToFloor)} | ${f2(x.ratioToMax)} |`,
    );
  }
  L.push(
    `| - | floor (read + ${floorWriteName(c)}) | - | ${f3(c.floorSeconds)} | | | ${f2(d.inputTensorBytes / GB / c.floorSeconds)} | 1.00 | |`,
  );
  L.push('');
  if (options.breakdown) {
    L.push('where the time went (medians; engine and hash figures are thread seconds, the rest wall seconds):');
    L.push('');
    L.push(...breakdownTable(r.merges));
    L.push('');
  }
  for (const x of r.ioComparison)
    L.push(`io at ${x.threads} thread(s): ${x.faster} faster by ${x.percent.toFixed(1)}% (median)`);
  for (const n of r.notes) L.push(`note: ${n}`);
  if (d.series)
    L.push(
      r.keptInputs
        ? `the generated inputs are kept in ${r.dir} (reused by the next run with the same --size, --inputs and --dtype)`
        : 'the generated inputs were deleted (--keep keeps them)',
    );
  return `${L.join('\n')}\n`;
}

/** The report of a suite: one row per case x threads x io, each against its own floor. */
export function formatSuiteReport(r: SuiteResult): string {
  const L: string[] = [];
  L.push('## pma merge benchmark');
  L.push('');
  if (r.command)
    L.push(`command: \`${r.command}\` (${r.date}, pma ${r.version}; ${(r.totalSeconds / 60).toFixed(1)} min in all)`);
  L.push(machineLine(r.machine));
  L.push(
    'inputs: generated MoE-shaped checkpoints, 4 shards + index each, in ' +
      `${r.dir}; ` +
      'every row has its own inputs and its own floor, measured in the same rounds as its merges: ' +
      'read ceiling = cat of the same files > /dev/null, write ceiling = an output-sized file in the same filesystem, the faster of an O_DIRECT write with fdatasync (dd) and a write + fsync, ' +
      'floor = read + write; median of the runs; warm page cache; merge() in the benchmark process unless the row says whole process (a `pma merge --json` process, its start included)',
  );
  L.push('');
  L.push(
    '| inputs | output | threads | io | engine | runs | median s | input GB/s | read s | write s | floor s | x floor | x max(read, write) |',
  );
  L.push('|:--|:--|--:|:--|:--|--:|--:|--:|--:|--:|--:|--:|--:|');
  const merges: MergeRow[] = [];
  const labels: string[] = [];
  for (const c of r.cases) {
    const d = c.data;
    const inputs = d.series ? d.series.description : `${d.checkpoints.length} checkpoints`;
    const dtype = d.outDtype === 'keep' ? `keep (${d.series?.dtype ?? '?'})` : d.outDtype;
    const files = d.outputFiles > 1 ? `${dtype}, ${d.outputFiles} files` : dtype;
    const sums = c.params.checksum === 'blake3' ? files : `${files}, ${c.params.checksum}`;
    const out = c.params.process ? `${sums}, whole process` : sums;
    for (const x of c.merges) {
      L.push(
        `| ${inputs} | ${out} | ${x.threads} | ${x.io} | ${x.kernel} | ${c.params.runs} | ${f3(x.medianSeconds)} | ${f2(x.inputGBps)} | ` +
          `${f3(c.ceilings.read.seconds)} | ${f3(c.ceilings.floorSeconds - c.ceilings.read.seconds)} | ${f3(c.ceilings.floorSeconds)} | ${f2(x.ratioToFloor)} | ${f2(x.ratioToMax)} |`,
      );
      merges.push(x);
      labels.push(`${inputs} | ${out}`);
    }
  }
  L.push('');
  L.push(
    'where the time went, row by row (medians; engine and hash figures are thread seconds, the rest wall seconds; a whole process row adds its start, not shown here):',
  );
  L.push('');
  L.push(...breakdownTable(merges, labels));
  L.push('');
  for (const [i, c] of r.cases.entries()) {
    const d = c.data;
    const files = d.outputFiles > 1 ? ` (${d.outputFiles} files)` : '';
    const how = c.params.process ? ', whole `pma merge` processes' : '';
    const label = d.series ? `${d.series.description} -> ${d.outDtype}${files}${how}` : `case ${i + 1}`;
    L.push(
      `- ${label}: reads ${gb(d.inputTensorBytes)}, writes ${gb(d.outputFileBytes)}; ${ceilingsLine(c.ceilings)}` +
        (c.ioComparison.length > 0
          ? `; ${c.ioComparison.map((x) => `at ${x.threads} thread(s) ${x.faster} faster by ${x.percent.toFixed(1)}%`).join(', ')}`
          : '') +
        `; load ${c.loadAverage.before.map(f2)[0]} -> ${c.loadAverage.after.map(f2)[0]}`,
    );
    if (c.note) L.push(`  - note: ${c.note}`);
    for (const n of c.notes) L.push(`  - note: ${n}`);
  }
  for (const n of r.notes) L.push(`note: ${n}`);
  return `${L.join('\n')}\n`;
}
