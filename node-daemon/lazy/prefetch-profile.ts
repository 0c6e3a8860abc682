/**
 * A prefetch profile: the chunks an image's first cold start read in its first seconds, in the
 * order it first read them. The first cold start of an image on any node records it and PUTs it
 * to the gateway (`/api/chunks/<system>/<id>/profile`); later cold starts GET it and fetch those
 * chunks ahead of the reader. The bytes are JSON: {"version":1,"imageId":"<id>","chunks":[0,7,...]}.
 */
import { ShifterError } from '../../common/errors.js';
import type { ChunkIndex } from '../../common/chunk-index.js';

export const PROFILE_VERSION = 1;

export function serializeProfile(index: ChunkIndex, chunks: readonly number[]): Buffer {
  return Buffer.from(JSON.stringify({ version: PROFILE_VERSION, imageId: index.imageId, chunks }), 'utf8');
}

/** The chunk numbers of a profile, checked against the image's index (a profile only steers prefetch). */
export function parseProfile(bytes: Buffer, index: ChunkIndex): number[] {
  let raw: unknown;
  try {
    raw = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new ShifterError('BAD_ARGUMENT', `the prefetch profile of ${index.imageId} is not JSON`);
  }
  const r = (typeof raw === 'object' && raw !== null ? raw : {}) as Record<string, unknown>;
  const chunks = r.chunks;
  if (
    r.version !== PROFILE_VERSION ||
    r.imageId !== index.imageId ||
    !Array.isArray(chunks) ||
    !chunks.every((n) => Number.isInteger(n) && (n as number) >= 0 && (n as number) < index.chunks.length)
  ) {
    throw new ShifterError('BAD_ARGUMENT', `the prefetch profile of ${index.imageId} does not fit its index`);
  }
  return [...new Set(chunks as number[])];
}

/** Records first reads of chunks until `stop()` or the window ends. */
export class ProfileRecorder {
  private readonly seen = new Set<number>();
  private readonly order: number[] = [];
  private open = true;

  note(chunk: number): void {
    if (!this.open || this.seen.has(chunk)) return;
    this.seen.add(chunk);
    this.order.push(chunk);
  }

  stop(): number[] {
    this.open = false;
    return this.order;
  }
}
