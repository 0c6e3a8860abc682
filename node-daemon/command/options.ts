/**
 * `shifter`'s command line, parsed by shifterd from the argv the launcher forwards. The options
 * are one table, SHIFTER_OPTIONS, from which the parser, the help text and shifter(1) are made;
 * the launcher keeps a build-time copy of the help (scripts/build-native.mjs) for nodes where
 * shifterd does not answer. Behaviour follows upstream's getopt string "hnvV:i:e:Ew::m:":
 * parsing stops at the first non-option, `-V` is repeatable and concatenated with `;`, the
 * first `-V` discards SHIFTER_VOLUME, `-m` last one wins, and `--workdir`/`--entrypoint` take an
 * optional value only when attached (`--workdir=/x`, `-w/x`): a bare `--workdir python3` leaves
 * `python3` as the command, as getopt does.
 */
import { Command, CommanderError, Option } from 'commander';
import { ShifterError } from '../../common/errors.js';
import { VERSION_LINE } from '../../common/version.js';

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

/** `help`: text the user asked for (--help, --version), printed on stdout with exit code 0. */
export type ParsedCommandLine = { kind: 'help'; text: string } | { kind: 'run'; options: ShifterOptions };

export type EnvMap = Readonly<Record<string, string | undefined>>;

/**
 * How an option takes its value: `required` as the next token or attached (`-ifoo`, `--image=foo`);
 * `attached` only when attached (`-w/dir`, `--workdir=/dir`), else the option stands alone.
 */
export type ShifterOptionValue =
  | { readonly kind: 'none' }
  | { readonly kind: 'required'; readonly name: string }
  | { readonly kind: 'attached'; readonly name: string };

/** One option of `shifter`: the parser, `shifter --help` and shifter(1) are all made from SHIFTER_OPTIONS. */
export interface ShifterOptionSpec {
  /** One letter, without the dash. */
  readonly short?: string;
  /** Without the dashes. */
  readonly long?: string;
  /** Other long spellings, same meaning. */
  readonly aliases?: readonly string[];
  readonly value: ShifterOptionValue;
  readonly repeatable?: boolean;
  readonly description: string;
  /** Accepted and ignored (upstream's -n): not shown in the help or the man page. */
  readonly hidden?: boolean;
}

const NO_VALUE = { kind: 'none' } as const;

export const SHIFTER_OPTIONS: readonly ShifterOptionSpec[] = [
  {
    short: 'i',
    long: 'image',
    value: { kind: 'required', name: 'type:tag' },
    description: 'image to use, e.g. docker:ubuntu:22.04, ubuntu:22.04 or id:<hex>',
  },
  {
    short: 'V',
    long: 'volume',
    value: { kind: 'required', name: 'from:to[:flags]' },
    repeatable: true,
    description: 'bind host dir <from> at <to>; repeatable; several separated by ";"; flags: ro, perNodeCache=size=..',
  },
  {
    short: 'm',
    long: 'module',
    value: { kind: 'required', name: 'm1,m2|none' },
    description: 'site modules to load instead of the defaults, or "none"',
  },
  {
    long: 'entrypoint',
    aliases: ['entry'],
    value: { kind: 'attached', name: 'cmd' },
    description: 'run the image ENTRYPOINT, or cmd (one program, not split by spaces)',
  },
  {
    short: 'w',
    long: 'workdir',
    value: { kind: 'attached', name: 'dir' },
    description: 'working directory: the image WORKDIR, or dir (default: the current directory)',
  },
  {
    short: 'e',
    long: 'env',
    value: { kind: 'required', name: 'NAME=VALUE' },
    repeatable: true,
    description: 'set a variable in the container; repeatable',
  },
  { long: 'env-file', value: { kind: 'required', name: 'path' }, description: 'read NAME=VALUE lines from a file' },
  { short: 'E', long: 'clearenv', value: NO_VALUE, description: 'start from an empty environment instead of yours' },
  { short: 'v', long: 'verbose', value: NO_VALUE, description: 'print what is being looked up' },
  {
    long: 'check',
    value: NO_VALUE,
    description: 'check that the modules fit the image (glibc, MPI ABI, GPU driver), run nothing',
  },
  { short: 'h', long: 'help', value: NO_VALUE, description: 'show this help' },
  { long: 'version', value: NO_VALUE, description: 'print the version and exit' },
  { short: 'n', value: NO_VALUE, hidden: true, description: 'ignored, as upstream' },
];

/** How the option is written in the help and the man page, e.g. `-w, --workdir[=dir]`. */
export function shifterOptionTerm(o: ShifterOptionSpec): string {
  const attached = o.value.kind === 'attached' ? `[=${o.value.name}]` : '';
  const separate = o.value.kind === 'required' ? ` <${o.value.name}>` : '';
  const longs = [o.long, ...(o.aliases ?? [])].filter((l) => l !== undefined).map((l) => `--${l}${attached}`);
  const spellings = [...(o.short === undefined ? [] : [`-${o.short}`]), ...longs];
  return spellings.join(', ') + separate;
}

// Every spelling of an attached-value option is rewritten by normalizeArgv to one of two hidden
// options, which commander can parse: --x-<long>-value <v> and --x-<long>-from-image.
const valueOptionOf = (o: ShifterOptionSpec): string => `--x-${o.long}-value`;
const bareOptionOf = (o: ShifterOptionSpec): string => `--x-${o.long}-from-image`;

const ATTACHED = SHIFTER_OPTIONS.filter((o) => o.value.kind === 'attached');
/** Short letters by what they take. */
const SHORT_WITH_VALUE = new Set(SHIFTER_OPTIONS.filter((o) => o.value.kind === 'required').map((o) => o.short));
const SHORT_FLAGS = new Set(SHIFTER_OPTIONS.filter((o) => o.value.kind === 'none').map((o) => o.short));
const SHORT_ATTACHED = new Map(ATTACHED.filter((o) => o.short !== undefined).map((o) => [o.short, o]));
const LONG_WITH_VALUE = new Set(
  SHIFTER_OPTIONS.filter((o) => o.value.kind === 'required' && o.long !== undefined).map((o) => `--${o.long}`),
);
const LONG_ATTACHED = new Map(ATTACHED.flatMap((o) => [o.long, ...(o.aliases ?? [])].map((l) => [`--${l}`, o])));

function commanderOption(o: ShifterOptionSpec): Option {
  const names = [...(o.short === undefined ? [] : [`-${o.short}`]), ...(o.long === undefined ? [] : [`--${o.long}`])];
  const value = o.value.kind === 'required' ? ` <${o.value.name}>` : '';
  const option = new Option(names.join(', ') + value, o.description);
  if (o.repeatable === true) option.argParser(collect);
  return o.hidden === true ? option.hideHelp() : option;
}

function buildProgram(): Command {
  const termOf = new Map<Option, string>();
  const program = new Command('shifter');
  program
    .usage('[options] [--] [command [args...]]')
    .description('Run a command inside a container image on this node.')
    .helpOption(false)
    // The same text whoever asks: shifterd (no terminal) and the launcher's copy made at build time.
    .configureHelp({ helpWidth: 80, optionTerm: (opt) => termOf.get(opt) ?? opt.flags })
    .exitOverride()
    .configureOutput({ writeOut: () => undefined, writeErr: () => undefined })
    .passThroughOptions()
    .allowExcessArguments()
    .argument('[command...]', 'the command to run inside the image (default: the image ENTRYPOINT/CMD, else /bin/sh)');
  for (const spec of SHIFTER_OPTIONS) {
    // An attached-value option is shown as written; normalizeArgv rewrites it to two hidden ones.
    const option =
      spec.value.kind === 'attached' ? new Option(`--${spec.long}`, spec.description) : commanderOption(spec);
    termOf.set(option, shifterOptionTerm(spec));
    program.addOption(option);
  }
  for (const spec of ATTACHED) {
    program.addOption(new Option(`${valueOptionOf(spec)} <value>`).hideHelp());
    program.addOption(new Option(bareOptionOf(spec)).hideHelp());
  }
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
      const attached = LONG_ATTACHED.get(name);
      if (attached !== undefined) {
        out.push(...(value === undefined ? [bareOptionOf(attached)] : [valueOptionOf(attached), value]));
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
      const attached = SHORT_ATTACHED.get(ch);
      if (attached !== undefined) {
        const rest = arg.slice(c + 1);
        out.push(...(rest === '' ? [bareOptionOf(attached)] : [valueOptionOf(attached), rest]));
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
  if (o.version === true) return { kind: 'help', text: `${VERSION_LINE}\n` };

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
