/**
 * When a pull may use a blob already in the cache instead of downloading it. A digest is no
 * secret (it shows in `shifterimg -v`, logs and public manifests of derived images), so naming it
 * in a manifest proves nothing: a user who controls a repository or a whole registry could
 * otherwise read another user's private layer out of the cache. A cached blob is reused only when
 * this pull's registry would serve it to this pull:
 *
 * - served anonymously from this registry and repository: it is public there, reuse it as is;
 * - served by this registry (another repository, or with someone's credentials): the registry
 *   decides, through `HEAD /v2/<repo>/blobs/<digest>` with this pull's own authentication;
 * - never served by this registry (another registry, or cached before sources were recorded): a
 *   registry we have no record of could answer HEAD with a lie, so the blob is downloaded and
 *   verified again; only a registry that really holds the content can pass that.
 */

/** One place that served a blob to this gateway: the registry's base URL and the repository. */
export interface BlobSource {
  registry: string;
  repository: string;
  /** Served without credentials: anyone can read it there. */
  anonymous: boolean;
}

export type BlobReuse = 'reuse' | 'ask-registry' | 'download';

export function blobReuse(sources: readonly BlobSource[], registry: string, repository: string): BlobReuse {
  const here = sources.filter((s) => s.registry === registry);
  if (here.some((s) => s.repository === repository && s.anonymous)) return 'reuse';
  return here.length > 0 ? 'ask-registry' : 'download';
}

/** Parses a `<hex>.sources` file; anything unreadable counts as no record (the blob is downloaded again). */
export function parseBlobSources(text: string): BlobSource[] {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return [];
  }
  if (!Array.isArray(raw)) return [];
  return raw
    .filter(
      (s): s is BlobSource =>
        typeof s === 'object' &&
        s !== null &&
        typeof (s as BlobSource).registry === 'string' &&
        typeof (s as BlobSource).repository === 'string' &&
        typeof (s as BlobSource).anonymous === 'boolean',
    )
    .map((s) => ({ registry: s.registry, repository: s.repository, anonymous: s.anonymous }));
}

/** The sources with `source` added (an anonymous record of a place supersedes a credentialed one). */
export function withBlobSource(sources: readonly BlobSource[], source: BlobSource): BlobSource[] {
  const same = (s: BlobSource) => s.registry === source.registry && s.repository === source.repository;
  const known = sources.find(same);
  if (known && (known.anonymous || !source.anonymous)) return [...sources];
  return [...sources.filter((s) => !same(s)), source];
}
