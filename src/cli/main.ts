#!/usr/bin/env node
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import { PmaError, exitStatusFor } from '../errors.js';
import { VERSION } from '../util/package.js';
import { analyzeCommand } from './analyze.js';
import { benchCommand } from './bench.js';
import { runCommand, type Command } from './command.js';
import { demoCommand } from './demo.js';
import { finalizeCommand } from './finalize.js';
import { devicesCommand } from './devices.js';
import { inspectCommand } from './inspect.js';
import { processIo, type Io } from './io.js';
import { mergeCommand } from './merge.js';
import { recommendCommand } from './recommend.js';
import { statusCommand } from './status.js';
import { verifyCommand } from './verify.js';
import { watchCommand } from './watch.js';

/** Every command, in the order `pma --help` lists them. */
export const COMMANDS: readonly Command[] = [
  mergeCommand,
  inspectCommand,
  watchCommand,
  analyzeCommand,
  benchCommand,
  verifyCommand,
  finalizeCommand,
  statusCommand,
  devicesCommand,
  recommendCommand,
  demoCommand,
];

function mainHelp(): string {
  const usage = COMMANDS.map((c) => [`pma ${c.spec.name} ${c.spec.usage}`, c.spec.summary] as const);
  const width = Math.max(...usage.map(([u]) => u.length)) + 2;
  return `pma ${VERSION}: Pre-trained Model Averaging for safetensors checkpoints

Usage:
${usage.map(([u, s]) => `  ${u.padEnd(width)}${s}`).join('\n')}
  pma --version

Run 'pma <command> --help' for the options of a command.

Examples:
  pma inspect runs/exp7
  pma merge runs/exp7 --last 8 --out merged/
  pma merge runs/exp7/checkpoint-{6000,7000,8000} --method ema --alpha 0.2 --dtype bf16 --out m2
  pma bench --size 256MB --inputs 4 --runs 3
`;
}

/** Runs the CLI and returns the exit status: 0 done, 2 bad usage or bad input, 1 anything else. */
export async function main(argv: string[], io: Io = processIo): Promise<number> {
  const [name, ...rest] = argv;
  const command = COMMANDS.find((c) => c.spec.name === name);
  try {
    if (command) return await runCommand(command, rest, io);
    switch (name) {
      case '--version':
      case '-v':
        io.out(`${VERSION}\n`);
        return 0;
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        io.out(mainHelp());
        return name === undefined ? 2 : 0;
      default:
        throw new PmaError(
          'E_USAGE',
          `unknown command ${JSON.stringify(name)} (expected ${COMMANDS.map((c) => c.spec.name).join(', ')}; see pma --help)`,
        );
    }
  } catch (e) {
    const err = PmaError.from(e);
    const message = cliMessage(err, command);
    // A script reading --json gets the failure as JSON too, with its code.
    if (command?.spec.groups.some((g) => g.flags.some((f) => f.name === 'json')) && rest.includes('--json')) {
      const wire = { code: err.code, message, file: err.file, tensor: err.tensor, option: err.option };
      io.out(`${JSON.stringify({ error: wire, exitStatus: exitStatusFor(err) })}\n`);
    }
    io.err(`pma: error [${err.code}]: ${message}\n`);
    // A bug (anything that is not a PmaError of pma's own): the stack helps its report.
    if (!(e instanceof PmaError) && err.stack) io.err(`${err.stack}\n`);
    return exitStatusFor(err);
  }
}

/**
 * The message as the command line says it: an option the library refused is named by its flag
 * ("invalid --total-params: ..."), from the command's table (then any command's).
 */
function cliMessage(err: PmaError, command: Command | undefined): string {
  const option = err.option;
  if (option === undefined) return err.message;
  const specs = [command, ...COMMANDS].flatMap((c) => (c ? [c.spec] : []));
  const flag = specs.flatMap((s) => s.groups.flatMap((g) => g.flags)).find((f) => f.option === option);
  return flag ? err.message.replace(`invalid ${option}`, `invalid --${flag.name}`) : err.message;
}

function isEntryPoint(): boolean {
  try {
    return (
      process.argv[1] !== undefined && realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url))
    );
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  process.exitCode = await main(process.argv.slice(2));
}
