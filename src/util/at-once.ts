/**
 * Runs `f` on every item, at most `limit` at a time, and settles once all that started have: the
 * first failure is thrown then, never while others still run (a caller that cleans up after a
 * failure must not race the work still in flight). Items after a failure are not started.
 */
export async function eachAtOnce<T>(items: readonly T[], limit: number, f: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failed = false;
  let error: unknown;
  const worker = async (): Promise<void> => {
    while (!failed && next < items.length) {
      const item = items[next++] as T;
      try {
        await f(item);
      } catch (e) {
        if (!failed) error = e;
        failed = true;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failed) throw error;
}
