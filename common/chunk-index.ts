/**
 * The chunk index of an image: how a node that never copied an image whole reads it lazily.
 * The gateway cuts `<id>.squashfs` into fixed-size chunks (the last one shorter) and records the
 * sha256 of each; a node fetches a chunk by its content address and checks it against the index
 * before serving a single byte of it. The index itself is addressed by the sha256 of its
 * canonical bytes (recorded with the image), so a node trusts nothing a cache in between says.
 *
 * Routes (gateway, all under the image's system; `<id>` is the image id, `<sha>` a chunk's
 * sha256 in lowercase hex), each answering with a strong ETag and
 * `Cache-Control: public, max-age=31536000, immutable` so standard HTTP caches can serve them:
 *   GET /api/chunks/<system>/<id>/index         the canonical index bytes below
 *   GET /api/chunks/<system>/<id>/chunk/<sha>   one chunk's bytes
 *   GET /api/chunks/<system>/<id>/profile       the recorded prefetch profile (not immutable)
 *   PUT /api/chunks/<system>/<id>/profile       a node records one (first cold start)
 * Image bytes and profiles need a node credential (munge from uid 0 on the node).
 * Added later, all backward-compatible (the routes above are unchanged):
 *   POST   /api/chunks/<system>/session         a munge credential from uid 0 (`authentication`
 *                                               header) -> {"token", "expires"}: send the token as
 *                                               `Authorization: Bearer <token>` on the routes above
 *                                               until `expires` (epoch s); 401 means get a new one
 *   GET    /api/chunks/<system>/<id>            {"id", "indexDigest", "imageSize", "chunkSize",
 *                                               "chunkCount", "meta"} (no-store): the index digest to
 *                                               check against, and the image's `.meta` text
 *   HEAD   /api/chunks/<system>/<id>/chunk/<sha> and `Range: bytes=a-b` inside a chunk (206)
 *   DELETE /api/chunks/<system>/<id>/profile    an admin's munge credential resets the profile; the
 *                                               first PUT wins until then (409 after it)
 * Profile bytes: common/chunk-profile.ts. The index digest is also `.meta`'s CHUNKINDEX line.
 */
import { createHash } from 'node:crypto';
import { ShifterError } from './errors.js';
import { isImageId, type ImageId } from './image-descriptor.js';

export const CHUNK_INDEX_VERSION = 1;

declare const chunkDigestBrand: unique symbol;
/** Lowercase hex sha256 of one chunk's bytes. */
export type ChunkDigest = string & { readonly [chunkDigestBrand]: true };

export interface ChunkIndex {
  readonly version: typeof CHUNK_INDEX_VERSION;
  readonly imageId: ImageId;
  /** Bytes in the image file. */
  readonly imageSize: number;
  /** Bytes in every chunk but the last. */
  readonly chunkSize: number;
  /** One digest per chunk, in file order. */
  readonly chunks: readonly ChunkDigest[];
}

/** A chunk's place in the image file. */
export interface ChunkSpan {
  readonly index: number;
  readonly offset: number;
  readonly length: number;
}

const HEX64 = /^[0-9a-f]{64}$/;
const MIN_CHUNK = 64 * 1024;
const MAX_CHUNK = 64 * 1024 * 1024;

export function isChunkDigest(value: string): value is ChunkDigest {
  return HEX64.test(value);
}

export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** The canonical bytes: fixed key order, no whitespace; what `indexDigest` hashes. */
export function serializeChunkIndex(index: ChunkIndex): Buffer {
  const { version, imageId, imageSize, chunkSize, chunks } = index;
  return Buffer.from(JSON.stringify({ version, imageId, imageSize, chunkSize, chunks }), 'utf8');
}

export function indexDigest(index: ChunkIndex): string {
  return sha256Hex(serializeChunkIndex(index));
}

function bad(what: string): ShifterError {
  return new ShifterError('DIGEST_MISMATCH', `chunk index refused: ${what}`);
}

/**
 * Parses index bytes and checks they are self-consistent; with `expectedDigest`, also that they
 * are exactly the bytes the image record named (so a cache or proxy cannot substitute an index).
 */
export function parseChunkIndex(bytes: Uint8Array, expectedDigest?: string): ChunkIndex {
  if (expectedDigest !== undefined && sha256Hex(bytes) !== expectedDigest) {
    throw bad(`its sha256 is not the ${expectedDigest} recorded for the image`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    throw bad('not JSON');
  }
  if (typeof raw !== 'object' || raw === null) throw bad('not an object');
  const r = raw as Record<string, unknown>;
  if (r.version !== CHUNK_INDEX_VERSION) throw bad(`version ${String(r.version)} is not ${CHUNK_INDEX_VERSION}`);
  if (typeof r.imageId !== 'string' || !isImageId(r.imageId)) throw bad('imageId is not a 64-hex image id');
  const { imageSize, chunkSize, chunks } = r;
  if (typeof imageSize !== 'number' || !Number.isSafeInteger(imageSize) || imageSize < 0) {
    throw bad('imageSize is not a byte count');
  }
  if (typeof chunkSize !== 'number' || !Number.isSafeInteger(chunkSize) || chunkSize < MIN_CHUNK) {
    throw bad(`chunkSize is not a byte count of at least ${MIN_CHUNK}`);
  }
  if (chunkSize > MAX_CHUNK) throw bad(`chunkSize ${chunkSize} is over ${MAX_CHUNK}`);
  if (!Array.isArray(chunks) || !chunks.every((c) => typeof c === 'string' && isChunkDigest(c))) {
    throw bad('chunks is not a list of sha256 hex digests');
  }
  if (chunks.length !== Math.ceil(imageSize / chunkSize)) {
    throw bad(`${chunks.length} chunks do not cover ${imageSize} bytes in chunks of ${chunkSize}`);
  }
  return { version: CHUNK_INDEX_VERSION, imageId: r.imageId, imageSize, chunkSize, chunks: chunks };
}

export function chunkSpan(index: ChunkIndex, n: number): ChunkSpan {
  if (!Number.isInteger(n) || n < 0 || n >= index.chunks.length) {
    throw new ShifterError(
      'BAD_ARGUMENT',
      `chunk ${n} is outside image ${index.imageId} (${index.chunks.length} chunks)`,
    );
  }
  const offset = n * index.chunkSize;
  return { index: n, offset, length: Math.min(index.chunkSize, index.imageSize - offset) };
}

/** The chunks holding bytes [offset, offset + length) of the image. */
export function chunksCovering(index: ChunkIndex, offset: number, length: number): number[] {
  if (length <= 0 || offset >= index.imageSize) return [];
  const first = Math.floor(offset / index.chunkSize);
  const last = Math.floor((Math.min(offset + length, index.imageSize) - 1) / index.chunkSize);
  const out: number[] = [];
  for (let n = first; n <= last; n++) out.push(n);
  return out;
}
