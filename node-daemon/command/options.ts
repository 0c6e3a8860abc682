/**
 * `shifter`'s command line, parsed by shifterd from the argv the launcher forwards (the launcher
 * itself understands nothing). Behaviour follows upstream's getopt string "hnvV:i:e:Ew::m:":
 * parsing stops at the first non-option, `-V` is repeatable and concatenated with `;`, the
 * first `-V` discards SHIFTER_VOLUME, `-m` last one wins, and `--workdir`/`--entrypoint` take an
 * optional value only when attached (`--workdir=/x`, `-w/x`): a bare `--workdir python3` leaves
 * `python3` as the command, as getopt does.
 */
import { Command, CommanderError, Option } from 'commander';
import { ShifterError } from '../../common/errors.js';

export type EntrypointChoice =
  | { kind: 'none' } // run the command as given (or the image default)
  | { kind: 'image' } // bare --entrypoint: the image's ENTRYPOINT
  | { kind: 'explicit'; cmd: string }; // --entrypoint=cmd: one argv element, never split

export type WorkdirChoice =
  | { kind: 'host' } // default: the caller's cwd
  | { kind: 'image' } // bare --workdir: the image's WORKDIR
  | { kind: 'explicit'; dir: string };

export type ModuleChoice =
  | { kind: 'default' } // defaultModules from udiRoot.conf
  | { kind: 'none' }
  | { kind: 'list'; names: string[] };

export interface ShifterOptions {
  /** What to resolve, e.g. `docker:me/solver:2.1`, `me/solver:2.1`, `id:<hex>`; undefined when none was given. */
  image: string | undefined;
  /** The request as the user made it, exported as SHIFTER_IMAGEREQUEST inside the container. */
  imageRequest: string | undefined;
  /** Raw volume texts (each may hold several `;`-separated maps), CLI or env. */
  volumes: string[];
  modules: ModuleChoice;
  entrypoint: EntrypointChoice;
  workdir: WorkdirChoice;
  /** `--env` assignments in order, each `NAME=VALUE`. */
  env: Array<[string, string]>;
  envFile: string | undefined;
  clearEnv: boolean;
  verbose: boolean;
  /** --check: print whether the selected modules fit the image (pre-flight), run nothing. */
  check: boolean;
  command: string[];
}

export type ParsedCommandLine = { kind: 'help'; text: string } | { kind: 'run'; options: ShifterOptions };

export type EnvMap = Readonly<Record<string, string | undefined>>;

// Hidden options the bare (valueless) spellings are rewritten to before commander sees them.
const BARE_WORKDIR = '--x-workdir-from-image';
const BARE_ENTRYPOINT = '--x-entrypoint-from-image';

/** Short options that take a value (the rest of the token, or the next token). */
const SHORT_WITH_VALUE = new Set(['i', 'V', 'e', 'm']);
const SHORT_FLAGS = new Set(['h', 'n', 'v', 'E']);
const LONG_WITH_VALUE = new Set(['--image', '--volume', '--env', '--env-file', '--module']);

function buildProgram(): Command {
  const program = new Command('shifter');
  program
    .usage('[options] [--] [command [args...]]')
    .description('Run a command inside a container image on this node.')
    .helpOption(false)
    // getopt-style optional values must be attached; show them that way.
    .configureHelp({
      optionTerm: (opt) =>
        opt.flags
          .replace('--entrypoint [cmd]', '--entrypoint[=cmd], --entry[=cmd]')
          .replace('--workdir [dir]', '--workdir[=dir]'),
    })
    .exitOverride()
    .configureOutput({ writeOut: () => undefined, writeErr: () => undefined })
    .passThroughOptions()
    .allowExcessArguments()
    .argument('[command...]', 'the command to run inside the image (default: the image ENTRYPOINT/CMD, else /bin/sh)')
    .option('-i, --image <type:tag>', 'image to use, e.g. docker:ubuntu:22.04, ubuntu:22.04 or id:<hex>')
    .option(
      '-V, --volume <from:to[:flags]>',
      'bind host dir <from> at <to>; repeatable; several separated by ";"; flags: ro, perNodeCache=size=..',
      collect,
    )
    .option('-m, --module <m1,m2|none>', 'site modules to load instead of the defaults, or "none"')
    // Shown in the help only: normalizeArgv rewrites every spelling of these three to hidden options.
    .option('--entrypoint [cmd]', 'run the image ENTRYPOINT, or cmd (one program, not split by spaces)')
    .option('-w, --workdir [dir]', 'working directory: the image WORKDIR, or dir (default: the current directory)')
    .option('-e, --env <NAME=VALUE>', 'set a variable in the container; repeatable', collect)
    .option('--env-file <path>', 'read NAME=VALUE lines from a file')
    .option('-E, --clearenv', 'start from an empty environment instead of yours')
    .option('-v, --verbose', 'print what is being looked up')
    .option('--check', 'check that the modules fit the image (glibc, MPI ABI, GPU driver), run nothing')
    .option('-h, --help', 'show this help')
    .addOption(new Option('-n').hideHelp())
    .addOption(new Option('--x-workdir-value <dir>').hideHelp())
    .addOption(new Option('--x-entrypoint-value <cmd>').hideHelp())
    .addOption(new Option(BARE_WORKDIR).hideHelp())
    .addOption(new Option(BARE_ENTRYPOINT).hideHelp());
  return program;
}

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/**
 * Rewrites the spellings commander cannot express the getopt way: an optional value only when
 * attached. Stops at `--` or the first non-option, exactly where parsing stops.
 */
function normalizeArgv(argv: readonly string[]): string[] {
  const out: string[] = [];
  let i = 0;
  while (i < argv.length) {
    const arg = argv[i];
    if (arg === '--' || !arg.startsWith('-') || arg === '-') {
      out.push(...argv.slice(i));
      break;
    }
    i += 1;
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      const name = eq < 0 ? arg : arg.slice(0, eq);
      const value = eq < 0 ? undefined : arg.slice(eq + 1);
      if (name === '--workdir') {
        out.push(...(value === undefined ? [BARE_WORKDIR] : ['--x-workdir-value', value]));
      } else if (name === '--entrypoint' || name === '--entry') {
        out.push(...(value === undefined ? [BARE_ENTRYPOINT] : ['--x-entrypoint-value', value]));
      } else if (name.startsWith('--x-')) {
        throw new ShifterError('BAD_ARGUMENT', `unknown option '${name}'`);
      } else {
        out.push(arg);
        if (value === undefined && LONG_WITH_VALUE.has(name) && i < argv.length) out.push(argv[i++]);
      }
      continue;
    }
    // A cluster of short options, e.g. -Ev, -ifoo, -w/dir, -Ew.
    for (let c = 1; c < arg.length; c += 1) {
      const ch = arg[c];
      if (ch === 'w') {
        const rest = arg.slice(c + 1);
        out.push(...(rest === '' ? [BARE_WORKDIR] : ['--x-workdir-value', rest]));
        break;
      }
      if (SHORT_WITH_VALUE.has(ch)) {
        const rest = arg.slice(c + 1);
        out.push(`-${ch}`);
        if (rest !== '') out.push(rest);
        else if (i < argv.length) out.push(argv[i++]);
        break;
      }
      if (!SHORT_FLAGS.has(ch)) throw new ShifterError('BAD_ARGUMENT', `unknown option '-${ch}'; see 'shifter --help'`);
      out.push(`-${ch}`);
    }
  }
  return out;
}

function firstSet(env: EnvMap, ...names: string[]): string | undefined {
  for (const n of names) {
    const v = env[n];
    if (v !== undefined && v !== '') return v;
  }
  return undefined;
}

function parseEnvAssignment(text: string): [string, string] {
  const eq = text.indexOf('=');
  if (eq < 0) throw new ShifterError('BAD_ARGUMENT', `--env '${text}' has no '=': write --env NAME=VALUE`);
  const name = text.slice(0, eq);
  const value = text.slice(eq + 1);
  if (name === '') throw new ShifterError('BAD_ARGUMENT', `--env '${text}' has an empty name: write --env NAME=VALUE`);
  if (value === '')
    throw new ShifterError('BAD_ARGUMENT', `--env '${text}' has an empty value: write --env NAME=VALUE`);
  if (!/^[^\s=]+$/.test(name))
    throw new ShifterError('BAD_ARGUMENT', `--env '${text}': the name '${name}' contains whitespace`);
  return [name, value];
}

function parseModuleList(text: string): ModuleChoice {
  const trimmed = text.trim();
  if (trimmed === 'none') return { kind: 'none' };
  const names = trimmed
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (names.length === 0)
    throw new ShifterError('BAD_ARGUMENT', `--module '${text}' names no module: write --module=a,b or --module=none`);
  for (const n of names) {
    if (!/^[A-Za-z0-9][A-Za-z0-9.-]*$/.test(n)) {
      throw new ShifterError('BAD_ARGUMENT', `module name '${n}' is not valid (letters, digits, '.', '-'; no '_')`);
    }
  }
  return { kind: 'list', names };
}

/** Commander's messages start with "error: "; ours are one line with a pointer to --help. */
function fromCommanderError(e: CommanderError): ShifterError {
  const msg = e.message.replace(/^error:\s*/, '');
  return new ShifterError('BAD_ARGUMENT', `${msg}; see 'shifter --help'`);
}

/** The help text (what `shifter -h` prints). */
export function shifterHelpText(): string {
  return (
    buildProgram().helpInformation().replace(/\n+$/, '') +
    '\n' +
    [
      '',
      'Environment: SHIFTER_IMAGETYPE + SHIFTER_IMAGE, SHIFTER_IMAGEREQUEST, SHIFTER_VOLUME, SHIFTER_MODULE',
      '(or their SLURM_SPANK_ forms) give defaults; options override them.',
      'Examples:',
      '  shifter --image=me/solver:2.1 --volume=$SCRATCH/run1:/data python3 sim.py',
      '  shifter --image=ubuntu:22.04 --entrypoint',
      '',
    ].join('\n')
  );
}

/**
 * Parses the launcher's argv (without argv[0]) and the caller's environment. Throws ShifterError
 * (BAD_ARGUMENT) for anything it cannot accept.
 */
export function parseShifterCommandLine(argv: readonly string[], env: EnvMap): ParsedCommandLine {
  const program = buildProgram();
  try {
    program.parse(normalizeArgv(argv), { from: 'user' });
  } catch (e) {
    if (e instanceof CommanderError) throw fromCommanderError(e);
    throw e;
  }
  const o = program.opts<Record<string, unknown>>();
  if (o.help === true) return { kind: 'help', text: shifterHelpText() };

  // Environment defaults (SPANK exports the SLURM_SPANK_ forms into job steps).
  const envType = firstSet(env, 'SHIFTER_IMAGETYPE', 'SLURM_SPANK_SHIFTER_IMAGETYPE');
  const envImage = firstSet(env, 'SHIFTER_IMAGE', 'SLURM_SPANK_SHIFTER_IMAGE');
  const envRequest = firstSet(env, 'SHIFTER_IMAGEREQUEST', 'SLURM_SPANK_SHIFTER_IMAGEREQUEST');
  const envVolume = firstSet(env, 'SHIFTER_VOLUME', 'SLURM_SPANK_SHIFTER_VOLUME');
  const envModule = firstSet(env, 'SHIFTER_MODULE', 'SLURM_SPANK_SHIFTER_MODULE');

  let image: string | undefined;
  let imageRequest: string | undefined;
  const cliImage = o.image as string | undefined;
  if (cliImage !== undefined) {
    if (cliImage.trim() === '') throw new ShifterError('BAD_ARGUMENT', `--image is empty: write --image=NAME:TAG`);
    image = cliImage.trim();
    imageRequest = image;
  } else if (envType !== undefined && envImage !== undefined) {
    // Both are needed (upstream ignores one without the other); SPANK sets them to id:<hex>.
    image = `${envType}:${envImage}`;
    imageRequest = envRequest ?? image;
  } else if (envRequest !== undefined) {
    image = envRequest;
    imageRequest = envRequest;
  }

  const cliVolumes = (o.volume as string[] | undefined) ?? [];
  const volumes = cliVolumes.length > 0 ? cliVolumes : envVolume !== undefined ? [envVolume] : [];

  const cliModule = o.module as string | undefined;
  const moduleText = cliModule ?? envModule;
  const modules: ModuleChoice = moduleText === undefined ? { kind: 'default' } : parseModuleList(moduleText);

  let entrypoint: EntrypointChoice = { kind: 'none' };
  if (o.xEntrypointValue !== undefined) {
    const cmd = o.xEntrypointValue as string;
    if (cmd === '')
      throw new ShifterError(
        'BAD_ARGUMENT',
        `--entrypoint= is empty: write --entrypoint (the image's) or --entrypoint=/path/to/cmd`,
      );
    entrypoint = { kind: 'explicit', cmd };
  } else if (o.xEntrypointFromImage === true) {
    entrypoint = { kind: 'image' };
  }

  let workdir: WorkdirChoice = { kind: 'host' };
  if (o.xWorkdirValue !== undefined) {
    const dir = o.xWorkdirValue as string;
    if (!dir.startsWith('/'))
      throw new ShifterError(
        'BAD_ARGUMENT',
        `--workdir=${dir} is not an absolute path: write --workdir=/some/dir, or --workdir alone for the image WORKDIR`,
      );
    workdir = { kind: 'explicit', dir };
  } else if (o.xWorkdirFromImage === true) {
    workdir = { kind: 'image' };
  }

  const envFile = o.envFile as string | undefined;
  if (envFile !== undefined && envFile === '')
    throw new ShifterError('BAD_ARGUMENT', '--env-file is empty: give a file path');

  return {
    kind: 'run',
    options: {
      image,
      imageRequest,
      volumes,
      modules,
      entrypoint,
      workdir,
      env: ((o.env as string[] | undefined) ?? []).map(parseEnvAssignment),
      envFile,
      clearEnv: o.clearenv === true,
      verbose: o.verbose === true,
      check: o.check === true,
      command: program.args.slice(),
    },
  };
}
