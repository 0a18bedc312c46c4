/**
 * What piscina loads in each worker thread. Piscina loads its worker with require() first; Node
 * 20.19+ then loads an ES module synchronously (require(esm)), which can bring the whole process
 * down with a fatal V8 error ("Module::IsGraphAsync must be used on an instantiated module")
 * when several workers start at once. This CommonJS file is what require() gets; the worker
 * itself (worker.js) is imported the ordinary, asynchronous way.
 */
import type * as Worker from './worker.js';

type Handlers = typeof Worker;
const loaded: Promise<Handlers> = import('./worker.js');
loaded.catch(() => {}); // a failed import reaches each task that awaits it, not the process

export async function mergeChunk(...a: Parameters<Handlers['mergeChunk']>) {
  return (await loaded).mergeChunk(...a);
}

export async function analyzeChunk(...a: Parameters<Handlers['analyzeChunk']>) {
  return (await loaded).analyzeChunk(...a);
}

export async function hashFile(...a: Parameters<Handlers['hashFile']>) {
  return (await loaded).hashFile(...a);
}
