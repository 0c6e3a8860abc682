/**
 * The node's chunk store: `<dir>/chunks/<sha256>`, one file per verified chunk, shared by every
 * image (chunks are content addressed). A chunk is written under a temporary name, fsynced and
 * renamed, so a file under its final name is always whole and was checked against an index
 * before it got there; a crash leaves only `.tmp-*` files, removed at the next start.
 * The index of what is there (lru-cache, by recency) is rebuilt from the directory at start, so
 * the store survives restarts of shifterd and of the FUSE server. Eviction removes the least
 * recently used chunks down to the size limit, skipping chunks a read has pinned.
 *
 * An image whose every chunk is here can be kept whole instead: `<dir>/images/<id>.squashfs`,
 * written the same way (temporary name, fsync, rename), after which its chunks are dropped, so
 * the image costs its size once. Whole images share the chunks' recency order and size limit; one
 * evicted is unlinked, and a loop device still reading it keeps its blocks until it lets go.
 */
import { mkdir, open, readdir, stat, unlink, type FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { LRUCache } from 'lru-cache';
import { commitFile, isTemporaryName, temporaryNameFor } from '../../common/atomic-write.js';
import { diskFullError } from '../../common/disk-full.js';
import { asShifterError } from '../../common/errors.js';
import { isChunkDigest, type ChunkDigest } from '../../common/chunk-index.js';
import { isImageId, type ImageId } from '../../common/image-descriptor.js';

export interface StoreUsage {
  chunks: number;
  /** Images kept whole as one local file. */
  wholeImages: number;
  /** Chunks and whole images together. */
  bytes: number;
  limitBytes: number;
}

const WHOLE_SUFFIX = '.squashfs';

/** What the store holds under one name: a chunk by its digest, or an image kept whole. */
type Entry = ChunkDigest | `whole:${ImageId}`;

const wholeEntry = (id: ImageId): Entry => `whole:${id}`;

function wholeImageOf(entry: Entry): ImageId | undefined {
  return entry.startsWith('whole:') ? (entry.slice('whole:'.length) as ImageId) : undefined;
}

export class ChunkStore {
  readonly dir: string;
  /** Where images kept whole live. */
  readonly wholeDir: string;
  readonly limitBytes: number;
  /**
   * Recency and size of every stored chunk and whole image. No `max` (lru-cache preallocates that
   * many slots) and a maxSize it never reaches: eviction is ours, because it must skip pinned entries.
   */
  private readonly sizes = new LRUCache<Entry, number>({
    maxSize: Number.MAX_SAFE_INTEGER,
    sizeCalculation: (size) => Math.max(1, size),
  });
  private bytes = 0;
  private wholeCount = 0;
  private readonly pins = new Map<Entry, number>();
  /** Told when eviction removed an image kept whole (new reads of it go back to chunks). */
  onWholeEvicted: (id: ImageId) => void = () => undefined;

  private constructor(cacheDir: string, limitBytes: number) {
    this.dir = join(cacheDir, 'chunks');
    this.wholeDir = join(cacheDir, 'images');
    this.limitBytes = limitBytes;
  }

  /** Opens (creating if needed) the store under `cacheDir` and indexes what a previous run left. */
  static async open(cacheDir: string, limitBytes: number): Promise<ChunkStore> {
    const store = new ChunkStore(cacheDir, limitBytes);
    const found: Array<{ entry: Entry; size: number; mtimeMs: number }> = [];
    const scan = async (dir: string, entryOf: (name: string) => Entry | undefined): Promise<void> => {
      await mkdir(dir, { recursive: true, mode: 0o700 });
      for (const name of await readdir(dir)) {
        const path = join(dir, name);
        if (isTemporaryName(name)) {
          await unlink(path).catch(() => undefined);
          continue;
        }
        const entry = entryOf(name);
        if (entry === undefined) continue;
        const st = await stat(path);
        found.push({ entry, size: st.size, mtimeMs: st.mtimeMs });
      }
    };
    await scan(store.dir, (name) => (isChunkDigest(name) ? name : undefined));
    await scan(store.wholeDir, (name) => {
      const id = name.endsWith(WHOLE_SUFFIX) ? name.slice(0, -WHOLE_SUFFIX.length) : '';
      return isImageId(id) ? wholeEntry(id) : undefined;
    });
    // Oldest first, so that the most recently written entry ends up most recent in the LRU.
    found.sort((a, b) => a.mtimeMs - b.mtimeMs);
    for (const f of found) store.index(f.entry, f.size);
    await store.evict();
    return store;
  }

  usage(): StoreUsage {
    return {
      chunks: this.sizes.size - this.wholeCount,
      wholeImages: this.wholeCount,
      bytes: this.bytes,
      limitBytes: this.limitBytes,
    };
  }

  has(digest: ChunkDigest): boolean {
    return this.sizes.has(digest);
  }

  /** The file of image `id` kept whole; undefined when it is not kept whole. */
  wholePath(id: ImageId): string | undefined {
    return this.sizes.has(wholeEntry(id)) ? this.wholeFile(id) : undefined;
  }

  private wholeFile(id: ImageId): string {
    return join(this.wholeDir, `${id}${WHOLE_SUFFIX}`);
  }

  /** Marks image `id`, kept whole, as just used (its file was handed out). */
  touchWhole(id: ImageId): void {
    this.sizes.get(wholeEntry(id));
  }

  /** Pins the image kept whole for `use` and hands it an open handle; undefined when it is not kept whole. */
  async withWhole<T>(id: ImageId, use: (handle: FileHandle) => Promise<T>): Promise<T | undefined> {
    return this.withEntry(wholeEntry(id), this.wholeFile(id), use);
  }

  /**
   * Pins `digest` for the duration of `use` (eviction skips it) and hands it an open handle on
   * the chunk; undefined when the chunk is not in the store.
   */
  withChunk<T>(digest: ChunkDigest, use: (handle: FileHandle) => Promise<T>): Promise<T | undefined> {
    return this.withEntry(digest, join(this.dir, digest), use);
  }

  private async withEntry<T>(
    entry: Entry,
    path: string,
    use: (handle: FileHandle) => Promise<T>,
  ): Promise<T | undefined> {
    if (this.sizes.get(entry) === undefined) return undefined;
    this.pin(entry);
    try {
      let handle: FileHandle;
      try {
        handle = await open(path, 'r');
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
        this.forget(entry);
        return undefined;
      }
      try {
        return await use(handle);
      } finally {
        await handle.close();
      }
    } finally {
      this.unpin(entry);
    }
  }

  /** Stores verified bytes atomically; DISK_FULL (nothing left behind) when the disk is full. */
  async put(digest: ChunkDigest, bytes: Uint8Array): Promise<void> {
    if (this.sizes.has(digest)) return;
    await this.writeAtomically(join(this.dir, digest), `cannot store chunk ${digest} in ${this.dir}`, (handle) =>
      handle.writeFile(bytes),
    );
    this.index(digest, bytes.byteLength);
    await this.evict();
  }

  /**
   * Keeps image `id` whole: `write` fills a temporary file of `size` bytes, which becomes the
   * image's file only once complete and synced; then `dropChunks` leave the store (those not
   * pinned), since the file holds their bytes. DISK_FULL (nothing left behind) when the disk is full.
   */
  async putWhole(
    id: ImageId,
    size: number,
    write: (handle: FileHandle) => Promise<void>,
    dropChunks: readonly ChunkDigest[],
  ): Promise<string> {
    const final = this.wholeFile(id);
    await this.writeAtomically(final, `cannot keep image ${id} whole in ${this.wholeDir}`, async (handle) => {
      await write(handle);
      const { size: written } = await handle.stat();
      if (written !== size) throw new Error(`wrote ${written} bytes of ${size}`);
    });
    this.index(wholeEntry(id), size);
    for (const digest of dropChunks) {
      if (this.pins.has(digest) || !this.sizes.has(digest)) continue;
      this.forget(digest);
      await unlink(join(this.dir, digest)).catch(() => undefined);
    }
    await this.evict();
    return final;
  }

  /** `write` fills a temporary file that becomes `final` only when complete and synced; on failure nothing is left. */
  private async writeAtomically(
    final: string,
    context: string,
    write: (handle: FileHandle) => Promise<void>,
  ): Promise<void> {
    const tmp = temporaryNameFor(final);
    try {
      const handle = await open(tmp, 'wx', 0o600);
      try {
        await write(handle);
      } finally {
        await handle.close();
      }
      await commitFile(tmp, final);
    } catch (e) {
      await unlink(tmp).catch(() => undefined);
      throw diskFullError(e, dirname(final), 'lazyImageCache') ?? asShifterError(e, 'IO_ERROR', context);
    }
  }

  private index(entry: Entry, size: number): void {
    const old = this.sizes.get(entry);
    if (old !== undefined) this.bytes -= old;
    else if (wholeImageOf(entry) !== undefined) this.wholeCount++;
    this.sizes.set(entry, size);
    this.bytes += size;
  }

  private forget(entry: Entry): void {
    const size = this.sizes.get(entry);
    if (size === undefined) return;
    this.sizes.delete(entry);
    this.bytes -= size;
    if (wholeImageOf(entry) !== undefined) this.wholeCount--;
  }

  private pin(entry: Entry): void {
    this.pins.set(entry, (this.pins.get(entry) ?? 0) + 1);
  }

  private unpin(entry: Entry): void {
    const n = (this.pins.get(entry) ?? 1) - 1;
    if (n === 0) this.pins.delete(entry);
    else this.pins.set(entry, n);
  }

  /** Least recently used first, never a pinned entry; what is pinned may keep the store over its limit. */
  private async evict(): Promise<void> {
    if (this.bytes <= this.limitBytes) return;
    const victims: Entry[] = [];
    let bytes = this.bytes;
    for (const entry of this.sizes.rkeys()) {
      if (bytes <= this.limitBytes) break;
      if (this.pins.has(entry)) continue;
      victims.push(entry);
      bytes -= this.sizes.peek(entry) ?? 0;
    }
    for (const entry of victims) {
      this.forget(entry);
      const whole = wholeImageOf(entry);
      await unlink(whole === undefined ? join(this.dir, entry) : this.wholeFile(whole)).catch(() => undefined);
      if (whole !== undefined) this.onWholeEvicted(whole);
    }
  }
}
