/**
 * What runs inside the container: argv, working directory, environment. Pure functions of the
 * parsed options, the image's config and the site config.
 *
 * argv (decided; upstream never ran CMD without --entrypoint, radiasoft/sirepo#2783):
 *   --entrypoint=cmd   -> [cmd, ...args]                  (cmd is one element, never split; no CMD, as
 *                                                          Docker's --entrypoint)
 *   --entrypoint       -> ENTRYPOINT + (args || CMD)      (error if the image has no ENTRYPOINT)
 *   args, no option    -> args                            (as upstream: `shifter --image=x python3 a.py` runs python3,
 *                                                          a wrapper ENTRYPOINT is not put in front of it)
 *   no args, no option -> ENTRYPOINT + CMD, else CMD, else ENTRYPOINT, else /bin/sh   (Docker's default run)
 * argv[0] is not resolved here: the launcher searches it, after entering the container, in the
 * PATH of the environment this module builds (commandSearchPath), as execvpe would there.
 */
import { posix } from 'node:path';
import { ShifterError } from '../../common/errors.js';
import type { EntrypointChoice, WorkdirChoice } from './options.js';

/** The parts of an image's config that decide how it runs (from its .meta). */
export interface ImageRunConfig {
  entrypoint: readonly string[] | undefined;
  cmd: readonly string[] | undefined;
  workdir: string | undefined;
  /** `NAME=VALUE` entries in image order. */
  env: readonly string[];
}

export const DEFAULT_SHELL = '/bin/sh';
/** Used for the command search when the final environment has no PATH (Docker's default). */
export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

function nonEmpty(a: readonly string[] | undefined): a is readonly string[] {
  return a !== undefined && a.length > 0;
}

export function containerArgv(
  entry: EntrypointChoice,
  args: readonly string[],
  image: ImageRunConfig,
  imageName: string,
): string[] {
  switch (entry.kind) {
    case 'explicit':
      return [entry.cmd, ...args];
    case 'image':
      if (!nonEmpty(image.entrypoint)) {
        throw new ShifterError(
          'BAD_ARGUMENT',
          `--entrypoint: image ${imageName} has no ENTRYPOINT; give one with --entrypoint=/path/to/cmd or name the command`,
        );
      }
      return [...image.entrypoint, ...(args.length > 0 ? args : (image.cmd ?? []))];
    case 'none':
      if (args.length > 0) return [...args];
      if (nonEmpty(image.entrypoint)) return [...image.entrypoint, ...(image.cmd ?? [])];
      if (nonEmpty(image.cmd)) return [...image.cmd];
      return [DEFAULT_SHELL];
  }
}

/** The directory the launcher chdirs to (it falls back to / with a warning when it is missing). */
export function containerWorkdir(
  choice: WorkdirChoice,
  hostCwd: string,
  image: ImageRunConfig,
  imageName: string,
): string {
  switch (choice.kind) {
    case 'host':
      return hostCwd;
    case 'explicit':
      return posix.normalize(choice.dir);
    case 'image':
      if (image.workdir === undefined || image.workdir === '') {
        throw new ShifterError(
          'BAD_ARGUMENT',
          `--workdir: image ${imageName} has no WORKDIR; give one with --workdir=/some/dir`,
        );
      }
      return image.workdir.startsWith('/') ? posix.normalize(image.workdir) : posix.join('/', image.workdir);
  }
}

/** Site or module env edits, each a list of `NAME=VALUE` (unset: names). */
export interface EnvEdits {
  siteEnv: readonly string[];
  siteEnvAppend: readonly string[];
  siteEnvPrepend: readonly string[];
  siteEnvUnset: readonly string[];
}

export interface EnvChainInput {
  callerEnv: Readonly<Record<string, string | undefined>>;
  clearEnv: boolean;
  imageRequest: string;
  imageId: string;
  image: ImageRunConfig;
  /** Already parsed --env-file entries, in file order. */
  envFile: ReadonlyArray<readonly [string, string]>;
  cliEnv: ReadonlyArray<readonly [string, string]>;
  /** Active modules in order, then the global site edits are applied last. */
  modules: readonly EnvEdits[];
  site: EnvEdits;
}

function splitAssignment(entry: string): [string, string] | undefined {
  const eq = entry.indexOf('=');
  if (eq <= 0) return undefined;
  return [entry.slice(0, eq), entry.slice(eq + 1)];
}

function applyEdits(env: Map<string, string>, edits: EnvEdits): void {
  for (const e of edits.siteEnv) {
    const kv = splitAssignment(e);
    if (kv && kv[1] !== '') env.set(kv[0], kv[1]);
  }
  for (const e of edits.siteEnvAppend) {
    const kv = splitAssignment(e);
    if (!kv || kv[1] === '') continue;
    const cur = env.get(kv[0]);
    env.set(kv[0], cur ? `${cur}:${kv[1]}` : kv[1]);
  }
  for (const e of edits.siteEnvPrepend) {
    const kv = splitAssignment(e);
    if (!kv || kv[1] === '') continue;
    const cur = env.get(kv[0]);
    env.set(kv[0], cur ? `${kv[1]}:${cur}` : kv[1]);
  }
  for (const name of edits.siteEnvUnset) env.delete(name);
}

/**
 * upstream 3.3 step 12: caller env (or empty with -E) -> SHIFTER_IMAGEREQUEST, SHIFTER_IMAGE ->
 * image ENV -> --env-file -> --env -> each module's siteEnv/Append/Prepend/Unset -> the site's.
 * Returns a map in insertion order.
 */
export function containerEnv(input: EnvChainInput): Map<string, string> {
  const env = new Map<string, string>();
  if (!input.clearEnv) {
    for (const [k, v] of Object.entries(input.callerEnv)) if (v !== undefined) env.set(k, v);
  }
  env.set('SHIFTER_IMAGEREQUEST', input.imageRequest);
  env.set('SHIFTER_IMAGE', input.imageId);
  for (const e of input.image.env) {
    const kv = splitAssignment(e);
    if (kv) env.set(kv[0], kv[1]);
  }
  for (const [k, v] of input.envFile) env.set(k, v);
  for (const [k, v] of input.cliEnv) env.set(k, v);
  for (const m of input.modules) applyEdits(env, m);
  applyEdits(env, input.site);
  return env;
}

export function envToList(env: ReadonlyMap<string, string>): string[] {
  return [...env].map(([k, v]) => `${k}=${v}`);
}

/** The PATH the launcher searches argv[0] in: the container's, never the caller's host PATH (issue #77). */
export function commandSearchPath(env: ReadonlyMap<string, string>): string {
  const p = env.get('PATH');
  return p !== undefined && p !== '' ? p : DEFAULT_PATH;
}

/**
 * `--env-file` contents: `NAME=VALUE` lines, `#` comments and blank lines skipped, quotes kept
 * literally (as upstream and `docker --env-file`).
 */
export function parseEnvFile(text: string, fileName: string): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  text.split('\n').forEach((rawLine, i) => {
    const line = rawLine.replace(/\r$/, '');
    const trimmed = line.trim();
    if (trimmed === '' || trimmed.startsWith('#')) return;
    const kv = splitAssignment(line.trimStart());
    if (!kv)
      throw new ShifterError(
        'BAD_ARGUMENT',
        `--env-file ${fileName} line ${i + 1}: expected NAME=VALUE, got '${trimmed.slice(0, 60)}'`,
      );
    if (/\s/.test(kv[0]))
      throw new ShifterError(
        'BAD_ARGUMENT',
        `--env-file ${fileName} line ${i + 1}: the name '${kv[0]}' contains whitespace`,
      );
    out.push(kv);
  });
  return out;
}
