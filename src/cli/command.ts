import { helpText, parseCommand, type CommandSpec, type ParsedCommand } from './flags.js';
import type { Io } from './io.js';

/** A CLI command: its table (parser and help) and what it does with what was parsed. */
export interface Command {
  spec: CommandSpec;
  /** Returns the exit status; failures are thrown as PmaError (the CLI maps codes to statuses). */
  run(args: ParsedCommand, io: Io): Promise<number> | number;
}

/** Parses argv by the command's table and runs it (or prints its help). */
export async function runCommand(command: Command, argv: string[], io: Io): Promise<number> {
  const parsed = parseCommand(command.spec, argv);
  if (parsed === 'help') {
    io.out(helpText(command.spec));
    return 0;
  }
  return await command.run(parsed, io);
}
