import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';

import { PmaError, type PmaErrorWire } from '../errors.js';
import { PACKAGE_ROOT } from '../util/package.js';

/** A zip member's running CRC-32, fed by the bytes of a hash pass that overlap [start, end). */
export interface MemberCrc {
  start: number;
  end: number;
  crc: number;
}

interface FileRequest {
  /** The OutputHasher's number for the file: its thread keeps the file's hash under it. */
  file: number;
  path: string;
  /** Opened for writing too: CRC-32 fields are written into it. */
  writable: boolean;
}

/**
 * What a hash thread is asked about a file (hash-thread.ts does it): hash [from, to) next, feeding
 * the CRC-32 of the members given; the CRC-32 of [start, end) alone; write a CRC-32 field; the
 * digest, which closes the file.
 */
export type FileOp = FileRequest &
  (
    | { op: 'update'; from: number; to: number; crcs: MemberCrc[]; drop: boolean }
    | { op: 'crc'; start: number; end: number }
    | { op: 'put'; at: number; value: number }
    | { op: 'digest' }
  );
export type HashRequest = { id: number } & (FileOp | { op: 'file'; path: string } | { op: 'close' });

export type HashValue = { read?: number; update?: number; crcs?: number[]; crc?: number; hex?: string };
export type HashReply = { id: number } & ({ ok: true; value: HashValue } | { ok: false; error: PmaErrorWire });

/**
 * Threads that hash output files: a quarter of the cores, 1 to 8 (one thread hashes about as fast
 * as the disks of a small machine write; a merge with many shards on a large one keeps several
 * busy), never more than there are files.
 */
export function hashThreadCount(files: number): number {
  return Math.max(1, Math.min(files, 8, Math.floor(availableParallelism() / 4)));
}

/** As for the pool's workers: from the TypeScript sources (the tests), the thread runs dist/. */
function threadFile(): string {
  const here = import.meta.url;
  return here.endsWith('.ts')
    ? join(PACKAGE_ROOT, 'dist', 'output', 'hash-thread.js')
    : fileURLToPath(new URL('./hash-thread.js', here));
}

/**
 * The process's Node options, less --input-type: a thread inherits them, and a process started as
 * `node --input-type=module -e ...` would give its threads an option that a file refuses.
 */
function threadArgv(): string[] {
  const argv: string[] = [];
  for (let i = 0; i < process.execArgv.length; i++) {
    const a = process.execArgv[i] as string;
    if (a === '--input-type') i++;
    else if (!a.startsWith('--input-type=')) argv.push(a);
  }
  return argv;
}

interface Thread {
  worker: Worker;
  waiting: Map<number, { resolve: (v: HashValue) => void; reject: (e: unknown) => void }>;
  /** Files pinned to this thread and not yet digested. */
  files: number;
}

/**
 * The hash threads, started when first needed. A file is pinned to the least busy thread on its
 * first request and stays there until its digest. A thread is referenced only while it has
 * requests outstanding, so an idle one never keeps the process alive.
 */
export class HashThreads {
  private readonly threads: (Thread | null)[];
  private readonly home = new Map<number, Thread>();
  private nextId = 0;
  private dead: PmaError | null = null;

  constructor(count: number) {
    this.threads = Array.from({ length: count }, () => null);
  }

  /**
   * Starts the first thread now, before it is needed: a merge does so while it plans, when one
   * core is idle, instead of during the run, when the chunk threads want every core.
   */
  warm(): void {
    if (this.threads[0] === null && !this.dead) this.start(0);
  }

  private start(i: number): Thread {
    const worker = new Worker(threadFile(), { execArgv: threadArgv() });
    const t: Thread = { worker, waiting: new Map(), files: 0 };
    worker.unref();
    worker.on('message', (r: HashReply) => {
      const w = t.waiting.get(r.id);
      if (!w) return;
      t.waiting.delete(r.id);
      if (t.waiting.size === 0) worker.unref();
      if (r.ok) w.resolve(r.value);
      else w.reject(PmaError.fromWire(r.error));
    });
    const fail = (e: unknown) => {
      this.dead ??= new PmaError('E_INTERNAL', `hash thread failed: ${e instanceof Error ? e.message : String(e)}`, {
        cause: e,
      });
      for (const w of t.waiting.values()) w.reject(this.dead);
      t.waiting.clear();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => {
      if (t.waiting.size > 0) fail(new Error(`exited with code ${code}`));
    });
    this.threads[i] = t;
    return t;
  }

  private threadFor(file: number): Thread {
    const pinned = this.home.get(file);
    if (pinned) return pinned;
    let best = 0;
    for (let i = 1; i < this.threads.length; i++) {
      if ((this.threads[i]?.files ?? 0) < (this.threads[best]?.files ?? 0)) best = i;
    }
    const t = this.threads[best] ?? this.start(best);
    t.files++;
    this.home.set(file, t);
    return t;
  }

  private send(t: Thread, r: HashRequest): Promise<HashValue> {
    if (this.dead) return Promise.reject(this.dead);
    return new Promise((resolve, reject) => {
      if (t.waiting.size === 0) t.worker.ref();
      t.waiting.set(r.id, { resolve, reject });
      t.worker.postMessage(r);
    });
  }

  /** Sends a request about one file to its thread; a digest unpins it. */
  request(r: FileOp): Promise<HashValue> {
    const t = this.threadFor(r.file);
    if (r.op === 'digest') {
      this.home.delete(r.file);
      t.files--;
    }
    return this.send(t, { ...r, id: this.nextId++ });
  }

  /**
   * SHA-256 (hex) of a whole file, on the thread with the least to do: a merge's companion files,
   * `pma verify`, finalizing a merge in parts.
   */
  async hashFile(path: string): Promise<string> {
    let best = 0;
    const load = (i: number) => {
      const t = this.threads[i];
      return t ? t.files + t.waiting.size : 0;
    };
    for (let i = 1; i < this.threads.length; i++) if (load(i) < load(best)) best = i;
    const t = this.threads[best] ?? this.start(best);
    return (await this.send(t, { id: this.nextId++, op: 'file', path })).hex as string;
  }

  /** Closes the files the threads hold open and stops them. */
  async close(): Promise<void> {
    this.home.clear();
    await Promise.all(
      this.threads.map(async (t) => {
        if (!t) return;
        await this.send(t, { id: this.nextId++, op: 'close' }).catch(() => {});
        await t.worker.terminate();
      }),
    );
    this.threads.fill(null);
  }
}

/**
 * Runs `f` with a hash of whole files on `threads` hash threads (started when first asked, so a
 * call that hashes nothing starts none), and stops them after.
 */
export async function withFileHashing<T>(
  threads: number,
  f: (hash: (path: string) => Promise<string>) => Promise<T>,
): Promise<T> {
  const t = new HashThreads(threads);
  try {
    return await f((path) => t.hashFile(path));
  } finally {
    await t.close();
  }
}
