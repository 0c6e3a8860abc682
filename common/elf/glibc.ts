/**
 * glibc facts from ELF version data: which GLIBC_x.y a library needs, which a libc.so.6
 * provides, and which libraries belong to glibc itself (a module must never carry them: the
 * image's own glibc and loader must stay the ones in use, or nothing in the image would run).
 */
import type { ElfInfo } from './elf-file.js';

/** A GLIBC_x.y version as numbers; GLIBC_PRIVATE and other names are not versions. */
export function glibcVersionNumbers(name: string): number[] | undefined {
  const m = /^GLIBC_(\d+(?:\.\d+)*)$/.exec(name);
  return m === null ? undefined : m[1].split('.').map(Number);
}

export function compareVersions(a: readonly number[], b: readonly number[]): number {
  for (let i = 0; i < Math.max(a.length, b.length); i += 1) {
    const d = (a[i] ?? 0) - (b[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/** The newest GLIBC_x.y among `names` (e.g. `2.34`), or undefined when there is none. */
export function newestGlibc(names: Iterable<string>): string | undefined {
  let best: number[] | undefined;
  for (const n of names) {
    const v = glibcVersionNumbers(n);
    if (v !== undefined && (best === undefined || compareVersions(v, best) > 0)) best = v;
  }
  return best?.join('.');
}

/** The newest glibc version `elf` needs (from any of glibc's libraries). */
export function glibcNeeded(elf: ElfInfo): string | undefined {
  return newestGlibc(elf.versionNeeds.flatMap((n) => n.versions));
}

/** The newest glibc version a libc.so.6 provides. */
export function glibcProvided(libc: ElfInfo): string | undefined {
  return newestGlibc(libc.versionDefinitions);
}

const GLIBC_LIBRARIES = new Set([
  'libc.so.6',
  'libm.so.6',
  'libmvec.so.1',
  'libpthread.so.0',
  'libdl.so.2',
  'librt.so.1',
  'libresolv.so.2',
  'libutil.so.1',
  'libanl.so.1',
  'libnsl.so.1',
  'libBrokenLocale.so.1',
  'libthread_db.so.1',
  'libc_malloc_debug.so.0',
  'libmemusage.so',
  'libpcprofile.so',
]);

/** glibc's own libraries and every dynamic loader (ld-linux*.so.*, ld64.so.*, ld.so.1). */
export function isGlibcLibrary(name: string): boolean {
  return GLIBC_LIBRARIES.has(name) || /^libnss_[a-z0-9_]+\.so\.2$/.test(name) || /^ld(-linux[^/]*|64)?\.so/.test(name);
}
