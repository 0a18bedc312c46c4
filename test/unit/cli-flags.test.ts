import { describe, expect, it } from 'vitest';

import { allCommands } from '../../src/cli/main.js';

const COMMANDS = await allCommands();
import { HELP_FLAG, helpText, parseCommand, type ParsedCommand } from '../../src/cli/flags.js';
import { thrownSync } from '../helpers/errors.js';

// Every command's parser and help come from one table: whatever the help lists parses, and
// whatever parses is in the help.
describe('command tables', () => {
  for (const { spec } of COMMANDS) {
    const flags = [...spec.groups.flatMap((g) => g.flags), HELP_FLAG];
    const positionals = Array.from({ length: Math.min(spec.positionals.min, 1) }, () => 'some/dir');

    it(`pma ${spec.name}: the help lists each flag of the table once, and nothing else`, () => {
      const help = helpText(spec);
      expect(help.startsWith(`Usage: pma ${spec.name} `)).toBe(true);
      const listed = [...help.matchAll(/^ {2}--([a-z0-9-]+)/gm)].map((m) => m[1]);
      expect(listed.sort()).toEqual(flags.map((f) => f.name).sort());
      expect(new Set(listed).size).toBe(listed.length);
    });

    it(`pma ${spec.name}: every flag in the table parses, into the option it names`, () => {
      for (const f of flags.filter((x) => x.name !== 'help')) {
        const argv = f.type === 'boolean' ? [`--${f.name}`] : [`--${f.name}`, 'a,b'];
        const p = parseCommand(spec, [...positionals, ...argv]) as ParsedCommand;
        const want = f.type === 'boolean' ? true : f.type === 'list' ? ['a', 'b'] : 'a,b';
        expect(p.flags[f.name], f.name).toEqual(want);
        if (f.option) expect(p.options[f.option], f.name).toEqual(want);
        else expect(Object.keys(p.options), f.name).toEqual([]);
      }
      expect(parseCommand(spec, ['--help'])).toBe('help');
      expect(parseCommand(spec, ['-h'])).toBe('help');
    });
  }

  const merge = COMMANDS.find((c) => c.spec.name === 'merge')!.spec;

  it('refuses an unknown flag or a missing value with E_USAGE, pointing at the help', () => {
    const unknown = thrownSync(() => parseCommand(merge, ['run', '--frobnicate']));
    expect(unknown.code).toBe('E_USAGE');
    expect(unknown.message).toMatch(/^Unknown option '--frobnicate'.*\(see pma merge --help\)$/s);
    expect(thrownSync(() => parseCommand(merge, ['run', '--last'])).code).toBe('E_USAGE');
  });

  it('refuses the wrong number of positional arguments with the command own words', () => {
    expect(thrownSync(() => parseCommand(merge, [])).message).toBe(
      'pma merge needs a run directory or checkpoints (see pma merge --help)',
    );
    const verify = COMMANDS.find((c) => c.spec.name === 'verify')!.spec;
    expect(thrownSync(() => parseCommand(verify, ['a', 'b'])).message).toBe(
      'pma verify needs one merged checkpoint directory (see pma verify --help)',
    );
  });

  it('passes values to the library as strings, and splits --weights at commas', () => {
    const p = parseCommand(merge, [
      'run',
      '--last',
      '3',
      '--weights',
      '1,2,3',
      '-o',
      'out',
      '--dry-run',
    ]) as ParsedCommand;
    expect(p.options).toEqual({ last: '3', weights: ['1', '2', '3'], out: 'out' });
    expect(p.flags['dry-run']).toBe(true);
    expect(p.positionals).toEqual(['run']);
  });

  it('keeps the help lines to the width of a terminal where it can', () => {
    for (const { spec } of COMMANDS) {
      const long = helpText(spec)
        .split('\n')
        .filter((l) => l.length > 100 && !l.startsWith('  pma '));
      expect(long, spec.name).toEqual([]);
    }
  });
});
