#!/usr/bin/env node
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import { PmaError, exitStatusFor } from '../errors.js';
import { VERSION } from '../util/package.js';
import { runCommand, type Command } from './command.js';
import { processIo, type Io } from './io.js';

/**
 * Every command, in the order `pma --help` lists them, each loaded when it runs: a process loads
 * only its own command's modules (all of them cost `pma merge` about 40 ms more to start).
 */
const LOADERS: readonly (readonly [string, () => Promise<Command>])[] = [
  ['merge', async () => (await import('./merge.js')).mergeCommand],
  ['inspect', async () => (await import('./inspect.js')).inspectCommand],
  ['watch', async () => (await import('./watch.js')).watchCommand],
  ['analyze', async () => (await import('./analyze.js')).analyzeCommand],
  ['bench', async () => (await import('./bench.js')).benchCommand],
  ['verify', async () => (await import('./verify.js')).verifyCommand],
  ['finalize', async () => (await import('./finalize.js')).finalizeCommand],
  ['status', async () => (await import('./status.js')).statusCommand],
  ['devices', async () => (await import('./devices.js')).devicesCommand],
  ['recommend', async () => (await import('./recommend.js')).recommendCommand],
  ['demo', async () => (await import('./demo.js')).demoCommand],
];

/** Every command (for help, the reference docs and the tests), in the order `pma --help` lists them. */
export function allCommands(): Promise<Command[]> {
  return Promise.all(LOADERS.map(([, load]) => load()));
}

async function mainHelp(): Promise<string> {
  const commands = await allCommands();
  const usage = commands.map((c) => [`pma ${c.spec.name} ${c.spec.usage}`, c.spec.summary] as const);
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
  let command: Command | undefined;
  try {
    command = await LOADERS.find(([n]) => n === name)?.[1]();
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
        io.out(await mainHelp());
        return name === undefined ? 2 : 0;
      default:
        throw new PmaError(
          'E_USAGE',
          `unknown command ${JSON.stringify(name)} (expected ${LOADERS.map(([n]) => n).join(', ')}; see pma --help)`,
        );
    }
  } catch (e) {
    const err = PmaError.from(e);
    const message = await cliMessage(err, command);
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
async function cliMessage(err: PmaError, command: Command | undefined): Promise<string> {
  const option = err.option;
  if (option === undefined) return err.message;
  const own = command?.spec.groups.some((g) => g.flags.some((f) => f.option === option));
  const specs = [command, ...(own ? [] : await allCommands())].flatMap((c) => (c ? [c.spec] : []));
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
