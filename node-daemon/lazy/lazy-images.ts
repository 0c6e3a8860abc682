/**
 * The images the FUSE server exposes, read chunk by chunk: a read is served from the chunk store
 * or, for a missing chunk, from the chunk source; every fetched chunk is checked against the
 * image's index before a byte of it is served or stored (a mismatch is fetched once more, then
 * refused), concurrent fetches of one chunk are joined, and a fetch that outlives
 * lazyChunkTimeout fails the read (the FUSE layer answers EIO) instead of hanging it.
 * Opening an image prefetches what every start reads (superblock and the metadata tables at the
 * end) and the image's recorded profile; the first cold start of an image records one.
 */
import {
  chunkSpan,
  chunksCovering,
  parseChunkIndex,
  sha256Hex,
  type ChunkDigest,
  type ChunkIndex,
} from '../../common/chunk-index.js';
import { ShifterError, asShifterError, describeError } from '../../common/errors.js';
import type { ImageId } from '../../common/image-descriptor.js';
import type { Logger } from '../../common/logger.js';
import type { ChunkSource, ImageFacts } from './chunk-source.js';
import type { ChunkStore } from './chunk-store.js';
import { ProfileRecorder, parseProfile, serializeProfile } from './prefetch-profile.js';
import { SQUASHFS_SUPERBLOCK_BYTES, squashfsTables } from './squashfs-tables.js';

export interface LazyImagesOptions {
  chunkTimeoutMs: number;
  /** How long after its first open an image's reads are recorded as its profile. */
  profileWindowMs: number;
  /** Chunks fetched at once by prefetch and staging. */
  prefetchParallel: number;
}

export interface ImageStatus {
  id: ImageId;
  imageBytes: number;
  chunks: number;
  cachedChunks: number;
  cachedBytes: number;
  hits: number;
  misses: number;
}

/** What staging an image fetched: the node's fetches while it ran (other readers' too, if any). */
export interface StageReport {
  image: ImageStatus;
  fetchedChunks: number;
  fetchedBytes: number;
  seconds: number;
  /** Profile staging: the chunks the recorded profile names; undefined: the gateway has no profile. */
  profileChunks?: number;
}

interface OpenImage {
  index: ChunkIndex;
  hits: number;
  misses: number;
  recorder?: ProfileRecorder;
}

/** Runs `work` over `items`, at most `parallel` at a time; resolves when all settled. */
async function bounded<T>(items: readonly T[], parallel: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await work(items[next++]);
  };
  await Promise.all(Array.from({ length: Math.min(parallel, items.length) }, worker));
}

function parseIndex(id: ImageId, bytes: Buffer, digest: string): ChunkIndex {
  let index: ChunkIndex;
  try {
    index = parseChunkIndex(bytes, digest);
  } catch (e) {
    throw new ShifterError(
      'DIGEST_MISMATCH',
      `image ${id} cannot be started lazily: ${describeError(e)} by the gateway; ` +
        'something between this node and the gateway alters what it serves (check imageGateway and HTTP caches)',
      e,
    );
  }
  if (index.imageId !== id)
    throw new ShifterError('DIGEST_MISMATCH', `the chunk index served for ${id} is another image's`);
  return index;
}

export class LazyImages {
  private readonly images = new Map<ImageId, OpenImage>();
  private readonly opening = new Map<ImageId, Promise<OpenImage>>();
  private readonly fetching = new Map<ChunkDigest, Promise<Buffer>>();
  private readonly fetched = { chunks: 0, bytes: 0 };

  constructor(
    private readonly store: ChunkStore,
    private readonly source: ChunkSource,
    private readonly log: Logger,
    private readonly opts: LazyImagesOptions,
  ) {}

  list(): ImageId[] {
    return [...this.images.keys()];
  }

  size(id: ImageId): number | undefined {
    return this.images.get(id)?.index.imageSize;
  }

  /** What the gateway recorded for `id`: the digest its index must hash to and its `.meta` text. */
  facts(id: ImageId): Promise<ImageFacts> {
    return this.source.facts(id, AbortSignal.timeout(this.opts.chunkTimeoutMs));
  }

  /**
   * Makes `id` readable: its index (checked against `indexDigest`, the gateway's when the caller
   * has none), the superblock and metadata tables fetched; the profile's chunks keep arriving in
   * the background.
   */
  async open(id: ImageId, indexDigest?: string): Promise<void> {
    if (this.images.has(id)) return;
    let pending = this.opening.get(id);
    if (pending === undefined) {
      pending = this.load(id, indexDigest).finally(() => this.opening.delete(id));
      this.opening.set(id, pending);
    }
    const image = await pending;
    this.images.set(id, image);
  }

  private async load(id: ImageId, indexDigest: string | undefined): Promise<OpenImage> {
    const deadline = AbortSignal.timeout(this.opts.chunkTimeoutMs);
    // An index that is only self-consistent could be any image's bytes: trust the recorded digest alone.
    const digest = indexDigest ?? (await this.source.facts(id, deadline)).indexDigest;
    const index = parseIndex(id, await this.source.index(id, deadline), digest);
    const image: OpenImage = { index, hits: 0, misses: 0 };
    const superblock = await this.chunk(image, 0);
    const { tablesStart, end } = squashfsTables(superblock.subarray(0, SQUASHFS_SUPERBLOCK_BYTES));
    const tables = chunksCovering(index, tablesStart, end - tablesStart);
    const profile = this.source.profile(id, AbortSignal.timeout(this.opts.chunkTimeoutMs)).catch((e: unknown) => {
      this.log.warn({ image: id, err: describeError(e) }, 'no prefetch profile; starting without one');
      return undefined;
    });
    await bounded(tables, this.opts.prefetchParallel, (n) => this.chunk(image, n).then(() => undefined));
    const answer = await profile;
    if (answer?.kind === 'found') {
      try {
        const chunks = parseProfile(answer.bytes, index).filter((n) => !this.store.has(index.chunks[n]));
        void bounded(chunks, this.opts.prefetchParallel, (n) =>
          this.chunk(image, n).then(
            () => undefined,
            () => undefined,
          ),
        );
      } catch (e) {
        this.log.warn({ image: id, err: describeError(e) }, 'prefetch profile ignored');
      }
    } else if (answer?.kind === 'none') {
      this.record(image);
    }
    return image;
  }

  /** The first cold start of an image: its reads in the first seconds become the profile. */
  private record(image: OpenImage): void {
    const recorder = new ProfileRecorder();
    image.recorder = recorder;
    setTimeout(() => {
      const chunks = recorder.stop();
      image.recorder = undefined;
      // An open nobody read from (an admin's stage before any job) is no profile of a start.
      if (chunks.length === 0) return;
      const body = serializeProfile(image.index, chunks);
      this.source.putProfile(image.index.imageId, body, AbortSignal.timeout(this.opts.chunkTimeoutMs)).then(
        (outcome) =>
          this.log.info(
            { image: image.index.imageId, chunks: chunks.length },
            outcome === 'stored'
              ? 'prefetch profile recorded'
              : 'prefetch profile already recorded by another cold start; the first one is kept',
          ),
        (e: unknown) =>
          this.log.warn({ image: image.index.imageId, err: describeError(e) }, 'prefetch profile not sent'),
      );
    }, this.opts.profileWindowMs).unref();
  }

  /** Copies bytes [offset, offset + buf.length) of image `id` into `buf`; returns how many. */
  async read(id: ImageId, buf: Buffer, offset: number): Promise<number> {
    const image = this.images.get(id);
    if (image === undefined) throw new ShifterError('NOT_FOUND', `image ${id} is not open`);
    const { index } = image;
    const length = Math.min(buf.length, Math.max(0, index.imageSize - offset));
    await Promise.all(
      chunksCovering(index, offset, length).map(async (n) => {
        const span = chunkSpan(index, n);
        const from = Math.max(offset, span.offset);
        const to = Math.min(offset + length, span.offset + span.length);
        image.recorder?.note(n);
        const target = buf.subarray(from - offset, to - offset);
        const stored = await this.store.withChunk(index.chunks[n], async (handle) => {
          const { bytesRead } = await handle.read(target, 0, target.length, from - span.offset);
          return bytesRead;
        });
        if (stored === target.length) {
          image.hits++;
          return;
        }
        image.misses++;
        const bytes = await this.chunk(image, n);
        bytes.copy(target, 0, from - span.offset, to - span.offset);
      }),
    );
    return length;
  }

  /** Fetches every chunk of `id` not yet stored (an admin's pre-stage before a job). */
  async stage(id: ImageId, indexDigest?: string): Promise<ImageStatus> {
    await this.open(id, indexDigest);
    const image = this.images.get(id)!;
    const missing = image.index.chunks.flatMap((d, n) => (this.store.has(d) ? [] : [n]));
    let failed: ShifterError | undefined;
    await bounded(missing, this.opts.prefetchParallel, (n) =>
      this.chunk(image, n).then(
        () => undefined,
        (e: unknown) => {
          failed ??= asShifterError(e, 'IO_ERROR', `staging image ${id}`);
        },
      ),
    );
    if (failed !== undefined) throw failed;
    return this.status(id)!;
  }

  /**
   * The job-start stage: the superblock, the metadata tables and the chunks the image's recorded
   * profile names, fetched in parallel (joined with the open's own prefetch of them), nothing else.
   * Without a profile, the tables only; the open then records one from the reads that follow.
   */
  stageProfile(id: ImageId, indexDigest?: string): Promise<StageReport> {
    return this.measured(async () => {
      await this.open(id, indexDigest);
      const image = this.images.get(id)!;
      const answer = await this.source.profile(id, AbortSignal.timeout(this.opts.chunkTimeoutMs));
      if (answer.kind === 'none') return { image: this.status(id)! };
      const chunks = parseProfile(answer.bytes, image.index);
      let failed: ShifterError | undefined;
      const missing = chunks.filter((n) => !this.store.has(image.index.chunks[n]));
      await bounded(missing, this.opts.prefetchParallel, (n) =>
        this.chunk(image, n).then(
          () => undefined,
          (e: unknown) => {
            failed ??= asShifterError(e, 'IO_ERROR', `staging the profile of image ${id}`);
          },
        ),
      );
      if (failed !== undefined) throw failed;
      return { image: this.status(id)!, profileChunks: chunks.length };
    });
  }

  /** stage(), with what it fetched. */
  stageAll(id: ImageId, indexDigest?: string): Promise<StageReport> {
    return this.measured(async () => ({ image: await this.stage(id, indexDigest) }));
  }

  private async measured(work: () => Promise<Pick<StageReport, 'image' | 'profileChunks'>>): Promise<StageReport> {
    const started = performance.now();
    const before = { ...this.fetched };
    const done = await work();
    return {
      ...done,
      fetchedChunks: this.fetched.chunks - before.chunks,
      fetchedBytes: this.fetched.bytes - before.bytes,
      seconds: (performance.now() - started) / 1000,
    };
  }

  status(id: ImageId): ImageStatus | undefined {
    const image = this.images.get(id);
    if (image === undefined) return undefined;
    const { index } = image;
    let cachedChunks = 0;
    let cachedBytes = 0;
    index.chunks.forEach((d, n) => {
      if (!this.store.has(d)) return;
      cachedChunks++;
      cachedBytes += chunkSpan(index, n).length;
    });
    return {
      id,
      imageBytes: index.imageSize,
      chunks: index.chunks.length,
      cachedChunks,
      cachedBytes,
      hits: image.hits,
      misses: image.misses,
    };
  }

  /** Chunk `n`'s verified bytes, from the store or fetched (joined with a fetch already running). */
  private async chunk(image: OpenImage, n: number): Promise<Buffer> {
    const digest = image.index.chunks[n];
    const span = chunkSpan(image.index, n);
    const stored = await this.store.withChunk(digest, async (handle) => {
      const buf = Buffer.alloc(span.length);
      const { bytesRead } = await handle.read(buf, 0, span.length, 0);
      return bytesRead === span.length ? buf : undefined;
    });
    if (stored !== undefined) return stored;
    let pending = this.fetching.get(digest);
    if (pending === undefined) {
      pending = this.fetch(image.index, n, digest).finally(() => this.fetching.delete(digest));
      this.fetching.set(digest, pending);
    }
    return pending;
  }

  private async fetch(index: ChunkIndex, n: number, digest: ChunkDigest): Promise<Buffer> {
    const id = index.imageId;
    const deadline = AbortSignal.timeout(this.opts.chunkTimeoutMs);
    let bytes: Buffer | undefined;
    try {
      for (let attempt = 1; attempt <= 2 && bytes === undefined; attempt++) {
        const got = await this.source.chunk(id, digest, deadline);
        if (sha256Hex(got) === digest && got.length === chunkSpan(index, n).length) bytes = got;
        else this.log.warn({ image: id, chunk: n, digest, attempt }, 'chunk bytes do not match the index; refused');
      }
    } catch (e) {
      this.log.error({ image: id, chunk: n, digest, err: describeError(e) }, 'chunk fetch failed; the read gets EIO');
      throw e;
    }
    if (bytes === undefined) {
      this.log.error({ image: id, chunk: n, digest }, 'chunk refused twice (bytes do not match the index); EIO');
      throw new ShifterError('DIGEST_MISMATCH', `chunk ${n} (${digest}) of image ${id} does not match its index`);
    }
    this.fetched.chunks++;
    this.fetched.bytes += bytes.length;
    try {
      await this.store.put(digest, bytes);
    } catch (e) {
      // The bytes are verified, so this read is still served; only keeping them failed.
      this.log.error({ image: id, chunk: n, err: describeError(e) }, 'chunk not kept in the chunk store');
    }
    return bytes;
  }
}
