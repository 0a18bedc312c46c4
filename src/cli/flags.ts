import { parseArgs, type ParseArgsConfig } from 'node:util';

import { PmaError } from '../errors.js';

/**
 * One command-line flag: how it parses, which library option it sets, and its line of help. A
 * command's flags are one table (CommandSpec.groups) from which both its parser and its help are
 * made, so a flag cannot be added to one and forgotten in the other.
 */
export interface Flag {
  /** The long name, without the dashes. */
  name: string;
  /** 'string': takes a value; 'list': a comma-separated value, split into strings; 'boolean': present or not. */
  type: 'string' | 'list' | 'boolean';
  /**
   * The library option the flag sets (values go to the library as strings, where they are checked
   * with one message format); none for the flags the command reads itself (--json, --dry-run).
   */
  option?: string;
  short?: string;
  /** The value's name in the help: N, SIZE, DIR. */
  value?: string;
  /** The help text: one line, or the lines of a longer text. */
  help: string | string[];
}

export interface FlagGroup {
  /** The help section's title ("Selection (applied in this order)"). */
  title: string;
  flags: Flag[];
}

export interface CommandSpec {
  name: string;
  /** After "Usage: pma <name> ". */
  usage: string;
  /** One line for `pma --help`. */
  summary: string;
  /** The help's description paragraph(s). */
  about: string;
  /** How many positional arguments the command takes, and what to say when they are wrong. */
  positionals: { min: number; max: number; wrong: string };
  groups: FlagGroup[];
  examples?: string[];
  /** Text after the examples (exit statuses, notes). */
  footer?: string;
}

export const HELP_FLAG: Flag = { name: 'help', type: 'boolean', short: 'h', help: 'this help' };

export interface ParsedCommand {
  /** Library options set by flags, values as given (lists split at commas). */
  options: Record<string, unknown>;
  /** Every flag given, by its name. */
  flags: Record<string, string | string[] | boolean | undefined>;
  positionals: string[];
  /** The arguments as given (pma.json records the command line). */
  argv: string[];
}

function allFlags(spec: CommandSpec): Flag[] {
  return [...spec.groups.flatMap((g) => g.flags), HELP_FLAG];
}

/** Parses argv by the command's table: E_USAGE for an unknown flag, a missing value, or wrong positionals. */
export function parseCommand(spec: CommandSpec, argv: string[]): ParsedCommand | 'help' {
  const options: NonNullable<ParseArgsConfig['options']> = {};
  for (const f of allFlags(spec))
    options[f.name] = { type: f.type === 'boolean' ? 'boolean' : 'string', ...(f.short ? { short: f.short } : {}) };
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (e) {
    // parseArgs names the bad flag in its message; its codes are ERR_PARSE_ARGS_*.
    throw new PmaError('E_USAGE', `${(e as Error).message} (see pma ${spec.name} --help)`, { cause: e });
  }
  const values = parsed.values as Record<string, string | boolean | undefined>;
  if (values.help) return 'help';
  const { min, max, wrong } = spec.positionals;
  if (parsed.positionals.length < min || parsed.positionals.length > max) throw new PmaError('E_USAGE', wrong);
  const result: ParsedCommand = { options: {}, flags: {}, positionals: parsed.positionals, argv };
  for (const f of allFlags(spec)) {
    const raw = values[f.name];
    if (raw === undefined) continue;
    const value = f.type === 'list' ? String(raw).split(',') : raw;
    result.flags[f.name] = value;
    if (f.option !== undefined) result.options[f.option] = value;
  }
  return result;
}

const FLAG_COLUMN = 31;

function flagLines(f: Flag): string[] {
  const name = `  --${f.name}${f.value ? ` ${f.value}` : ''}${f.short ? `, -${f.short}` : ''}`;
  const [first = '', ...rest] = typeof f.help === 'string' ? [f.help] : f.help;
  const indent = ' '.repeat(FLAG_COLUMN);
  const head = name.length < FLAG_COLUMN ? [`${name.padEnd(FLAG_COLUMN)}${first}`] : [name, `${indent}${first}`];
  return [...head, ...rest.map((l) => `${indent}${l}`)];
}

/** The command's help, made from the same table as its parser. */
export function helpText(spec: CommandSpec): string {
  const lines = [`Usage: pma ${spec.name} ${spec.usage}`, '', spec.about, ''];
  const groups = spec.groups.map((g, i) =>
    i === spec.groups.length - 1 ? { ...g, flags: [...g.flags, HELP_FLAG] } : g,
  );
  if (groups.length === 0) groups.push({ title: 'Options', flags: [HELP_FLAG] });
  for (const g of groups) {
    lines.push(`${g.title}:`, ...g.flags.flatMap(flagLines), '');
  }
  if (spec.examples && spec.examples.length > 0) lines.push('Examples:', ...spec.examples.map((e) => `  ${e}`), '');
  if (spec.footer) lines.push(spec.footer, '');
  return `${lines.join('\n').trimEnd()}\n`;
}

/** Flags from `flags`, leaving out those named (a command that gives one of them another meaning). */
export function without(flags: Flag[], ...names: string[]): Flag[] {
  return flags.filter((f) => !names.includes(f.name));
}
