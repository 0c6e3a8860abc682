/**
 * `<id>.chunks`: the chunk index (common/chunk-index.ts) of `<id>.squashfs`, next to it in the
 * system's imageDir. tar2sqfs seeks back to write the superblock at offset 0 when it finishes, so
 * the index cannot be hashed while the image is written; it is hashed right after, one sequential
 * read of a file that is still in the page cache. The pipeline writes `.chunks` after the image and
 * before `.meta` (meta last: a crash in between leaves an image nothing treats as ready).
 * Images converted before indexes existed get one on first request, computed once per process
 * however many requests arrive together.
 */
import { createHash } from 'node:crypto';
import { open, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../../common/atomic-write.js';
import {
  CHUNK_INDEX_VERSION,
  indexDigest,
  parseChunkIndex,
  serializeChunkIndex,
  type ChunkDigest,
  type ChunkIndex,
} from '../../common/chunk-index.js';
import { asShifterError, ShifterError } from '../../common/errors.js';
import type { ImageId } from '../../common/image-descriptor.js';

/**
 * 1 MiB: fetched the fewest bytes for a Python import and a metadata walk at a request count that
 * keeps up with the node's 128 KiB FUSE reads (BENCHMARKS.md, "Chunk size").
 */
export const DEFAULT_CHUNK_SIZE = 1024 * 1024;

/** A stored index: the parsed form and the exact bytes (and digest) a node will check. */
export interface StoredChunkIndex {
  readonly index: ChunkIndex;
  readonly bytes: Buffer;
  /** sha256 hex of `bytes`. */
  readonly digest: string;
}

export function chunkIndexPath(imageDir: string, id: string): string {
  return join(imageDir, `${id}.chunks`);
}

function stored(index: ChunkIndex): StoredChunkIndex {
  return { index, bytes: serializeChunkIndex(index), digest: indexDigest(index) };
}

/** Hashes `imagePath` chunk by chunk with one reused buffer: memory stays at one chunk whatever the image size. */
export async function computeChunkIndex(
  imagePath: string,
  imageId: ImageId,
  chunkSize = DEFAULT_CHUNK_SIZE,
  signal?: AbortSignal,
): Promise<StoredChunkIndex> {
  const handle = await open(imagePath, 'r');
  try {
    const { size } = await handle.stat();
    const buf = Buffer.allocUnsafe(chunkSize);
    const chunks: ChunkDigest[] = [];
    for (let offset = 0; offset < size; offset += chunkSize) {
      if (signal?.aborted) throw new ShifterError('CONVERSION_FAILED', `indexing ${imagePath} was cancelled`);
      const want = Math.min(chunkSize, size - offset);
      let got = 0;
      while (got < want) {
        const { bytesRead } = await handle.read(buf, got, want - got, offset + got);
        if (bytesRead === 0) throw new ShifterError('IO_ERROR', `${imagePath} shrank while it was being indexed`);
        got += bytesRead;
      }
      chunks.push(createHash('sha256').update(buf.subarray(0, want)).digest('hex') as ChunkDigest);
    }
    return stored({ version: CHUNK_INDEX_VERSION, imageId, imageSize: size, chunkSize, chunks });
  } finally {
    await handle.close();
  }
}

/** Writes the index atomically (temp, fsync, rename), mode 0600 like the image it describes. */
export async function writeChunkIndex(path: string, index: StoredChunkIndex): Promise<void> {
  await writeFileAtomic(path, index.bytes, 0o600);
}

/**
 * The index stored at `path` if it describes `imagePath` as it is now (same size); null when there
 * is none or it is stale (an image converted again after a crash).
 */
export async function readChunkIndex(path: string, imagePath: string): Promise<StoredChunkIndex | null> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw asShifterError(e, 'IO_ERROR', `cannot read the chunk index ${path}`);
  }
  let index: ChunkIndex;
  try {
    index = parseChunkIndex(bytes);
  } catch {
    return null;
  }
  const { size } = await stat(imagePath);
  if (index.imageSize !== size) return null;
  return { index, bytes, digest: indexDigest(index) };
}

/** The index of `<imageDir>/<id>.squashfs`, read from `.chunks` or computed and written now. */
export async function ensureChunkIndex(
  imageDir: string,
  id: ImageId,
  chunkSize = DEFAULT_CHUNK_SIZE,
): Promise<StoredChunkIndex> {
  const path = chunkIndexPath(imageDir, id);
  const image = join(imageDir, `${id}.squashfs`);
  const existing = await readChunkIndex(path, image);
  if (existing) return existing;
  const made = await computeChunkIndex(image, id, chunkSize);
  await writeChunkIndex(path, made).catch((e: unknown) => {
    throw asShifterError(e, 'IO_ERROR', `cannot write the chunk index ${path}`);
  });
  return made;
}

interface Remembered {
  readonly ino: number;
  readonly mtimeMs: number;
  readonly stored: StoredChunkIndex;
}

/** Indexes kept parsed in memory: a node's cold start asks for hundreds of chunks of one image. */
const REMEMBERED = 64;

/**
 * The indexes of a gateway process: one computation per image at a time (later callers join it),
 * and the last REMEMBERED indexes kept parsed for as long as their `.chunks` file is unchanged.
 */
export class ChunkIndexFiles {
  private readonly running = new Map<string, Promise<StoredChunkIndex>>();
  private readonly remembered = new Map<string, Remembered>();

  constructor(private readonly chunkSize = DEFAULT_CHUNK_SIZE) {}

  async get(imageDir: string, id: ImageId): Promise<StoredChunkIndex> {
    const path = chunkIndexPath(imageDir, id);
    const known = this.remembered.get(path);
    if (known) {
      const st = await stat(path).catch(() => null);
      if (st && st.ino === known.ino && st.mtimeMs === known.mtimeMs) return known.stored;
      this.remembered.delete(path);
    }
    const pending = this.running.get(path);
    if (pending) return pending;
    const job = this.load(imageDir, id, path).finally(() => this.running.delete(path));
    this.running.set(path, job);
    return job;
  }

  private async load(imageDir: string, id: ImageId, path: string): Promise<StoredChunkIndex> {
    const stored = await ensureChunkIndex(imageDir, id, this.chunkSize);
    const st = await stat(path);
    if (this.remembered.size >= REMEMBERED) this.remembered.delete(this.remembered.keys().next().value as string);
    this.remembered.set(path, { ino: st.ino, mtimeMs: st.mtimeMs, stored });
    return stored;
  }
}
