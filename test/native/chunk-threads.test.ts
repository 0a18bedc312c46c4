import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { native, type NativeChunk } from '../../src/native.js';
import type { PlanOp } from '../../src/plan/types.js';
import { blake3Hex } from '../helpers/blake3.js';
import { ROOT } from '../helpers/cli.js';
import { rejected, thrownSync } from '../helpers/errors.js';
import { cpuChunk } from '../helpers/native-chunk.js';
import { scratch } from '../helpers/scratch.js';

// The addon's chunk threads (native/engine/chunk_threads.h, `native().threads(n)`): what a merge
// and pma analyze run their chunks on. The real addon, real files, real threads.
const { tmp, out } = scratch('pma-chunk-threads-');

const COUNT = 3001; // f32 values per input: odd, so no kernel's vector width divides it
function inputs(tag: string, n: number): string[] {
  return Array.from({ length: n }, (_, k) => {
    const values = Float32Array.from({ length: COUNT }, (_, i) => Math.sin(i * 0.37 + k * 1.7 + tag.length) * 3);
    const path = join(tmp, `${tag}-${k}.bin`);
    writeFileSync(path, new Uint8Array(values.buffer));
    return path;
  });
}

function mergeOp(n: number): PlanOp {
  return {
    kind: 'merge',
    tensor: 'w',
    inDtype: 'F32',
    outDtype: 'F32',
    count: COUNT,
    outFile: 0,
    outOffset: 0,
    inputs: Array.from({ length: n }, (_, k) => ({ file: k, offset: 0 })),
  };
}

function chunk(tag: string, n: number, extra: Partial<NativeChunk> = {}): NativeChunk {
  const output = out();
  writeFileSync(output, '');
  return cpuChunk({ inputs: inputs(tag, n), outputs: [output], ops: [mergeOp(n)], kernel: 'auto', ...extra });
}

describe('native chunk threads', () => {
  it('run many chunks at once, each writing what the same chunk run on the JS thread writes', async () => {
    const threads = native().threads(3);
    try {
      const chunks = Array.from({ length: 12 }, (_, i) => chunk(`c${i}`, 2 + (i % 4)));
      const stats = await Promise.all(chunks.map((c) => threads.runChunk(c, [])));
      for (const [i, c] of chunks.entries()) {
        const s = stats[i];
        expect(s?.bytesRead).toBe(COUNT * 4 * c.inputs.length);
        expect(s?.bytesWritten).toBe(COUNT * 4);
        expect(s?.seconds.engine).toBeGreaterThan(0);
        const threaded = readFileSync(c.outputs[0] as string);
        const again = { ...c, outputs: [out()] };
        writeFileSync(again.outputs[0] as string, '');
        native().runChunk(again);
        expect(threaded.equals(readFileSync(again.outputs[0] as string)), `chunk ${i}`).toBe(true);
      }
    } finally {
      threads.close();
    }
  });

  it('analyze chunks give the moments the call on the JS thread gives', async () => {
    const threads = native().threads(2);
    try {
      const reads = Array.from({ length: 5 }, (_, i) => ({
        inputs: inputs(`a${i}`, 3 + i),
        ops: [mergeOp(3 + i)],
        kernel: 'auto' as const,
      }));
      const threaded = await Promise.all(reads.map((r) => threads.analyzeChunk(r)));
      expect(threaded).toEqual(reads.map((r) => native().analyzeChunk(r)));
      expect(threaded[0]?.[0]?.count).toBe(COUNT);
    } finally {
      threads.close();
    }
  });

  it('a failing chunk rejects with its own code and file; the chunks beside it are not touched', async () => {
    const threads = native().threads(2);
    try {
      const good = [chunk('g0', 2), chunk('g1', 3)];
      const bad = cpuChunk({
        inputs: ['/nonexistent/pma/in.bin', '/nonexistent/pma/in2.bin'],
        outputs: [out()],
        ops: [mergeOp(2)],
      });
      const failing = rejected(threads.runChunk(bad, [])); // handled from the start
      const [a, b] = await Promise.allSettled([
        threads.runChunk(good[0] as NativeChunk, []),
        threads.runChunk(good[1] as NativeChunk, []),
      ]);
      expect([a?.status, b?.status]).toEqual(['fulfilled', 'fulfilled']);
      const err = await failing;
      expect(err.code).toBe('E_IO');
      expect(err.file).toBe('/nonexistent/pma/in.bin');
    } finally {
      threads.close();
    }
  });

  it('a chunk whose cancel flag is set stops with E_ABORTED', async () => {
    const threads = native().threads(1);
    try {
      const cancel = new Int32Array(new SharedArrayBuffer(4));
      Atomics.store(cancel, 0, 1);
      const err = await rejected(threads.runChunk(chunk('x', 2, { cancel }), []));
      expect([err.code, err.tensor]).toEqual(['E_ABORTED', 'w']);
    } finally {
      threads.close();
    }
  });

  it('with threads that only hash beside them: chunks and whole-file hashes both done', async () => {
    const threads = native().threads(1, 2);
    try {
      const chunks = Array.from({ length: 4 }, (_, i) => chunk(`h${i}`, 3));
      const [stats, sums] = await Promise.all([
        Promise.all(chunks.map((c) => threads.runChunk(c, []))),
        Promise.all(chunks.map((c) => threads.hash({ op: 'file', path: c.inputs[0] as string, checksum: 'sha256' }))),
      ]);
      expect(stats.map((s) => s.bytesWritten)).toEqual(chunks.map(() => COUNT * 4));
      expect(sums.map((h) => h.hex)).toEqual(
        chunks.map((c) =>
          createHash('sha256')
            .update(readFileSync(c.inputs[0] as string))
            .digest('hex'),
        ),
      );
    } finally {
      threads.close();
    }
  });

  // Direct writes (native/engine/direct_writes.h): 3 x 4 KiB of f32 at offset 0, so every byte
  // is an aligned middle and goes through the writer thread.
  const ALIGNED = 3 * 1024;
  function alignedChunk(tag: string, extra: Partial<NativeChunk> = {}): NativeChunk {
    const paths = Array.from({ length: 3 }, (_, k) => {
      const path = join(tmp, `${tag}-${k}.bin`);
      writeFileSync(path, new Uint8Array(Float32Array.from({ length: ALIGNED }, (_, i) => i * (k + 1) * 0.25).buffer));
      return path;
    });
    const output = out();
    writeFileSync(output, Buffer.alloc(ALIGNED * 4));
    const op = { ...mergeOp(3), count: ALIGNED, tensor: `${tag}.weight` };
    return cpuChunk({ inputs: paths, outputs: [output], ops: [op], write: 'direct', ...extra });
  }

  it('direct writes: a chunk settles once its bytes are in the file, and the hash takes them from memory', async () => {
    const threads = native().threads(2);
    try {
      const chunks = Array.from({ length: 6 }, (_, i) => alignedChunk(`d${i}`));
      await Promise.all(chunks.map((c) => threads.runChunk(c, [])));
      const written = chunks.map((c) => readFileSync(c.outputs[0] as string));
      for (const [i, c] of chunks.entries()) {
        const again = { ...c, outputs: [out()], write: 'buffered' as const };
        writeFileSync(again.outputs[0] as string, Buffer.alloc(ALIGNED * 4));
        native().runChunk(again);
        expect(written[i]?.equals(readFileSync(again.outputs[0] as string)), `chunk ${i}`).toBe(true);
      }
      // The bytes kept for the hash are the bytes written: the file changed since does not change
      // the digest of a range the writer kept (and a range it did not keep is read back).
      const path = chunks[0]?.outputs[0] as string;
      writeFileSync(path, Buffer.alloc(ALIGNED * 4, 7));
      const about = { file: 1, path, writable: false, checksum: 'blake3' as const };
      await threads.hash({ ...about, op: 'update', from: 0, to: ALIGNED * 4, crcs: [], drop: false });
      const { hex } = await threads.hash({ ...about, op: 'digest' });
      expect(hex).toBe(blake3Hex(written[0] as Buffer));
    } finally {
      threads.close();
    }
  });

  for (const errno of ['ENOSPC', 'EIO']) {
    it(`direct writes: ${errno} on the writer thread rejects the chunk, naming the output file and the tensor`, () => {
      const c = alignedChunk(`f${errno}`);
      const script = `
        const { native } = await import(${JSON.stringify(join(ROOT, 'dist', 'native.js'))});
        const threads = native().threads(1);
        const e = await threads.runChunk(${JSON.stringify(c)}, []).then(() => null, (e) => e);
        threads.close();
        console.log(JSON.stringify(e && { code: e.code, file: e.file, tensor: e.tensor, message: e.message }));
      `;
      const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
        encoding: 'utf8',
        timeout: 30_000,
        env: { ...process.env, PMA_FAULTS: `write:${errno}:${c.outputs[0]}` },
      });
      expect(r.stderr).toBe('');
      const e = JSON.parse(r.stdout) as { code: string; file: string; tensor: string; message: string };
      const output = c.outputs[0] as string;
      expect(e).toEqual({
        code: errno === 'EIO' ? 'E_IO' : 'E_NOSPACE',
        file: output,
        tensor: `f${errno}.weight`,
        message:
          errno === 'EIO'
            ? `write failed on ${output} (tensor fEIO.weight): Input/output error`
            : `no space left on the device writing ${output} (tensor fENOSPC.weight): No space left on device`,
      });
    });
  }

  it('refuses a bad chunk or count as a bug in pma, and any chunk once closed', async () => {
    expect(thrownSync(() => native().threads(0)).code).toBe('E_INTERNAL');
    expect(thrownSync(() => native().threads(1, 65)).code).toBe('E_INTERNAL');
    const threads = native().threads(1);
    const bad = await rejected(threads.runChunk({ inputs: [1] } as unknown as NativeChunk, []));
    expect([bad.code, bad.message]).toEqual(['E_INTERNAL', "native: 'inputs' must be a string"]);
    threads.close();
    threads.close(); // idempotent
    const closed = await rejected(threads.runChunk(chunk('z', 2), []));
    expect([closed.code, closed.message]).toEqual(['E_INTERNAL', 'native: the chunk threads are closed']);
  });

  it('hold the process open while a chunk is in flight, and not once they are idle', () => {
    const c = chunk('p', 4);
    const script = `
      const { native } = await import(${JSON.stringify(join(ROOT, 'dist', 'native.js'))});
      const threads = native().threads(2);
      threads.runChunk(${JSON.stringify(c)}, []).then((s) => console.log('done', s.bytesWritten));
      // never closed: the idle threads must not keep the process alive
    `;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000 });
    expect(r.stderr).toBe('');
    expect([r.status, r.stdout.trim()]).toEqual([0, `done ${COUNT * 4}`]);
  });
});
