/** Where the CLI writes; tests pass their own to capture output without spawning. */
export interface Io {
  out(s: string): void;
  err(s: string): void;
  stderrIsTTY: boolean;
}

/**
 * A stream whose reader may go away (`pma inspect --tensors | head`): once it has (EPIPE), what
 * is left to print is dropped and the command ends as it would have, like other Unix tools.
 */
function quietOnClose(stream: NodeJS.WriteStream): (s: string) => void {
  let closed = false;
  stream.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code !== 'EPIPE') throw e;
    closed = true;
  });
  return (s) => {
    if (!closed) stream.write(s);
  };
}

const writeOut = quietOnClose(process.stdout);
const writeErr = quietOnClose(process.stderr);

export const processIo: Io = {
  out: writeOut,
  err: writeErr,
  stderrIsTTY: Boolean(process.stderr.isTTY),
};
