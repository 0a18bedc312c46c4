/** Where the CLI writes; tests pass their own to capture output without spawning. */
export interface Io {
  out(s: string): void;
  err(s: string): void;
  stderrIsTTY: boolean;
}

export const processIo: Io = {
  out: (s) => process.stdout.write(s),
  err: (s) => process.stderr.write(s),
  stderrIsTTY: Boolean(process.stderr.isTTY),
};
