/** shifterd's command line as an admin meets it: a bad option value is a usage error (exit 2), one line. */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

const SHIFTERD = join(process.cwd(), 'bin', 'shifterd');

function shifterd(...args: string[]): { code: number | null; stderr: string } {
  const r = spawnSync(SHIFTERD, args, { encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, stderr: r.stderr };
}

for (const [option, value] of [
  ['--cache-max', 'x'],
  ['--cache-max', '0'],
  ['--cache-idle-seconds', '-5'],
  ['--cache-idle-seconds', '1.5'],
]) {
  test(`${option} ${value}: exit 2 and one line naming the option and the rule`, (t) => {
    const r = shifterd('--config', '/nonexistent/udiRoot.conf', `${option}=${value}`);
    t.is(r.code, 2, r.stderr);
    t.is(
      r.stderr,
      `shifterd: option '${option} <${option === '--cache-max' ? 'n' : 's'}>' argument '${value}' is invalid. ` +
        'it must be a positive whole number.\n',
    );
  });
}

test('an unknown option is a usage error too', (t) => {
  const r = shifterd('--config', '/x', '--cache-maximum', '3');
  t.is(r.code, 2);
  t.regex(r.stderr, /^shifterd: unknown option '--cache-maximum'/);
  t.notRegex(r.stderr, /\n\s+at /, 'no stack trace');
});
