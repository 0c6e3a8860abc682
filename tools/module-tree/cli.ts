/** What the prep tools share at their edge: one-line errors and exit codes (0 ok, 1 failed, 2 bad arguments). */
import { CommanderError, type Command } from 'commander';
import { describeError, isShifterError } from '../../common/errors.js';

export async function runTool(program: Command, argv: readonly string[]): Promise<number> {
  program.exitOverride();
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 2;
    const name = program.name();
    if (isShifterError(e)) {
      process.stderr.write(`${name}: ${e.message}\n`);
      return e.code === 'BAD_ARGUMENT' ? 2 : 1;
    }
    process.stderr.write(`${name}: unexpected failure: ${describeError(e)}\n`);
    return 1;
  }
}

export function validModuleName(name: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9.-]*$/.test(name)) {
    throw new CommanderError(2, 'prep.name', `module name '${name}' is not valid (letters, digits, '.', '-'; no '_')`);
  }
  return name;
}
