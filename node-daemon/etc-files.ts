/**
 * The site's /etc files inside a container (upstream 3.5 step 4 f-j): passwd and group either
 * copied from `etcPath` or generated for the caller (populateEtcDynamically), a fixed
 * nsswitch.conf that only reads those files, the host's hosts and resolv.conf, an empty shadow,
 * and /etc/mtab -> /proc/mounts. The rendering is pure; the NSS and file reads are below it.
 */
import { execFile } from 'node:child_process';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ShifterError } from '../common/errors.js';
import type { FileEntry, SymlinkEntry } from './native/environment-spec.js';

export interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  gecos: string;
  home: string;
  shell: string;
}

export interface GroupEntry {
  name: string;
  gid: number;
  members: string[];
}

export const NSSWITCH_CONF = [
  'passwd: files',
  'group: files',
  'shadow: files',
  'hosts: files dns',
  'networks: files dns',
  'protocols: files',
  'services: files',
  'ethers: files',
  'rpc: files',
  'netgroup: files',
  '',
].join('\n');

export const HOST_CONF = 'order bind,hosts\nmulti on\n';

/** One passwd/group field may not contain ':' or a newline; NSS data is not trusted blindly. */
function field(value: string): string {
  return value.replace(/[:\n\r]/g, ' ');
}

export function renderPasswd(entries: readonly PasswdEntry[]): string {
  return entries.map((e) => `${field(e.name)}:x:${e.uid}:${e.gid}:${field(e.gecos)}:${field(e.home)}:${field(e.shell)}\n`).join('');
}

export function parsePasswdLine(line: string): PasswdEntry | undefined {
  const f = line.split(':');
  if (f.length < 7) return undefined;
  const uid = Number(f[2]);
  const gid = Number(f[3]);
  if (!Number.isInteger(uid) || !Number.isInteger(gid)) return undefined;
  return { name: f[0]!, uid, gid, gecos: f[4]!, home: f[5]!, shell: f.slice(6).join(':') };
}

export function parseGroupLine(line: string): GroupEntry | undefined {
  const f = line.split(':');
  if (f.length < 3) return undefined;
  const gid = Number(f[2]);
  if (!Number.isInteger(gid) || f[0] === '') return undefined;
  return { name: f[0]!, gid, members: (f[3] ?? '').split(',').map((m) => m.trim()).filter((m) => m !== '') };
}

/**
 * upstream filterEtcGroup: every group keeps only `name:x:gid:`, and the user is listed as a
 * member of at most `maxGroupCount` groups that listed them (or are named like them). Other
 * users' memberships are not leaked into the container.
 */
export function filterGroups(groups: readonly GroupEntry[], userName: string, maxGroupCount: number): string {
  let listed = 0;
  return groups.map((g) => {
    let members = '';
    if (listed < maxGroupCount && (g.members.includes(userName) || g.name === userName)) {
      members = userName;
      listed += 1;
    }
    return `${field(g.name)}:x:${g.gid}:${members}\n`;
  }).join('');
}

export interface EtcInput {
  /** The caller's passwd entry and any usersToImport. */
  users: readonly PasswdEntry[];
  /** The caller's groups (primary first), with NSS member lists. */
  groups: readonly GroupEntry[];
  userName: string;
  maxGroupCount: number;
  /** etcPath files (name -> content) when not populating dynamically. */
  etcPathFiles: ReadonlyMap<string, string> | undefined;
  hostHosts: string | undefined;
  hostResolvConf: string | undefined;
}

/** The /etc entries for the spec (files written on the scaffold's /etc, owned by root). */
export function buildEtcEntries(input: EtcInput): Array<FileEntry | SymlinkEntry> {
  const files = new Map<string, string>();
  if (input.etcPathFiles !== undefined) {
    for (const [name, content] of input.etcPathFiles) files.set(name, content);
    const group = files.get('group');
    if (group !== undefined) {
      const parsed = group.split('\n').map(parseGroupLine).filter((g): g is GroupEntry => g !== undefined);
      files.set('group', filterGroups(parsed, input.userName, input.maxGroupCount));
    }
  } else {
    files.set('passwd', renderPasswd(input.users));
    files.set('group', filterGroups(input.groups, input.userName, input.maxGroupCount));
    files.set('nsswitch.conf', NSSWITCH_CONF);
    files.set('host.conf', HOST_CONF);
  }
  if (input.hostHosts !== undefined) files.set('hosts', input.hostHosts);
  if (input.hostResolvConf !== undefined) files.set('resolv.conf', input.hostResolvConf);
  files.set('shadow', '');
  const entries: Array<FileEntry | SymlinkEntry> = [...files].map(([name, content]) => ({
    kind: 'file' as const, target: `/etc/${name}`, content, mode: 0o644,
  }));
  entries.push({ kind: 'symlink', target: '/etc/mtab', linkTo: '/proc/mounts' });
  return entries;
}

// ---- I/O: NSS lookups and host files ----------------------------------------------------------

function getent(db: 'passwd' | 'group', key: string): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    execFile('getent', [db, key], { timeout: 10_000 }, (err, stdout) => {
      if (err) {
        // exit 2: key not found; anything else is an NSS failure worth reporting.
        if ((err as { code?: unknown }).code === 2) resolve(undefined);
        else reject(new ShifterError('IO_ERROR', `getent ${db} ${key} failed: ${err.message}`));
        return;
      }
      resolve(stdout.split('\n')[0]);
    });
  });
}

export async function lookupUserByUid(uid: number): Promise<PasswdEntry> {
  const line = await getent('passwd', String(uid));
  const entry = line === undefined ? undefined : parsePasswdLine(line);
  if (entry === undefined) throw new ShifterError('NOT_FOUND', `uid ${uid} has no passwd entry on this node (getent passwd ${uid}); ask the site to add the account`);
  return entry;
}

export async function lookupUserByName(name: string): Promise<PasswdEntry | undefined> {
  const line = await getent('passwd', name);
  return line === undefined ? undefined : parsePasswdLine(line);
}

/** Groups by gid; a gid without a name becomes `gid<N>` so `id` still shows something sensible. */
export async function lookupGroups(gids: readonly number[]): Promise<GroupEntry[]> {
  return Promise.all(gids.map(async (gid) => {
    const line = await getent('group', String(gid));
    return (line === undefined ? undefined : parseGroupLine(line)) ?? { name: `gid${gid}`, gid, members: [] };
  }));
}

/** Every regular file directly in etcPath (upstream copies them all). */
export async function readEtcPath(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (e) {
    throw new ShifterError('BAD_CONFIG', `etcPath ${dir} cannot be read: ${(e as Error).message}`);
  }
  for (const name of names.sort()) {
    const p = join(dir, name);
    if ((await stat(p)).isFile()) out.set(name, await readFile(p, 'utf8'));
  }
  for (const required of ['passwd', 'group']) {
    if (!out.has(required)) throw new ShifterError('BAD_CONFIG', `etcPath ${dir} has no ${required} file (or set populateEtcDynamically=1)`);
  }
  return out;
}

export async function readHostFile(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch {
    return undefined;
  }
}

export interface EtcSource {
  populateEtcDynamically: boolean;
  etcPath: string | undefined;
  usersToImport: readonly string[];
  maxGroupCount: number;
}

/** Gathers the inputs for one caller from NSS and the host, then renders the entries. */
export async function etcEntriesFor(source: EtcSource, uid: number, gid: number, groups: readonly number[]): Promise<Array<FileEntry | SymlinkEntry>> {
  const user = await lookupUserByUid(uid);
  const [hostHosts, hostResolvConf] = await Promise.all([readHostFile('/etc/hosts'), readHostFile('/etc/resolv.conf')]);
  if (!source.populateEtcDynamically && source.etcPath !== undefined) {
    return buildEtcEntries({
      users: [], groups: [], userName: user.name, maxGroupCount: source.maxGroupCount,
      etcPathFiles: await readEtcPath(source.etcPath), hostHosts, hostResolvConf,
    });
  }
  const users = [{ ...user, gid }];
  for (const name of source.usersToImport) {
    const extra = await lookupUserByName(name);
    if (extra !== undefined && extra.uid !== uid) users.push(extra);
  }
  const gids = [gid, ...groups.filter((g) => g !== gid)];
  return buildEtcEntries({
    users, groups: await lookupGroups(gids), userName: user.name, maxGroupCount: source.maxGroupCount,
    etcPathFiles: undefined, hostHosts, hostResolvConf,
  });
}
