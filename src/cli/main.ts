#!/usr/bin/env node
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import { PmaError, exitStatusFor } from '../errors.js';
import { VERSION } from '../version.js';
import { analyzeCommand } from './analyze.js';
import { benchCommand } from './bench.js';
import { devicesCommand } from './devices.js';
import { inspectCommand } from './inspect.js';
import { processIo, type Io } from './io.js';
import { mergeCommand } from './merge.js';
import { recommendCommand } from './recommend.js';
import { verifyCommand } from './verify.js';
import { watchCommand } from './watch.js';

export const MAIN_HELP = `pma ${VERSION}: Pre-trained Model Averaging for safetensors checkpoints

Usage:
  pma merge <run-dir | checkpoint...> --out <dir> [options]   average checkpoints
  pma inspect <run-dir | checkpoint...> [--tensors] [--json]  list checkpoints and tensors
  pma watch <run-dir> --out <dir> --last N [--keep M]         merge the newest window each time a
                                                              checkpoint lands
  pma analyze <run-dir> --last N [--report r.html] [--json]   how the checkpoints deviate from
                                                              their average
  pma bench [--size 1GB --inputs 5 | <inputs...>] [options]  measure merge speed against this
                                                              machine's read + write floor
  pma verify <merged-dir> [--json]                            re-check a merge's headers and SHA-256 sums
  pma devices [--json]                                        the CPU kernels and GPUs pma can use
  pma recommend --total-params 13B [--active-params 1.3B]     the checkpoint interval and N the PMA
                                                              paper found best at that scale
  pma --version

Run 'pma <command> --help' for the options of a command.

Examples:
  pma inspect runs/exp7
  pma merge runs/exp7 --last 8 --out merged/
  pma merge runs/exp7/checkpoint-{6000,7000,8000} --method ema --alpha 0.2 --dtype bf16 --out m2
  pma bench --size 256MB --inputs 4 --runs 3
`;

const COMMANDS: Record<string, (argv: string[], io: Io) => Promise<number>> = {
  merge: mergeCommand,
  inspect: inspectCommand,
  watch: watchCommand,
  analyze: analyzeCommand,
  verify: verifyCommand,
  recommend: recommendCommand,
  bench: benchCommand,
  devices: devicesCommand,
};

/** Runs the CLI and returns the exit status: 0 done, 2 bad usage or bad input, 1 anything else. */
export async function main(argv: string[], io: Io = processIo): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    const command = cmd !== undefined && Object.hasOwn(COMMANDS, cmd) ? COMMANDS[cmd] : undefined;
    if (command) return await command(rest, io);
    switch (cmd) {
      case '--version':
      case '-v':
        io.out(`${VERSION}\n`);
        return 0;
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        io.out(MAIN_HELP);
        return cmd === undefined ? 2 : 0;
      default:
        throw new PmaError('E_USAGE', `unknown command ${JSON.stringify(cmd)} (expected ${Object.keys(COMMANDS).join(', ')}; see pma --help)`);
    }
  } catch (e) {
    // parseArgs reports unknown or malformed options with ERR_PARSE_ARGS_* codes.
    const code = (e as NodeJS.ErrnoException)?.code ?? '';
    const err = code.startsWith('ERR_PARSE_ARGS') ? new PmaError('E_USAGE', (e as Error).message) : e;
    const label = err instanceof PmaError ? err.code : 'E_INTERNAL';
    io.err(`pma: error [${label}]: ${err instanceof Error ? err.message : String(err)}\n`);
    if (!(err instanceof PmaError) && err instanceof Error && err.stack) io.err(`${err.stack}\n`);
    return exitStatusFor(err);
  }
}

function isEntryPoint(): boolean {
  try {
    return process.argv[1] !== undefined && realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  process.exitCode = await main(process.argv.slice(2));
}
