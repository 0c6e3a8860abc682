/**
 * Finds the libraries an ELF object loads the way glibc's ld.so does (for a program started with
 * no LD_LIBRARY_PATH): a name with a slash is used as it is; otherwise, for each DT_NEEDED of an
 * object O, O's DT_RPATH and then its loaders' DT_RPATHs (only when O has no DT_RUNPATH), O's
 * DT_RUNPATH, the ld.so cache (`ldconfig -p`), then the default directories. `$ORIGIN` is the
 * directory of the object naming it. A candidate of another ELF class or machine is skipped, as
 * ld.so skips it. glibc's libraries and the loader are never followed.
 */
import { execFile } from 'node:child_process';
import { readFile, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { ShifterError, asShifterError } from '../errors.js';
import { parseElf, type ElfInfo } from './elf-file.js';
import { isGlibcLibrary } from './glibc.js';

export async function readElfFile(path: string): Promise<ElfInfo> {
  let buf: Buffer;
  try {
    buf = await readFile(path);
  } catch (e) {
    throw asShifterError(e, 'IO_ERROR', `cannot read ${path}`);
  }
  return parseElf(buf, path);
}

/** One `ldconfig -p` line: `\tlibmpich.so.12 (libc6,x86-64) => /lib/x86_64-linux-gnu/libmpich.so.12`. */
export interface LdCacheEntry {
  name: string;
  flags: string;
  path: string;
}

export function parseLdconfigOutput(text: string): LdCacheEntry[] {
  const out: LdCacheEntry[] = [];
  for (const m of text.matchAll(/^\s+(\S+) \(([^)]*)\) => (\/.*\S)\s*$/gm)) {
    out.push({ name: m[1], flags: m[2], path: m[3] });
  }
  return out;
}

/** The ld.so cache as `ldconfig -p` prints it; `cacheFile` reads another cache (`ldconfig -C`). */
export async function readLdCache(cacheFile?: string): Promise<LdCacheEntry[]> {
  const args = cacheFile === undefined ? ['-p'] : ['-p', '-C', cacheFile];
  try {
    const { stdout } = await promisify(execFile)('ldconfig', args, { maxBuffer: 64 * 1024 * 1024 });
    return parseLdconfigOutput(stdout);
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stderr?: string };
    const why = (err.stderr ?? '').replace(/\s+/g, ' ').trim() || err.message;
    throw new ShifterError('IO_ERROR', `ldconfig ${args.join(' ')} failed: ${why}`);
  }
}

const MULTIARCH: Readonly<Record<string, string>> = {
  x86_64: 'x86_64-linux-gnu',
  aarch64: 'aarch64-linux-gnu',
  ppc64: 'powerpc64le-linux-gnu',
  s390x: 's390x-linux-gnu',
  i386: 'i386-linux-gnu',
};

/** ld.so's trusted directories for an object of this class and machine (Debian multiarch first). */
export function defaultLibraryDirs(elf: Pick<ElfInfo, 'elfClass' | 'machine'>): string[] {
  const triplet = MULTIARCH[elf.machine];
  const multi = triplet === undefined ? [] : [`/lib/${triplet}`, `/usr/lib/${triplet}`];
  return elf.elfClass === 64 ? [...multi, '/lib64', '/usr/lib64', '/lib', '/usr/lib'] : [...multi, '/lib', '/usr/lib'];
}

export interface SearchContext {
  /** Searched before anything else (the tools' --from directories). */
  extraDirs: readonly string[];
  cache: readonly LdCacheEntry[];
}

export interface LoadedObject {
  path: string;
  elf: ElfInfo;
}

function expandOrigin(dir: string, objectPath: string): string {
  return dir.replace(/\$(ORIGIN\b|\{ORIGIN\})/g, dirname(objectPath));
}

/**
 * Where ld.so looks for `name` needed by `object` (loaded by `loaders`, nearest first), in
 * order: directories, then cache entries. Pure.
 */
export function searchOrder(
  object: LoadedObject,
  loaders: readonly LoadedObject[],
  ctx: SearchContext,
  name: string,
): string[] {
  const dirs: string[] = [...ctx.extraDirs];
  if (object.elf.runpath.length === 0) {
    for (const o of [object, ...loaders]) dirs.push(...o.elf.rpath.map((d) => expandOrigin(d, o.path)));
  }
  dirs.push(...object.elf.runpath.map((d) => expandOrigin(d, object.path)));
  const candidates = dirs.map((d) => join(d, name));
  candidates.push(...ctx.cache.filter((e) => e.name === name).map((e) => e.path));
  candidates.push(...defaultLibraryDirs(object.elf).map((d) => join(d, name)));
  return [...new Set(candidates)];
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

/** The first candidate for `name` that is an ELF object of the same class and machine as `object`. */
export async function findLibrary(
  name: string,
  object: LoadedObject,
  loaders: readonly LoadedObject[],
  ctx: SearchContext,
): Promise<LoadedObject | undefined> {
  const candidates = name.includes('/') ? [name] : searchOrder(object, loaders, ctx, name);
  for (const path of candidates) {
    if (!(await isFile(path))) continue;
    let elf: ElfInfo;
    try {
      elf = await readElfFile(path);
    } catch {
      continue; // ld.so skips what it cannot load and tries the next candidate
    }
    if (elf.elfClass === object.elf.elfClass && elf.machine === object.elf.machine) return { path, elf };
  }
  return undefined;
}

export interface Closure {
  /** Every library found, by the DT_NEEDED name it was found for, glibc's excluded. */
  libraries: Map<string, LoadedObject>;
}

/**
 * The libraries `roots` load, transitively, breadth first as ld.so does. glibc's libraries are
 * neither included nor followed; a library ld.so would not find is an error naming who needs it.
 */
export async function libraryClosure(roots: readonly LoadedObject[], ctx: SearchContext): Promise<Closure> {
  const libraries = new Map<string, LoadedObject>();
  const known = new Set(roots.flatMap((r) => [r.elf.soname, r.path.split('/').pop()]));
  const queue: Array<{ object: LoadedObject; loaders: LoadedObject[] }> = roots.map((object) => ({
    object,
    loaders: [],
  }));
  while (queue.length > 0) {
    const { object, loaders } = queue.shift()!;
    for (const name of object.elf.needed) {
      if (isGlibcLibrary(name) || known.has(name) || libraries.has(name)) continue;
      const found = await findLibrary(name, object, loaders, ctx);
      if (found === undefined) {
        throw new ShifterError(
          'NOT_FOUND',
          `${name}, needed by ${object.path}, is not found where the dynamic loader looks ` +
            '(RPATH/RUNPATH, ldconfig -p, default directories): install it or add its directory with --from',
        );
      }
      libraries.set(name, found);
      queue.push({ object: found, loaders: [object, ...loaders] });
    }
  }
  return { libraries };
}
