/**
 * Reads what the pre-flight needs from an attached image, through the detached mount's fd
 * (/proc/self/fd/N is the image root): its libc.so.6 (version definitions, machine) and its MPI
 * sonames, looked up in the image's own library directories (/etc/ld.so.conf and the
 * multiarch and default directories). Symlinks are resolved by hand inside the image root, so
 * an absolute link (`/usr/lib/libc.so.6 -> /lib/...`) means the image's /lib and nothing on the
 * host is ever read. The image is a read-only squashfs, so what was resolved cannot change
 * before it is read.
 */
import { lstat, readFile, readdir, readlink } from 'node:fs/promises';
import { posix } from 'node:path';
import { parseElf } from '../../common/elf/elf-file.js';
import { glibcProvided } from '../../common/elf/glibc.js';
import { describeError } from '../../common/errors.js';
import type { ImageFacts } from './preflight.js';

const MAX_LINKS = 40;
/** A real libc.so.6 is 2-3 MiB; anything this big is not one worth parsing. */
const MAX_LIBC_BYTES = 64 * 1024 * 1024;
const MAX_CONF_BYTES = 1024 * 1024;
const MPI_SONAME = /^lib(mpi|mpich)\.so\.\d+$/;
const DEFAULT_DIRS = [
  '/lib/x86_64-linux-gnu',
  '/usr/lib/x86_64-linux-gnu',
  '/lib/aarch64-linux-gnu',
  '/usr/lib/aarch64-linux-gnu',
  '/lib/powerpc64le-linux-gnu',
  '/usr/lib/powerpc64le-linux-gnu',
  '/lib64',
  '/usr/lib64',
  '/lib',
  '/usr/lib',
];

/**
 * The host path of `path` inside the image at `root`, every symlink followed within the image;
 * undefined when it does not exist. Only the final result is stat-able by the caller.
 */
export async function resolveInImage(root: string, path: string): Promise<string | undefined> {
  const pending = path.split('/').filter((c) => c !== '' && c !== '.');
  const done: string[] = [];
  let links = 0;
  while (pending.length > 0) {
    const c = pending.shift()!;
    if (c === '..') {
      done.pop();
      continue;
    }
    const host = `${root}/${[...done, c].join('/')}`;
    let st;
    try {
      st = await lstat(host);
    } catch {
      return undefined;
    }
    if (!st.isSymbolicLink()) {
      done.push(c);
      continue;
    }
    if ((links += 1) > MAX_LINKS) return undefined;
    const target = await readlink(host);
    if (target.startsWith('/')) done.length = 0;
    pending.unshift(...target.split('/').filter((x) => x !== '' && x !== '.'));
  }
  return `${root}/${done.join('/')}`;
}

/** Library directories named by the image's /etc/ld.so.conf and its `include`d files (one level of glob: `*.conf`). */
async function ldSoConfDirs(root: string): Promise<string[]> {
  const read = async (p: string): Promise<string> => {
    const host = await resolveInImage(root, p);
    // Only a small regular file: a FIFO or device in the image must not block or feed shifterd.
    const st = host === undefined ? undefined : await lstat(host).catch(() => undefined);
    if (host === undefined || st === undefined || !st.isFile() || st.size > MAX_CONF_BYTES) return '';
    return readFile(host, 'utf8').catch(() => '');
  };
  const dirs: string[] = [];
  const lines = async (text: string, depth: number): Promise<void> => {
    for (const raw of text.split('\n')) {
      const line = raw.replace(/#.*/, '').trim();
      if (line.startsWith('include ') && depth < 2) {
        const pattern = line.slice('include '.length).trim();
        const dir = posix.dirname(pattern.startsWith('/') ? pattern : `/etc/${pattern}`);
        const base = posix.basename(pattern);
        const hostDir = await resolveInImage(root, dir);
        if (hostDir === undefined) continue;
        const names = await readdir(hostDir).catch(() => [] as string[]);
        const re = new RegExp(`^${base.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*')}$`);
        for (const n of names.filter((x) => re.test(x)).sort()) await lines(await read(`${dir}/${n}`), depth + 1);
      } else if (line.startsWith('/')) {
        dirs.push(line);
      }
    }
  };
  await lines(await read('/etc/ld.so.conf'), 0);
  return dirs;
}

async function readLibc(host: string, path: string): Promise<NonNullable<ImageFacts['libc']>> {
  const st = await lstat(host);
  if (!st.isFile() || st.size > MAX_LIBC_BYTES) throw new Error(`not a regular file of a sane size`);
  const elf = parseElf(await readFile(host), `image ${path}`);
  return { path, version: glibcProvided(elf), architecture: elf.machine };
}

export async function readImageFacts(root: string): Promise<ImageFacts> {
  const dirs = [...new Set([...(await ldSoConfDirs(root)), ...DEFAULT_DIRS])];
  let libc: ImageFacts['libc'];
  const unreadable: string[] = [];
  const mpi: Array<{ soname: string; path: string }> = [];
  const seenDirs = new Set<string>();
  for (const dir of dirs) {
    const hostDir = await resolveInImage(root, dir);
    if (hostDir === undefined || seenDirs.has(hostDir)) continue;
    seenDirs.add(hostDir);
    const names = await readdir(hostDir).catch(() => [] as string[]);
    if (libc === undefined && unreadable.length === 0 && names.includes('libc.so.6')) {
      const path = `${dir}/libc.so.6`;
      const host = await resolveInImage(root, path);
      if (host !== undefined) {
        try {
          libc = await readLibc(host, path);
        } catch (e) {
          unreadable.push(`image ${path} cannot be read as a library (${describeError(e)})`);
        }
      }
    }
    for (const n of names.filter((x) => MPI_SONAME.test(x)).sort()) {
      if (!mpi.some((m) => m.soname === n)) mpi.push({ soname: n, path: `${dir}/${n}` });
    }
  }
  return { libc, mpi, unreadable };
}
