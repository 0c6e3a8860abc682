/**
 * The node's chunk store: `<dir>/chunks/<sha256>`, one file per verified chunk, shared by every
 * image (chunks are content addressed). A chunk is written under a temporary name, fsynced and
 * renamed, so a file under its final name is always whole and was checked against an index
 * before it got there; a crash leaves only `.tmp-*` files, removed at the next start.
 * The index of what is there (lru-cache, by recency) is rebuilt from the directory at start, so
 * the store survives restarts of shifterd and of the FUSE server. Eviction removes the least
 * recently used chunks down to the size limit, skipping chunks a read has pinned.
 */
import { mkdir, open, readdir, stat, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { LRUCache } from 'lru-cache';
import { commitFile, isTemporaryName, temporaryNameFor } from '../../common/atomic-write.js';
import { diskFullError } from '../../common/disk-full.js';
import { ShifterError, describeError } from '../../common/errors.js';
import { isChunkDigest, type ChunkDigest } from '../../common/chunk-index.js';

export interface StoreUsage {
  chunks: number;
  bytes: number;
  limitBytes: number;
}

export class ChunkStore {
  readonly dir: string;
  private readonly limitBytes: number;
  /**
   * Recency and size of every stored chunk. No `max` (lru-cache preallocates that many slots)
   * and a maxSize it never reaches: eviction is ours, because it must skip pinned chunks.
   */
  private readonly sizes = new LRUCache<ChunkDigest, number>({
    maxSize: Number.MAX_SAFE_INTEGER,
    sizeCalculation: (size) => Math.max(1, size),
  });
  private bytes = 0;
  private readonly pins = new Map<ChunkDigest, number>();

  private constructor(dir: string, limitBytes: number) {
    this.dir = dir;
    this.limitBytes = limitBytes;
  }

  /** Opens (creating if needed) the store under `cacheDir` and indexes what a previous run left. */
  static async open(cacheDir: string, limitBytes: number): Promise<ChunkStore> {
    const store = new ChunkStore(join(cacheDir, 'chunks'), limitBytes);
    await mkdir(store.dir, { recursive: true, mode: 0o700 });
    const found: Array<{ digest: ChunkDigest; size: number; mtimeMs: number }> = [];
    for (const name of await readdir(store.dir)) {
      const path = join(store.dir, name);
      if (isTemporaryName(name)) {
        await unlink(path).catch(() => undefined);
        continue;
      }
      if (!isChunkDigest(name)) continue;
      const st = await stat(path);
      found.push({ digest: name, size: st.size, mtimeMs: st.mtimeMs });
    }
    // Oldest first, so that the most recently written chunk ends up most recent in the LRU.
    found.sort((a, b) => a.mtimeMs - b.mtimeMs);
    for (const f of found) store.index(f.digest, f.size);
    await store.evict();
    return store;
  }

  usage(): StoreUsage {
    return { chunks: this.sizes.size, bytes: this.bytes, limitBytes: this.limitBytes };
  }

  has(digest: ChunkDigest): boolean {
    return this.sizes.has(digest);
  }

  /**
   * Pins `digest` for the duration of `use` (eviction skips it) and hands it an open handle on
   * the chunk; undefined when the chunk is not in the store.
   */
  async withChunk<T>(digest: ChunkDigest, use: (handle: FileHandle) => Promise<T>): Promise<T | undefined> {
    if (this.sizes.get(digest) === undefined) return undefined;
    this.pin(digest);
    try {
      let handle: FileHandle;
      try {
        handle = await open(join(this.dir, digest), 'r');
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
        this.forget(digest);
        return undefined;
      }
      try {
        return await use(handle);
      } finally {
        await handle.close();
      }
    } finally {
      this.unpin(digest);
    }
  }

  /** Stores verified bytes atomically; DISK_FULL (nothing left behind) when the disk is full. */
  async put(digest: ChunkDigest, bytes: Uint8Array): Promise<void> {
    if (this.sizes.has(digest)) return;
    const final = join(this.dir, digest);
    const tmp = temporaryNameFor(final);
    try {
      const handle = await open(tmp, 'wx', 0o600);
      try {
        await handle.writeFile(bytes);
      } finally {
        await handle.close();
      }
      await commitFile(tmp, final);
    } catch (e) {
      await unlink(tmp).catch(() => undefined);
      throw (
        diskFullError(e, this.dir, 'lazyImageCache') ??
        new ShifterError('IO_ERROR', `cannot store chunk ${digest} in ${this.dir}: ${describeError(e)}`, e)
      );
    }
    this.index(digest, bytes.byteLength);
    await this.evict();
  }

  private index(digest: ChunkDigest, size: number): void {
    const old = this.sizes.get(digest);
    if (old !== undefined) this.bytes -= old;
    this.sizes.set(digest, size);
    this.bytes += size;
  }

  private forget(digest: ChunkDigest): void {
    const size = this.sizes.get(digest);
    if (size === undefined) return;
    this.sizes.delete(digest);
    this.bytes -= size;
  }

  private pin(digest: ChunkDigest): void {
    this.pins.set(digest, (this.pins.get(digest) ?? 0) + 1);
  }

  private unpin(digest: ChunkDigest): void {
    const n = (this.pins.get(digest) ?? 1) - 1;
    if (n === 0) this.pins.delete(digest);
    else this.pins.set(digest, n);
  }

  /** Least recently used first, never a pinned chunk; what is pinned may keep the store over its limit. */
  private async evict(): Promise<void> {
    if (this.bytes <= this.limitBytes) return;
    const victims: ChunkDigest[] = [];
    let bytes = this.bytes;
    for (const digest of this.sizes.rkeys()) {
      if (bytes <= this.limitBytes) break;
      if (this.pins.has(digest)) continue;
      victims.push(digest);
      bytes -= this.sizes.peek(digest) ?? 0;
    }
    for (const digest of victims) {
      this.forget(digest);
      await unlink(join(this.dir, digest)).catch(() => undefined);
    }
  }
}
