/** A commander program's options and commands as man page items: the same objects the program parses with. */
import type { Command } from 'commander';
import type { Item } from './roff.js';

function withDefault(description: string, value: unknown): string {
  const shown = typeof value === 'number' || (typeof value === 'string' && value !== '');
  return shown && !description.includes('default') ? `${description} (default ${String(value)})` : description;
}

/** Every option the program accepts and shows in --help, the help option included. */
export function optionItems(program: Command): Item[] {
  const help = program.createHelp();
  return help.visibleOptions(program).map((o) => ({
    term: help.optionTerm(o),
    text: withDefault(o.description, o.defaultValue),
  }));
}

export function commandItems(program: Command): Item[] {
  const help = program.createHelp();
  return help.visibleCommands(program).map((c) => ({ term: help.subcommandTerm(c), text: c.description() }));
}
