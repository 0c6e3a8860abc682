/**
 * Finding, reading and vetting udiRoot.conf on disk; the parsing itself is in udiroot-conf.ts.
 */
import { open, readFile, stat } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { ShifterError, describeError } from '../errors.js';
import { parseUdiRootConf, type ParsedUdiRootConf } from './udiroot-conf.js';

export const DEFAULT_UDIROOT_CONF = '/etc/shifter/udiRoot.conf';
export const UDIROOT_CONF_ENV = 'SHIFTER_UDIROOT_CONF';

/** `--config`, else `$SHIFTER_UDIROOT_CONF`, else /etc/shifter/udiRoot.conf. */
export function resolveUdiRootConfPath(cliPath: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  if (cliPath !== undefined && cliPath.length > 0) return cliPath;
  const fromEnv = env[UDIROOT_CONF_ENV];
  if (fromEnv !== undefined && fromEnv.length > 0) return fromEnv;
  return DEFAULT_UDIROOT_CONF;
}

export async function readUdiRootConf(path: string): Promise<ParsedUdiRootConf> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    const errno = (e as NodeJS.ErrnoException).code;
    const why =
      errno === 'ENOENT'
        ? 'no such file'
        : errno === 'EACCES'
          ? 'permission denied'
          : errno === 'EISDIR'
            ? 'it is a directory'
            : describeError(e);
    throw new ShifterError(
      'BAD_CONFIG',
      `cannot read udiRoot.conf at ${path} (${why}): pass --config <file> or set ${UDIROOT_CONF_ENV}`,
      e,
    );
  }
  return parseUdiRootConf(text, path);
}

/**
 * Upstream's rule for programs that act as root on the file's say-so: the file must be owned by
 * root and not writable by group or others, or any user who can edit it controls what gets
 * mounted where. Unprivileged readers (shifterimg) do not need this.
 * Returns the problem rather than throwing, so the daemon can decide how to report it.
 */
export async function checkConfigFileTrust(path: string): Promise<ShifterError | undefined> {
  let st: Stats;
  try {
    st = await stat(path);
  } catch (e) {
    return new ShifterError('BAD_CONFIG', `cannot check ${path}: ${describeError(e)}`, e);
  }
  return trustProblem(path, st);
}

function trustProblem(path: string, st: Stats): ShifterError | undefined {
  if (!st.isFile()) {
    return new ShifterError('BAD_CONFIG', `${path} is not a regular file`);
  }
  if (st.uid !== 0) {
    return new ShifterError(
      'BAD_CONFIG',
      `${path} must be owned by root (it is owned by uid ${st.uid}): chown root ${path}`,
    );
  }
  if ((st.mode & 0o022) !== 0) {
    return new ShifterError(
      'BAD_CONFIG',
      `${path} must not be writable by group or others (mode ${(st.mode & 0o777).toString(8)}): chmod go-w ${path}`,
    );
  }
  return undefined;
}

/**
 * For privileged readers (the node daemon): checks and reads the same open file, so the file
 * cannot be swapped between the check and the read.
 */
export async function readTrustedUdiRootConf(path: string): Promise<ParsedUdiRootConf> {
  let handle;
  try {
    handle = await open(path, 'r');
  } catch (e) {
    throw new ShifterError('BAD_CONFIG', `cannot read udiRoot.conf at ${path}: ${describeError(e)}`, e);
  }
  try {
    const problem = trustProblem(path, await handle.stat());
    if (problem) throw problem;
    return parseUdiRootConf(await handle.readFile('utf8'), path);
  } finally {
    await handle.close();
  }
}
