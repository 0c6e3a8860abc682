/**
 * The site's /etc files inside a container (upstream 3.5 step 4 f-j): passwd and group either
 * copied from `etcPath` or generated for the caller (populateEtcDynamically), a fixed
 * nsswitch.conf that only reads those files, the host's hosts and resolv.conf, an empty shadow,
 * and /etc/mtab -> /proc/mounts. The rendering is pure; the NSS and file reads are below it.
 */
import { execFile } from 'node:child_process';
import { LRUCache } from 'lru-cache';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ShifterError } from '../common/errors.js';
import type { FileEntry, SymlinkEntry } from './adapters/environment-spec.js';

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
  return entries
    .map((e) => `${field(e.name)}:x:${e.uid}:${e.gid}:${field(e.gecos)}:${field(e.home)}:${field(e.shell)}\n`)
    .join('');
}

export function parsePasswdLine(line: string): PasswdEntry | undefined {
  const f = line.split(':');
  if (f.length < 7) return undefined;
  const uid = Number(f[2]);
  const gid = Number(f[3]);
  if (!Number.isInteger(uid) || !Number.isInteger(gid)) return undefined;
  return { name: f[0], uid, gid, gecos: f[4], home: f[5], shell: f.slice(6).join(':') };
}

export function parseGroupLine(line: string): GroupEntry | undefined {
  const f = line.split(':');
  if (f.length < 3) return undefined;
  const gid = Number(f[2]);
  if (!Number.isInteger(gid) || f[0] === '') return undefined;
  return {
    name: f[0],
    gid,
    members: (f[3] ?? '')
      .split(',')
      .map((m) => m.trim())
      .filter((m) => m !== ''),
  };
}

/**
 * upstream filterEtcGroup: every group keeps only `name:x:gid:`, and the user is listed as a
 * member of at most `maxGroupCount` groups that listed them (or are named like them). Other
 * users' memberships are not leaked into the container.
 */
export function filterGroups(groups: readonly GroupEntry[], userName: string, maxGroupCount: number): string {
  let listed = 0;
  return groups
    .map((g) => {
      let members = '';
      if (listed < maxGroupCount && (g.members.includes(userName) || g.name === userName)) {
        members = userName;
        listed += 1;
      }
      return `${field(g.name)}:x:${g.gid}:${members}\n`;
    })
    .join('');
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
      const parsed = group
        .split('\n')
        .map(parseGroupLine)
        .filter((g): g is GroupEntry => g !== undefined);
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
    kind: 'file' as const,
    target: `/etc/${name}`,
    content,
    mode: 0o644,
  }));
  entries.push({ kind: 'symlink', target: '/etc/mtab', linkTo: '/proc/mounts' });
  return entries;
}

// ---- I/O: NSS lookups and host files ----------------------------------------------------------

/**
 * NSS answers are kept briefly (as nscd would): every new environment needs the caller's passwd
 * and group lines, and a `getent` process costs milliseconds, the largest part of building an
 * environment. A change to a user's groups shows up within NSS_TTL_MS.
 */
const NSS_TTL_MS = 60_000;
const nssCache = new LRUCache<string, Promise<string[]>>({ max: 4096, ttl: NSS_TTL_MS });

/** The lines `getent DB KEY...` prints (one per key found; keys not found are left out). */
function getent(db: 'passwd' | 'group', keys: readonly string[]): Promise<string[]> {
  const cacheKey = `${db}:${keys.join(',')}`;
  const hit = nssCache.get(cacheKey);
  if (hit !== undefined) return hit;
  const lookup = new Promise<string[]>((resolve, reject) => {
    execFile('getent', [db, ...keys], { timeout: 10_000 }, (err, stdout) => {
      // exit 2: one or more keys not found (the others are still printed); anything else is an
      // NSS failure worth reporting.
      if (err && (err as { code?: unknown }).code !== 2) {
        reject(new ShifterError('IO_ERROR', `getent ${db} ${keys.join(' ')} failed: ${err.message}`));
        return;
      }
      resolve(stdout.split('\n').filter((l) => l !== ''));
    });
  });
  nssCache.set(cacheKey, lookup);
  lookup.catch(() => nssCache.delete(cacheKey));
  return lookup;
}

export async function lookupUserByUid(uid: number): Promise<PasswdEntry> {
  const [line] = await getent('passwd', [String(uid)]);
  const entry = line === undefined ? undefined : parsePasswdLine(line);
  if (entry === undefined)
    throw new ShifterError(
      'NOT_FOUND',
      `uid ${uid} has no passwd entry on this node (getent passwd ${uid}); ask the site to add the account`,
    );
  return entry;
}

export async function lookupUserByName(name: string): Promise<PasswdEntry | undefined> {
  const [line] = await getent('passwd', [name]);
  return line === undefined ? undefined : parsePasswdLine(line);
}

/**
 * Groups by gid, in one `getent` call for all of them; a gid without a name becomes `gid<N>` so
 * `id` still shows something sensible.
 */
export async function lookupGroups(gids: readonly number[]): Promise<GroupEntry[]> {
  const found = new Map<number, GroupEntry>();
  for (const line of await getent('group', gids.map(String))) {
    const entry = parseGroupLine(line);
    if (entry !== undefined) found.set(entry.gid, entry);
  }
  return gids.map((gid) => found.get(gid) ?? { name: `gid${gid}`, gid, members: [] });
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
    if (!out.has(required))
      throw new ShifterError('BAD_CONFIG', `etcPath ${dir} has no ${required} file (or set populateEtcDynamically=1)`);
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
export async function etcEntriesFor(
  source: EtcSource,
  uid: number,
  gid: number,
  groups: readonly number[],
): Promise<Array<FileEntry | SymlinkEntry>> {
  // Independent reads, started together: a new environment waits for the slowest, not the sum.
  const dynamic = source.populateEtcDynamically || source.etcPath === undefined;
  const gids = [gid, ...groups.filter((g) => g !== gid)];
  const [user, hostHosts, hostResolvConf, groupEntries, imported, etcPathFiles] = await Promise.all([
    lookupUserByUid(uid),
    readHostFile('/etc/hosts'),
    readHostFile('/etc/resolv.conf'),
    dynamic ? lookupGroups(gids) : Promise.resolve([]),
    dynamic ? Promise.all(source.usersToImport.map(lookupUserByName)) : Promise.resolve([]),
    dynamic ? Promise.resolve(undefined) : readEtcPath(source.etcPath!),
  ]);
  if (!dynamic) {
    return buildEtcEntries({
      users: [],
      groups: [],
      userName: user.name,
      maxGroupCount: source.maxGroupCount,
      etcPathFiles,
      hostHosts,
      hostResolvConf,
    });
  }
  const users = [{ ...user, gid }];
  for (const extra of imported) {
    if (extra !== undefined && extra.uid !== uid) users.push(extra);
  }
  return buildEtcEntries({
    users,
    groups: groupEntries,
    userName: user.name,
    maxGroupCount: source.maxGroupCount,
    etcPathFiles: undefined,
    hostHosts,
    hostResolvConf,
  });
}
