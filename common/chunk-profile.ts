/**
 * A prefetch profile: the chunks the first cold start of an image read in its first seconds, in
 * the order it first read them (node side records it, gateway keeps one per image). Later cold
 * starts fetch these chunks in parallel before and while the command starts. Bytes on the wire:
 * `{"version":1,"imageId":"<id>","chunks":[<chunk numbers>]}`.
 */
import { ShifterError } from './errors.js';
import type { ChunkIndex } from './chunk-index.js';
import type { ImageId } from './image-descriptor.js';

export const CHUNK_PROFILE_VERSION = 1;
/** 16 GiB of 1 MiB chunks: more than any start-up reads, and a bound on what a node can make us store. */
export const MAX_PROFILE_CHUNKS = 16384;
/** Room for MAX_PROFILE_CHUNKS numbers of up to 6 digits. */
export const MAX_PROFILE_BYTES = 128 * 1024;

export interface ChunkProfile {
  readonly version: typeof CHUNK_PROFILE_VERSION;
  readonly imageId: ImageId;
  /** Chunk numbers (positions in the index), each once, first read first. */
  readonly chunks: readonly number[];
}

export function serializeChunkProfile(profile: ChunkProfile): Buffer {
  const { version, imageId, chunks } = profile;
  return Buffer.from(JSON.stringify({ version, imageId, chunks }), 'utf8');
}

function bad(what: string): ShifterError {
  return new ShifterError('BAD_ARGUMENT', `prefetch profile refused: ${what}`);
}

/** Parses profile bytes and checks them against the image's index. */
export function parseChunkProfile(bytes: Uint8Array, index: ChunkIndex): ChunkProfile {
  if (bytes.length > MAX_PROFILE_BYTES) throw bad(`it is over ${MAX_PROFILE_BYTES} bytes`);
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    throw bad('not JSON; send {"version":1,"imageId":"<id>","chunks":[0,5,...]}');
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw bad('not a JSON object');
  const r = raw as Record<string, unknown>;
  if (r.version !== CHUNK_PROFILE_VERSION) throw bad(`version ${String(r.version)} is not ${CHUNK_PROFILE_VERSION}`);
  if (r.imageId !== index.imageId) throw bad(`imageId is not ${index.imageId}`);
  const { chunks } = r;
  if (!Array.isArray(chunks)) throw bad('chunks is not a list of chunk numbers');
  if (chunks.length > MAX_PROFILE_CHUNKS) throw bad(`${chunks.length} chunks is over ${MAX_PROFILE_CHUNKS}`);
  const seen = new Set<number>();
  for (const n of chunks) {
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n >= index.chunks.length) {
      throw bad(`${JSON.stringify(n)} is not a chunk number of this image (0 to ${index.chunks.length - 1})`);
    }
    if (seen.has(n)) throw bad(`chunk ${n} is listed twice`);
    seen.add(n);
  }
  return { version: CHUNK_PROFILE_VERSION, imageId: index.imageId, chunks: chunks as number[] };
}
