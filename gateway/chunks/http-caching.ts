/**
 * The HTTP caching rules of the chunk routes, pure: strong ETags from content digests, the
 * If-None-Match test, and a single byte range inside one chunk.
 */

/** Index and chunk bytes never change under their address: any cache may keep them for a year. */
export const IMMUTABLE = 'public, max-age=31536000, immutable';
/** A profile can be reset by an admin: caches may keep it but must ask again before using it. */
export const REVALIDATE = 'public, no-cache';

export function strongEtag(digest: string): string {
  return `"${digest}"`;
}

/** If-None-Match per RFC 9110 13.1.2: `*` or any listed tag equal under the weak comparison. */
export function notModified(ifNoneMatch: string | undefined, etag: string): boolean {
  if (ifNoneMatch === undefined) return false;
  const value = ifNoneMatch.trim();
  if (value === '*') return true;
  const opaque = etag.replace(/^W\//, '');
  return value.split(',').some((t) => t.trim().replace(/^W\//, '') === opaque);
}

export type RangeAnswer =
  | { readonly kind: 'whole' }
  | { readonly kind: 'partial'; readonly start: number; readonly end: number }
  | { readonly kind: 'unsatisfiable' };

/**
 * A `Range` header against a body of `length` bytes. One range only: a node wants a part of one
 * chunk; several ranges, other units or a malformed header get the whole chunk (RFC 9110 lets a
 * server ignore Range).
 */
export function byteRange(header: string | undefined, length: number): RangeAnswer {
  if (header === undefined) return { kind: 'whole' };
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return { kind: 'whole' };
  if (m[1] === '') {
    const suffix = Number(m[2]);
    if (suffix === 0 || length === 0) return { kind: 'unsatisfiable' };
    return { kind: 'partial', start: Math.max(0, length - suffix), end: length - 1 };
  }
  const start = Number(m[1]);
  if (m[2] !== '' && Number(m[2]) < start) return { kind: 'whole' };
  if (start >= length) return { kind: 'unsatisfiable' };
  return { kind: 'partial', start, end: m[2] === '' ? length - 1 : Math.min(Number(m[2]), length - 1) };
}
