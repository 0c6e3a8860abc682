/**
 * The man pages `npm run build` writes into dist/man: each renders without a groff warning, and
 * each lists every option (or key) its program's parser accepts, checked against the parser.
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { shifterimgProgram } from '../../cli/shifterimg/program.js';
import { KNOWN_KEYS, MODULE_SETTING_DESCRIPTIONS } from '../../common/config/udiroot-conf.js';
import { gatewayProgram } from '../../gateway/command-line.js';
import * as keyTables from '../../gateway/config/imagemanager-keys.js';
import { SHIFTER_OPTIONS, parseShifterCommandLine } from '../../node-daemon/command/options.js';
import { shifterdProgram } from '../../node-daemon/daemon-command-line.js';
import { nodeCheckProgram } from '../../node-daemon/health/node-check-program.js';
import { allManPages, manPagePath } from '../../tools/man/pages.js';
import { REPO } from '../node-daemon/runtime-fixture.js';

const MAN = join(REPO, 'dist', 'man');

function groff(args: string[]): { stdout: string; stderr: string } {
  const r = spawnSync('groff', args, { encoding: 'utf8' });
  if (r.error !== undefined) throw new Error(`groff cannot run (${r.error.message}): install groff-base (apt-get)`);
  return { stdout: r.stdout, stderr: r.stderr };
}

/** The page as plain text, one option or key term per line (no bold, no wrapping). */
function rendered(file: string): string {
  return groff(['-man', '-Tascii', '-P-cbou', '-rLL=300n', join(MAN, file)]).stdout;
}

/** The term lines of the page's items: indented 7, as man(7) sets .TP tags. */
function termLines(text: string): string[] {
  return text.split('\n').filter((l) => /^ {7}\S/.test(l));
}

/** Whether an item's term is `term` (a short tag shares its line with the text). */
function hasTerm(lines: readonly string[], term: string): boolean {
  return lines.some((l) => l.startsWith(`       ${term}`) && /^(\s|$)/.test(l.slice(7 + term.length)));
}

test('the build wrote exactly the pages tools/man defines', (t) => {
  const written = readdirSync(MAN, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name).slice(MAN.length + 1))
    .sort();
  t.deepEqual(written, allManPages().map(manPagePath).sort());
  t.true(['man1/shifter.1', 'man5/udiRoot.conf.5', 'man5/imagemanager.json.5'].every((p) => written.includes(p)));
});

for (const page of allManPages()) {
  test(`${manPagePath(page)} renders without warnings`, (t) => {
    const file = join(MAN, manPagePath(page));
    t.true(existsSync(file), `${file} missing: run npm run build`);
    const r = groff(['-man', '-Tutf8', '-ww', '-z', file]);
    t.is(r.stderr, '');
  });
}

test('shifter(1) lists every spelling of every option the parser accepts, and the parser accepts each', (t) => {
  const terms = termLines(rendered('man1/shifter.1')).join('\n');
  for (const o of SHIFTER_OPTIONS.filter((s) => s.hidden !== true)) {
    const longs = [o.long, ...(o.aliases ?? [])].filter((l) => l !== undefined).map((l) => `--${l}`);
    const spellings = [...(o.short === undefined ? [] : [`-${o.short}`]), ...longs];
    for (const spelling of spellings) {
      t.regex(terms, new RegExp(`(^|[ ,])${spelling.replace(/[-[\]]/g, '\\$&')}($|[ ,=[<])`, 'm'), spelling);
      const args = o.value.kind === 'required' ? [spelling, o.value.name === 'NAME=VALUE' ? 'A=1' : 'x'] : [spelling];
      t.notThrows(() => parseShifterCommandLine(args, {}), `the parser accepts ${args.join(' ')}`);
    }
  }
  t.false(terms.includes('-n'), 'the ignored -n is not advertised');
});

function commanderSpellings(program: Command): string[] {
  const help = program.createHelp();
  return help.visibleOptions(program).flatMap((o) => [o.short, o.long].filter((s) => s !== undefined));
}

const commanderPages: Array<[string, () => Command]> = [
  [
    'man1/shifterimg.1',
    () => shifterimgProgram({ stdout: process.stdout, stderr: process.stderr, stdin: process.stdin }, () => undefined),
  ],
  ['man1/shifterd.1', shifterdProgram],
  ['man1/shifter-gateway.1', gatewayProgram],
  ['man8/shifter-node-check.8', nodeCheckProgram],
];

for (const [file, program] of commanderPages) {
  test(`${file} lists every option of the program's parser`, (t) => {
    const terms = termLines(rendered(file)).join('\n');
    const spellings = commanderSpellings(program());
    t.true(spellings.includes('--version') && spellings.includes('--help'));
    for (const s of spellings) t.regex(terms, new RegExp(`(^|[ ,])${s}($|[ ,<])`, 'm'), s);
  });
}

test('shifterimg(1) lists every command', (t) => {
  const terms = termLines(rendered('man1/shifterimg.1'));
  const program = shifterimgProgram(
    { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin },
    () => undefined,
  );
  for (const c of program.commands)
    t.true(
      terms.some((l) => l.startsWith(`       ${c.name()} `) || l.trim() === c.name()),
      c.name(),
    );
});

test('udiRoot.conf(5) lists every key the parser knows and every module setting', (t) => {
  const terms = termLines(rendered('man5/udiRoot.conf.5'));
  for (const k of [...KNOWN_KEYS, 'siteContact', ...Object.keys(MODULE_SETTING_DESCRIPTIONS)]) {
    t.true(hasTerm(terms, k), k);
  }
});

test('imagemanager.json(5) lists every key of every section the parser knows', (t) => {
  const terms = termLines(rendered('man5/imagemanager.json.5'));
  const tables = Object.values(keyTables).filter((v): v is Record<string, string> => typeof v === 'object');
  t.true(tables.length >= 7);
  for (const table of tables) for (const k of Object.keys(table)) t.true(hasTerm(terms, k), k);
});
