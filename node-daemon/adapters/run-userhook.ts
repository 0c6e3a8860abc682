import { ShifterError } from '../../common/errors.js';
import type { Environment } from './environment-spec.js';
import { hookLogLines, runHelper } from './helper-process.js';

/** Upstream's module_<name>_userhook, for one launch into an existing environment. */
export interface UserHookRun {
  env: Pick<Environment, 'userNsFd' | 'mntNsFd'>;
  module: string;
  /** A path inside the container (e.g. under /opt/udiImage/modules/<name>/). */
  script: string;
  uid: number;
  gid: number;
  groups: readonly number[];
  /** The command's working directory (the hook falls back to / when it cannot enter it). */
  cwd: string;
  /** The command's environment. */
  environ: readonly string[];
  timeoutSeconds: number;
}

/**
 * Runs `/bin/sh SCRIPT` the way the launcher runs the command: as the user with their groups,
 * inside the environment's user and mount namespaces, bounding set and ambient capabilities
 * dropped, no_new_privs; stdin on /dev/null. Resolves to its log lines
 * (`module <name> userhook <stdout|stderr>: <line>`); rejects with a HookFailure carrying its
 * exit code and last stderr lines when it fails or outlives timeoutSeconds.
 */
export async function runUserHook(run: UserHookRun): Promise<string[]> {
  if (run.environ.some((e) => e.includes('\0')) || run.cwd.includes('\0') || run.script.includes('\0')) {
    throw new ShifterError('BAD_ARGUMENT', `module ${run.module} userhook: NUL byte in its environment or paths`);
  }
  const groups = [...new Set([run.gid, ...run.groups.filter((g) => g !== 0)])];
  const tokens = [
    ...['uid', String(run.uid), 'gid', String(run.gid), 'groups', groups.join(',')],
    ...['cwd', run.cwd, 'module', run.module, 'script', run.script, 'seconds', String(run.timeoutSeconds)],
    'env',
    ...run.environ.filter((e) => e.indexOf('=') > 0),
    'end',
  ];
  const body = Buffer.from(tokens.map((t) => `${t}\0`).join(''), 'utf8');
  const { text } = await runHelper(
    'run-userhook',
    body,
    [run.env.userNsFd, run.env.mntNsFd],
    0,
    run.timeoutSeconds * 1000,
  );
  return hookLogLines(text);
}
