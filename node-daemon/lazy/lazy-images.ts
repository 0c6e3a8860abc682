/**
 * The images the FUSE server exposes, read chunk by chunk: a read is served from the chunk store
 * or, for a missing chunk, from the chunk source; every fetched chunk is checked against the
 * image's index before a byte of it is served or stored (a mismatch is fetched once more, then
 * refused), concurrent fetches of one chunk are joined, and a fetch that outlives
 * lazyChunkTimeout fails the read (the FUSE layer answers EIO) instead of hanging it.
 * Opening an image prefetches what every start reads (superblock and the metadata tables at the
 * end) and the image's recorded profile; the first cold start of an image records one.
 * Fetches go through a FetchQueue: what a reader or an attach is blocked on goes first, prefetch
 * fills the link behind it. A verified chunk is handed to its reader at once; keeping it in the
 * store (write, fsync, rename) happens behind the read, joined by any read of it meanwhile.
 *
 * Once every chunk of an open image is in the store, the image is kept whole: its chunks, checked
 * against the index once more, are copied into one local file (ChunkStore.putWhole) and
 * `onWhole` tells shifterd, which moves the image's loop devices onto that file: from then on its
 * reads are the kernel's alone, as for an image in imagePath, instead of each 128 KiB going
 * through FUSE and this process. An image larger than the store's whole limit is never kept whole.
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
import type { ChunkSource, ImageFacts, ProfileAnswer } from './chunk-source.js';
import type { FileHandle } from 'node:fs/promises';
import type { ChunkStore } from './chunk-store.js';
import { FetchQueue, type FetchPriority, type QueuedFetch } from './fetch-queue.js';
import { ProfileRecorder, parseProfile, serializeProfile } from './prefetch-profile.js';
import { SQUASHFS_SUPERBLOCK_BYTES, squashfsTables } from './squashfs-tables.js';

export interface LazyImagesOptions {
  chunkTimeoutMs: number;
  /** How long after its first open an image's reads are recorded as its profile. */
  profileWindowMs: number;
  /** Fetches in flight below which prefetch and staging start more (demand reads never wait for it). */
  prefetchParallel: number;
}

export interface ImageStatus {
  id: ImageId;
  imageBytes: number;
  chunks: number;
  cachedChunks: number;
  cachedBytes: number;
  /** FUSE reads of a chunk the store had (reads the kernel's page cache answered never get here). */
  hits: number;
  /** FUSE reads that waited for a fetch from the gateway (their own, or one already running). */
  misses: number;
  /** The image is kept whole as one local file: loop devices read it without FUSE. */
  whole: boolean;
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
  /** Chunks of the image not yet in the store, counted down as kept: when none is left, it is kept whole. */
  missing: Set<number>;
  /** Copying the image into its whole file, until done (or failed). */
  assembling?: Promise<void>;
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

/** How long a failed chunk fetch answers new reads of that chunk at once (see failedRecently). */
const FAILED_FETCH_MEMORY_MS = 3000;

export class LazyImages {
  private readonly images = new Map<ImageId, OpenImage>();
  private readonly opening = new Map<ImageId, Promise<OpenImage>>();
  /** Fetches running or queued, until their chunk is in the store (or the fetch failed). */
  private readonly fetching = new Map<ChunkDigest, QueuedFetch<Buffer>>();
  /** Chunk store writes of fetched chunks under way: status() counts a chunk once it is kept. */
  private readonly writes = new Set<Promise<void>>();
  private readonly queue: FetchQueue;
  /** Chunks fetched (verified) since start: a stage reports the difference. */
  private readonly fetched = { chunks: 0, bytes: 0 };
  /**
   * Chunks no source served just now, until when a new read of them fails at once: after an EIO the
   * kernel re-reads the same pages (readahead, then the page itself, at each layer: squashfs, loop,
   * FUSE), and without this every retry would wait a whole lazyChunkTimeout again.
   */
  private readonly failedRecently = new Map<ChunkDigest, { until: number; error: unknown }>();
  /** Told when an image is kept whole (its file) and when that file was evicted (undefined). */
  onWhole: (id: ImageId, file: string | undefined) => void = () => undefined;

  constructor(
    private readonly store: ChunkStore,
    private readonly source: ChunkSource,
    private readonly log: Logger,
    private readonly opts: LazyImagesOptions,
  ) {
    this.queue = new FetchQueue(opts.prefetchParallel);
    store.onWholeEvicted = (id) => {
      const image = this.images.get(id);
      // Its chunks were dropped when it was kept whole: they are missing again.
      if (image !== undefined) image.missing = this.missingChunks(image.index);
      this.log.info({ image: id }, 'whole image file evicted from the cache; reads go back to chunks');
      this.onWhole(id, undefined);
    };
  }

  /** The file of image `id` kept whole on this node (marked as just used), or undefined. */
  wholeFile(id: ImageId): string | undefined {
    const file = this.store.wholePath(id);
    if (file !== undefined) this.store.touchWhole(id);
    return file;
  }

  /** Whether chunk `n` of the image is on this node now: in its whole file, or in the store. */
  private cached(index: ChunkIndex, n: number): boolean {
    return this.store.wholePath(index.imageId) !== undefined || this.store.has(index.chunks[n]);
  }

  private missingChunks(index: ChunkIndex): Set<number> {
    return new Set(index.chunks.flatMap((_, n) => (this.cached(index, n) ? [] : [n])));
  }

  list(): ImageId[] {
    return [...this.images.keys()];
  }

  size(id: ImageId): number | undefined {
    return this.images.get(id)?.index.imageSize;
  }

  /** What the gateway recorded for `id`: the digest its index must hash to and its `.meta` text. */
  async facts(id: ImageId): Promise<ImageFacts> {
    const t0 = performance.now();
    const facts = await this.source.facts(id, AbortSignal.timeout(this.opts.chunkTimeoutMs));
    this.log.debug({ image: id, factsMs: elapsed(t0) }, 'lazy image facts fetched');
    return facts;
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

  /**
   * The index, then the superblock, then the tables, each step a round trip that the next one
   * needs; the facts (when the caller has no digest), the node token and the profile go out
   * alongside, and the profile's chunks start arriving as soon as it is here, behind the tables.
   */
  private async load(id: ImageId, indexDigest: string | undefined): Promise<OpenImage> {
    const t0 = performance.now();
    const ms: Record<string, number> = {};
    const timed = <T>(step: string, p: Promise<T>): Promise<T> =>
      p.finally(() => {
        ms[`${step}Ms`] = elapsed(t0);
      });
    const deadline = AbortSignal.timeout(this.opts.chunkTimeoutMs);
    // A failed exchange is retried, and reported with its base, by the requests that need the token.
    await timed(
      'token',
      this.source.warm(deadline).catch(() => undefined),
    );
    // An index that is only self-consistent could be any image's bytes: trust the recorded digest alone.
    const digest =
      indexDigest === undefined
        ? timed('facts', this.source.facts(id, deadline)).then((f) => f.indexDigest)
        : Promise.resolve(indexDigest);
    const indexBytes = timed('index', this.source.index(id, deadline));
    const profile = timed('profile', this.source.profile(id, AbortSignal.timeout(this.opts.chunkTimeoutMs))).catch(
      (e: unknown) => {
        this.log.warn({ image: id, err: describeError(e) }, 'no prefetch profile; starting without one');
        return undefined;
      },
    );
    const index = parseIndex(id, await indexBytes, await digest);
    const image: OpenImage = { index, hits: 0, misses: 0, missing: this.missingChunks(index) };
    const profiled = profile.then((answer) => this.prefetchProfile(image, answer));
    const superblock = await timed('superblock', this.chunk(image, 0, 'demand'));
    const { tablesStart, end } = squashfsTables(superblock.subarray(0, SQUASHFS_SUPERBLOCK_BYTES));
    const tables = chunksCovering(index, tablesStart, end - tablesStart);
    await timed('tables', Promise.all(tables.map((n) => this.chunk(image, n, 'demand'))));
    // The first reads are recorded only if this start records the profile: wait for the answer.
    await profiled;
    this.log.debug(
      { image: id, ...ms, tableChunks: tables.length, openMs: elapsed(t0), fetches: this.queue.load },
      'lazy image opened',
    );
    return image;
  }

  private prefetchProfile(image: OpenImage, answer: ProfileAnswer | undefined): void {
    const { index } = image;
    if (answer?.kind === 'none') return this.record(image);
    if (answer?.kind !== 'found') return;
    let chunks: number[];
    try {
      chunks = parseProfile(answer.bytes, index).filter((n) => !this.cached(index, n));
    } catch (e) {
      this.log.warn({ image: index.imageId, err: describeError(e) }, 'prefetch profile ignored');
      return;
    }
    for (const n of chunks) this.chunk(image, n, 'prefetch').catch(() => undefined);
    this.log.debug({ image: index.imageId, chunks: chunks.length }, 'prefetching the recorded profile');
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
    const whole = await this.store.withWhole(id, async (handle) => {
      const { bytesRead } = await handle.read(buf, 0, length, offset);
      return bytesRead;
    });
    if (whole === length) {
      image.hits++;
      return length;
    }
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
        const bytes = await this.chunk(image, n, 'demand');
        bytes.copy(target, 0, from - span.offset, to - span.offset);
      }),
    );
    return length;
  }

  /** Fetches every chunk of `id` not yet stored (an admin's pre-stage before a job). */
  async stage(id: ImageId, indexDigest?: string): Promise<ImageStatus> {
    await this.open(id, indexDigest);
    const image = this.images.get(id)!;
    // Counted afresh: another image's fetch may have brought a chunk this one shares.
    image.missing = this.missingChunks(image.index);
    const missing = [...image.missing];
    let failed: ShifterError | undefined;
    await Promise.all(
      missing.map((n) =>
        this.chunk(image, n, 'prefetch').then(
          () => undefined,
          (e: unknown) => {
            failed ??= asShifterError(e, 'IO_ERROR', `staging image ${id}`);
          },
        ),
      ),
    );
    // A staged image is whole in the store once its last chunk is kept, not when it was fetched.
    await this.settled();
    if (failed !== undefined) throw failed;
    this.keepWhole(image);
    await image.assembling;
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
      const missing = chunks.filter((n) => !this.cached(image.index, n));
      // The fetch queue bounds how many run at once; demand reads of a starting job go first.
      await Promise.all(
        missing.map((n) =>
          this.chunk(image, n, 'prefetch').then(
            () => undefined,
            (e: unknown) => {
              failed ??= asShifterError(e, 'IO_ERROR', `staging the profile of image ${id}`);
            },
          ),
        ),
      );
      await this.settled();
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

  /** Waits for the chunk store writes of chunks already fetched, so status() counts what reads brought in. */
  async settled(): Promise<void> {
    await Promise.all(this.writes);
    // Opens under way too (a whole image's index is fetched behind its start): status lists them.
    await Promise.allSettled(this.opening.values());
  }

  /** Every chunk is kept: copy them into the image's whole file (once), then drop them. */
  private keepWhole(image: OpenImage): void {
    const { index } = image;
    const id = index.imageId;
    if (image.missing.size > 0 || image.assembling !== undefined || this.store.wholePath(id) !== undefined) return;
    if (index.imageSize > this.store.limitBytes / 2) {
      this.log.info(
        { image: id, imageBytes: index.imageSize, limitBytes: this.store.limitBytes },
        'image not kept whole: larger than half of lazyImageCacheSize; its reads keep going through FUSE',
      );
      image.assembling = Promise.resolve();
      return;
    }
    const t0 = performance.now();
    image.assembling = this.store
      .putWhole(id, index.imageSize, (handle) => this.copyChunks(index, handle), index.chunks)
      .then(
        (file) => {
          this.log.info({ image: id, file, ms: elapsed(t0) }, 'every chunk cached: image kept whole');
          this.onWhole(id, file);
        },
        (e: unknown) => {
          this.log.warn({ image: id, err: describeError(e) }, 'image not kept whole; its chunks stay');
          // A chunk evicted meanwhile is missing again; the image is tried again once it is back.
          image.missing = this.missingChunks(index);
        },
      )
      .finally(() => {
        image.assembling = undefined;
      });
  }

  private async copyChunks(index: ChunkIndex, handle: FileHandle): Promise<void> {
    for (let n = 0; n < index.chunks.length; n++) {
      const digest = index.chunks[n];
      const span = chunkSpan(index, n);
      const bytes = await this.store.withChunk(digest, async (chunk) => {
        const buf = Buffer.alloc(span.length);
        const { bytesRead } = await chunk.read(buf, 0, span.length, 0);
        return bytesRead === span.length ? buf : undefined;
      });
      if (bytes === undefined) throw new ShifterError('NOT_FOUND', `chunk ${n} left the store meanwhile`);
      // The chunk files are ours, but a disk can rot: what becomes the image is checked again.
      if (sha256Hex(bytes) !== digest)
        throw new ShifterError('DIGEST_MISMATCH', `stored chunk ${n} (${digest}) is damaged`);
      await handle.write(bytes, 0, bytes.length, span.offset);
    }
  }

  status(id: ImageId): ImageStatus | undefined {
    const image = this.images.get(id);
    if (image === undefined) return undefined;
    const { index } = image;
    let cachedChunks = 0;
    let cachedBytes = 0;
    index.chunks.forEach((_, n) => {
      if (!this.cached(index, n)) return;
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
      whole: this.store.wholePath(id) !== undefined,
    };
  }

  /** Chunk `n`'s verified bytes, from the store or fetched (joined with a fetch already running or queued). */
  private async chunk(image: OpenImage, n: number, priority: FetchPriority): Promise<Buffer> {
    const digest = image.index.chunks[n];
    const span = chunkSpan(image.index, n);
    const joined = this.fetching.get(digest);
    if (joined !== undefined) return this.join(joined, priority);
    const readSpan = async (handle: FileHandle, at: number): Promise<Buffer | undefined> => {
      const buf = Buffer.alloc(span.length);
      const { bytesRead } = await handle.read(buf, 0, span.length, at);
      return bytesRead === span.length ? buf : undefined;
    };
    const stored =
      (await this.store.withWhole(image.index.imageId, (handle) => readSpan(handle, span.offset))) ??
      (await this.store.withChunk(digest, (handle) => readSpan(handle, 0)));
    if (stored !== undefined) return stored;
    const started = this.fetching.get(digest);
    if (started !== undefined) return this.join(started, priority);
    const failed = this.failedRecently.get(digest);
    if (failed !== undefined && failed.until > Date.now()) throw failed.error;
    this.failedRecently.delete(digest);
    const fetch = this.queue.run(priority, () => this.fetch(image.index, n, digest));
    const kept = fetch.result.then(
      (bytes) => {
        const write = this.keep(image, n, digest, bytes);
        this.writes.add(write);
        return write.finally(() => this.writes.delete(write));
      },
      (error: unknown) => {
        // Only "no source answered": bytes that did not match are worth asking for again at once.
        if (error instanceof ShifterError && error.code === 'UNREACHABLE') {
          this.failedRecently.set(digest, { until: Date.now() + FAILED_FETCH_MEMORY_MS, error });
        }
      },
    );
    this.fetching.set(digest, fetch);
    void kept.finally(() => this.fetching.delete(digest));
    return fetch.result;
  }

  private join(running: QueuedFetch<Buffer>, priority: FetchPriority): Promise<Buffer> {
    if (priority === 'demand') running.promote();
    return running.result;
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
    return bytes;
  }

  /** Keeps verified bytes in the store; the read they were fetched for has them already. */
  private async keep(image: OpenImage, n: number, digest: ChunkDigest, bytes: Buffer): Promise<void> {
    try {
      await this.store.put(digest, bytes);
    } catch (e) {
      this.log.error(
        { image: image.index.imageId, chunk: n, err: describeError(e) },
        'chunk not kept in the chunk store',
      );
      return;
    }
    image.missing.delete(n);
    this.keepWhole(image);
  }
}

/** Milliseconds since `since` (performance.now()), to a tenth, for the debug log. */
export function elapsed(since: number): number {
  return Math.round((performance.now() - since) * 10) / 10;
}
