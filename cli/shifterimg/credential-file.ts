/**
 * `~/.udiRoot/.cred`: the registry logins `shifterimg login` saved, in upstream's format so that
 * upstream's C shifterimg and this one share the file: one line per login,
 * `<system>:<location>=<munge credential of "user:password">`. The credential can only be read
 * through munged (ours only by the user's uid), and the file is the user's alone:
 * a file or directory that others could read or replace is refused, not silently used.
 */
import { lstat, mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../../common/atomic-write.js';
import { ShifterError } from '../../common/errors.js';

export interface SavedLogin {
  readonly system: string;
  readonly location: string;
  /** A munge credential whose payload is `user:password`. */
  readonly cred: string;
}

export function credentialDir(home: string): string {
  return join(home, '.udiRoot');
}

export function credentialFilePath(home: string): string {
  return join(credentialDir(home), '.cred');
}

/** Lines without `:` before `=` are skipped, as upstream's reader does. */
export function parseCredentialFile(text: string): SavedLogin[] {
  const out: SavedLogin[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    const eq = line.indexOf('=');
    if (line === '' || line.startsWith('#') || eq < 0) continue;
    const key = line.slice(0, eq).trim();
    const colon = key.indexOf(':');
    if (colon <= 0 || colon === key.length - 1) continue;
    out.push({ system: key.slice(0, colon), location: key.slice(colon + 1), cred: line.slice(eq + 1).trim() });
  }
  return out;
}

export function formatCredentialFile(logins: readonly SavedLogin[]): string {
  return logins.map((l) => `${l.system}:${l.location}=${l.cred}\n`).join('');
}

/** A location name that fits the file's `system:location=` key. */
export function checkLocationName(location: string): string {
  if (location === '' || /[=\s#]/.test(location)) {
    throw new ShifterError(
      'BAD_ARGUMENT',
      `"${location}" is not a registry location: name one of the gateway's Locations ` +
        '(e.g. registry.example.org) or default, without spaces, "=" or "#"',
    );
  }
  return location;
}

function modeText(mode: number): string {
  return `0${(mode & 0o777).toString(8)}`;
}

async function checkPrivate(path: string, kind: 'file' | 'directory', uid: number): Promise<boolean> {
  let st;
  try {
    st = await lstat(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw new ShifterError('IO_ERROR', `cannot read ${path}: ${(e as Error).message}`);
  }
  const fix =
    kind === 'file'
      ? `remove it (rm ${path}) and run shifterimg login again`
      : `remove it (rm -r ${path}) and run shifterimg login again`;
  const isKind = kind === 'file' ? st.isFile() : st.isDirectory();
  if (!isKind) throw new ShifterError('BAD_CONFIG', `${path} is not a ${kind}; ${fix}`);
  if (st.uid !== uid) {
    throw new ShifterError(
      'BAD_CONFIG',
      `${path} belongs to uid ${st.uid}, not to you (uid ${uid}): it holds your registry logins, so it is not used; ${fix}`,
    );
  }
  const wanted = kind === 'file' ? 0o600 : 0o700;
  if ((st.mode & 0o077) !== 0) {
    throw new ShifterError(
      'BAD_CONFIG',
      `${path} has mode ${modeText(st.mode)}, so others may read or change your registry logins; ` +
        `run chmod ${modeText(wanted)} ${path}, or ${fix}`,
    );
  }
  return true;
}

/** The saved logins; none when the file does not exist. */
export async function readCredentialFile(home: string, uid: number): Promise<SavedLogin[]> {
  const dir = credentialDir(home);
  const file = credentialFilePath(home);
  if (!(await checkPrivate(dir, 'directory', uid))) return [];
  if (!(await checkPrivate(file, 'file', uid))) return [];
  return parseCredentialFile(await readFile(file, 'utf8'));
}

/** Writes the whole file at once (temp file, fsync, rename) with mode 0600, in a 0700 directory. */
export async function writeCredentialFile(home: string, uid: number, logins: readonly SavedLogin[]): Promise<void> {
  const dir = credentialDir(home);
  if (!(await checkPrivate(dir, 'directory', uid))) await mkdir(dir, { mode: 0o700 });
  await checkPrivate(credentialFilePath(home), 'file', uid);
  await writeFileAtomic(credentialFilePath(home), formatCredentialFile(logins), 0o600);
}
