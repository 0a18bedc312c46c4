import type { NativeChunk } from '../../src/native.js';

/** A merge chunk for the addon as the engine's tests call it: the scalar CPU kernel, pread, no GPU. */
export function cpuChunk(c: Pick<NativeChunk, 'inputs' | 'outputs' | 'ops'> & Partial<NativeChunk>): NativeChunk {
  const weights = c.weights64 ?? c.inputs.map(() => 1 / c.inputs.length);
  return {
    weights32: weights.map(Math.fround),
    weights64: weights,
    accumulate: 'f32',
    kernel: 'scalar',
    io: 'pread',
    dropCache: false,
    write: 'buffered',
    device: -1,
    gpuMemory: 0,
    ...c,
  };
}
