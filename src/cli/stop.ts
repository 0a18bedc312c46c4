/**
 * Runs a long command with a signal that Ctrl-C (SIGINT) or a scheduler's SIGTERM aborts: the
 * library then stops between two blocks, records what is done and throws E_ABORTED, rather than
 * the process dying mid-write. The handlers are removed when `f` settles.
 */
export async function untilStopped<T>(f: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const ac = new AbortController();
  const stop = (): void => ac.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    return await f(ac.signal);
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
}
