/**
 * Which layer paths may enter the image. Nothing is extracted to disk, so the host is never at
 * stake here; these rules keep the image itself well-formed and free of escapes: every entry lives
 * strictly inside the image root, and a hard link names an entry inside it.
 */

export type PathCheck = { ok: true; path: string } | { ok: false; reason: string };

/**
 * Normalises a tar member name to the image-relative form used everywhere else: no leading `./`,
 * no `.` components, no doubled or trailing `/`; the root itself is `''`.
 * Absolute names and names with a `..` component are refused rather than reinterpreted; the one
 * exception is a name made only of slashes, which umoci writes for the root directory itself.
 */
export function normaliseEntryPath(name: string): PathCheck {
  if (name.includes('\0')) return { ok: false, reason: 'the name contains a NUL byte' };
  // umoci names the root directory's own entry "/": that one is the root, not an escape.
  if (/^\/+$/.test(name)) return { ok: true, path: '' };
  if (name.startsWith('/')) return { ok: false, reason: 'absolute path' };
  const parts: string[] = [];
  for (const part of name.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') return { ok: false, reason: 'the path contains a ".." component' };
    parts.push(part);
  }
  return { ok: true, path: parts.join('/') };
}

/** A hard link's target follows the same rules, and must not be the root. */
export function normaliseLinkTarget(linkname: string): PathCheck {
  const r = normaliseEntryPath(linkname);
  if (!r.ok) return { ok: false, reason: `hard link target "${linkname}": ${r.reason}` };
  if (r.path === '') return { ok: false, reason: 'hard link to the image root' };
  return r;
}

/** Strict ancestors of an image-relative path, outermost first (the root `''` excluded). */
export function ancestorsOf(path: string): string[] {
  const out: string[] = [];
  let i = path.indexOf('/');
  while (i !== -1) {
    out.push(path.slice(0, i));
    i = path.indexOf('/', i + 1);
  }
  return out;
}

export function parentOf(path: string): string {
  const i = path.lastIndexOf('/');
  return i === -1 ? '' : path.slice(0, i);
}

export function baseNameOf(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}
